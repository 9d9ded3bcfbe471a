"""Which text embeddings an open-vocabulary head scores against, at training and at test time.

Resolution order (keys under ``MODEL.ROI_BOX_HEAD.OPEN_VOCAB``):

- training: ``EMBEDDINGS`` file > ``VOCABULARY`` spec > ``DATASETS.TRAIN[0]``'s ``thing_classes``;
  a model built for inference only (empty ``DATASETS.TRAIN``: ``train_net.py --eval-only``,
  ``tools/demo.py``) takes the test vocabulary instead, so evaluating an open-vocabulary
  model never needs its training set registered;
- test: ``TEST_EMBEDDINGS`` file > ``TEST_VOCABULARY`` spec > ``DATASETS.TEST[0]``'s
  ``thing_classes`` > the training embeddings.

Embeddings computed here go through ``zip_d2.text.build_text_embeddings`` (the project's one
text-embedding implementation). Every set, loaded or computed, is checked against ``CLIP_MODEL``:
a head trained in one CLIP text space cannot score in another. :func:`required_clip_weights`
runs this same resolution without computing anything, to tell the launching process whether
the heads will need CLIP weights.
"""
import contextvars
import logging
from typing import List, Optional

import torch

from detectron2.data import MetadataCatalog

from zip_d2.models import WeightSource, clip_weight_source
from zip_d2.text import TextEmbeddings, build_text_embeddings, load_vocabulary

__all__ = ["train_text_embeddings", "test_text_embeddings", "embeddings_for_names",
           "required_clip_weights", "planned_test_class_names", "uses_open_vocab_heads"]

logger = logging.getLogger(__name__)


def _dataset_classes(dataset_names) -> Optional[List[str]]:
    if not dataset_names:
        return None
    meta = MetadataCatalog.get(dataset_names[0])
    return list(meta.thing_classes) if hasattr(meta, "thing_classes") else None


# Seed of the random-weight CLIP of test presets. Training, evaluation and tools/demo.py run in
# different processes and must all get the same "text space", so its weights cannot depend on
# the global RNG state.
RANDOM_CLIP_SEED = 0

# While required_clip_weights() resolves a config, the name lists that would be embedded
# in-process are collected here instead of being embedded.
_PLANNED = contextvars.ContextVar("zip_d2_planned_text_embeddings", default=None)


def embeddings_for_names(cfg, class_names: List[str]) -> TextEmbeddings:
    """Compute embeddings of ``class_names`` in-process with the configured CLIP and prompts.

    With ``OPEN_VOCAB.RANDOM_WEIGHTS`` the CLIP is initialised from ``RANDOM_CLIP_SEED`` (the
    global RNG is left untouched), so the same names give the same embeddings in every process.
    """
    ov = cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB
    planned = _PLANNED.get()
    if planned is not None:  # required_clip_weights(): note the names, return a stand-in
        planned.append(list(class_names))
        return TextEmbeddings(torch.zeros(len(class_names), 1), list(class_names),
                              ov.CLIP_MODEL, ov.CLIP_PRETRAINED, random_weights=ov.RANDOM_WEIGHTS)
    with torch.random.fork_rng(devices=[]):
        if ov.RANDOM_WEIGHTS:
            torch.manual_seed(RANDOM_CLIP_SEED)
        return build_text_embeddings(
            list(class_names),
            ov.CLIP_MODEL,
            ov.CLIP_PRETRAINED,
            templates=ov.TEMPLATES,
            device="cpu",
            random_weights=ov.RANDOM_WEIGHTS,
            key="MODEL.ROI_BOX_HEAD.OPEN_VOCAB.CLIP_PRETRAINED",
        )


def _load_checked(cfg, path: str) -> TextEmbeddings:
    ov = cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB
    emb = TextEmbeddings.load(path)
    emb.check_compatible(ov.CLIP_MODEL)
    if emb.random_weights and not ov.RANDOM_WEIGHTS:
        raise ValueError(
            f"{path} was made with a random-weight CLIP (a test preset); recompute it with real "
            "weights, or set MODEL.ROI_BOX_HEAD.OPEN_VOCAB.RANDOM_WEIGHTS True for a test run."
        )
    if emb.clip_pretrained != ov.CLIP_PRETRAINED and not emb.random_weights:
        # A local checkpoint path and a tag can name the same weights, so this only warns.
        logger.warning(
            "%s comes from CLIP %s weights '%s', the config names '%s'; make sure they are the "
            "same weights.", path, emb.clip_model, emb.clip_pretrained, ov.CLIP_PRETRAINED,
        )
    return emb


def _from_spec(cfg, spec: str) -> TextEmbeddings:
    return embeddings_for_names(cfg, [c["name"] for c in load_vocabulary(spec)])


def train_text_embeddings(cfg) -> TextEmbeddings:
    """The training vocabulary's embeddings; row i must be the training set's class i.

    Raises ValueError if their number differs from ``MODEL.ROI_HEADS.NUM_CLASSES`` or from the
    training dataset's classes: ground-truth class ids index these rows.
    """
    ov = cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB
    dataset_classes = _dataset_classes(cfg.DATASETS.TRAIN)
    if ov.EMBEDDINGS:
        emb = _load_checked(cfg, ov.EMBEDDINGS)
    elif ov.VOCABULARY:
        emb = _from_spec(cfg, ov.VOCABULARY)
    elif dataset_classes is not None:
        emb = embeddings_for_names(cfg, dataset_classes)
    elif not cfg.DATASETS.TRAIN:
        # Built for inference only: eval mode scores the test vocabulary, and no weight
        # depends on the number of training classes (class-agnostic boxes and masks), which
        # only sets the background label of the training loss. So NUM_CLASSES is not checked.
        emb = _test_vocabulary(cfg)
        if emb is None:
            raise ValueError(
                "Open-vocabulary head built for inference: no vocabulary. Set MODEL.ROI_BOX_HEAD"
                ".OPEN_VOCAB.TEST_EMBEDDINGS or .TEST_VOCABULARY, or register DATASETS.TEST[0] "
                "with thing_classes."
            )
        logger.info("Open-vocabulary head built for inference: scoring the test vocabulary "
                    "(%d classes)", len(emb.class_names))
        return emb
    else:
        raise ValueError(
            "Open-vocabulary head: no training vocabulary. Set MODEL.ROI_BOX_HEAD.OPEN_VOCAB."
            "EMBEDDINGS or .VOCABULARY, or register DATASETS.TRAIN[0] with thing_classes "
            "(to evaluate only, leave DATASETS.TRAIN empty, as train_net.py --eval-only does)."
        )
    num = len(emb.class_names)
    if num != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
        raise ValueError(
            f"Training vocabulary has {num} classes but MODEL.ROI_HEADS.NUM_CLASSES is "
            f"{cfg.MODEL.ROI_HEADS.NUM_CLASSES}; they must agree (class ids index the embeddings)."
        )
    if dataset_classes is not None:
        if len(dataset_classes) != num:
            raise ValueError(
                f"Training vocabulary has {num} classes but dataset {cfg.DATASETS.TRAIN[0]} has "
                f"{len(dataset_classes)}; row i of the embeddings must be the dataset's class i."
            )
        if list(dataset_classes) != list(emb.class_names):
            logger.warning(
                "Training vocabulary names %s differ from dataset %s classes %s; rows are used "
                "in dataset order.", emb.class_names, cfg.DATASETS.TRAIN[0], dataset_classes,
            )
    return emb


def test_text_embeddings(cfg, train_embeddings: TextEmbeddings) -> TextEmbeddings:
    """The vocabulary scored at inference; may differ from training in size and names."""
    ov = cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB
    if not cfg.DATASETS.TRAIN and not (ov.EMBEDDINGS or ov.VOCABULARY):
        return train_embeddings  # inference only: train_text_embeddings gave the test vocabulary
    if ov.TEST_EMBEDDINGS or ov.TEST_VOCABULARY:
        return _test_vocabulary(cfg)
    names = _dataset_classes(cfg.DATASETS.TEST)
    if names is None or list(names) == list(train_embeddings.class_names):
        return train_embeddings
    return embeddings_for_names(cfg, names)


def _test_vocabulary(cfg) -> Optional[TextEmbeddings]:
    """TEST_EMBEDDINGS file > TEST_VOCABULARY spec > DATASETS.TEST[0]'s classes > None."""
    ov = cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB
    if ov.TEST_EMBEDDINGS:
        return _load_checked(cfg, ov.TEST_EMBEDDINGS)
    if ov.TEST_VOCABULARY:
        return _from_spec(cfg, ov.TEST_VOCABULARY)
    names = _dataset_classes(cfg.DATASETS.TEST)
    return None if names is None else embeddings_for_names(cfg, names)


def uses_open_vocab_heads(cfg) -> bool:
    """Whether MODEL.ROI_HEADS.NAME is an open-vocabulary head (scores text embeddings): a
    registered head whose class carries the marker ``open_vocabulary = True`` (as
    ``roi_heads.OpenVocabROIHeads`` and its subclasses do). The heads are not imported here:
    they import this module for their embeddings."""
    from detectron2.modeling import ROI_HEADS_REGISTRY

    try:
        heads = ROI_HEADS_REGISTRY.get(cfg.MODEL.ROI_HEADS.NAME)
    except KeyError:
        return False
    return getattr(heads, "open_vocabulary", False) is True


def _plan(cfg, planned) -> TextEmbeddings:
    """The heads' test vocabulary resolution, the in-process embeddings noted in ``planned``
    (lists of names) instead of computed; returns the test embeddings (stand-ins for the
    computed ones)."""
    token = _PLANNED.set(planned)
    logger.disabled = True  # the heads log their notes when they are really built
    try:
        return test_text_embeddings(cfg, train_text_embeddings(cfg))
    finally:
        logger.disabled = False
        _PLANNED.reset(token)


def planned_test_class_names(cfg) -> Optional[List[str]]:
    """The class names an open-vocabulary model built from ``cfg`` scores at test time
    (computing nothing); None for a model without open-vocabulary heads. The config's datasets
    must be registered. ValueError for the heads' configuration errors."""
    if not uses_open_vocab_heads(cfg):
        return None
    return list(_plan(cfg, []).class_names)


def required_clip_weights(cfg) -> List[WeightSource]:
    """The CLIP weights that building this config's open-vocabulary heads loads: one source
    (``OPEN_VOCAB.CLIP_PRETRAINED``) when some embeddings are computed in-process, none when
    every set comes from a file (or with RANDOM_WEIGHTS, or without open-vocabulary heads).

    Runs the heads' own resolution (the datasets must be registered) with the computation
    replaced by a note, so it cannot disagree with what the heads do. Raises ValueError for the
    same configuration errors as building the heads would (e.g. a class-count mismatch).
    """
    ov = cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB
    for key in ("VOCABULARY", "TEST_VOCABULARY"):  # checked here, before any model is built
        if ov[key]:
            try:
                load_vocabulary(ov[key])
            except ValueError as e:
                raise ValueError(f"MODEL.ROI_BOX_HEAD.OPEN_VOCAB.{key}: {e}") from None
    if ov.RANDOM_WEIGHTS or not uses_open_vocab_heads(cfg):
        return []
    planned = []
    _plan(cfg, planned)
    if not planned:
        return []
    return [clip_weight_source(ov.CLIP_MODEL, ov.CLIP_PRETRAINED,
                               key="MODEL.ROI_BOX_HEAD.OPEN_VOCAB.CLIP_PRETRAINED")]
