"""A model's classes and a dataset's, matched by name wherever the two meet: evaluation
(``train_net.py`` and ``--eval-only``), self-training predictions and the demo.

A detector predicts class *indices*; what index i means is fixed when it is trained (the
training set's ``thing_classes``, in category-id order). A dataset that lists the same names
under other ids, or in another order, or with a class more, gives its own index to each name,
so matching predictions to a dataset by index scores cats as dogs at exit 0. zip_d2 therefore

- records the training classes in every checkpoint it writes (key ``thing_classes``,
  :class:`RecordedClassNames`);
- translates the model's indices to the dataset's by name (:func:`class_index`,
  :func:`to_dataset_classes`), dropping detections of classes the dataset does not have;
- refuses, in one line before any work, a dataset with a class the model never learned
  (:func:`check_class_match`).

Open-vocabulary heads score the names they are given at test time (by default the test set's
own), so their test vocabulary is their list of classes and matching is the identity.
Weights that record no names (detectron2's model zoo, older checkpoints) are matched by
position, as detectron2 does, when the class counts agree, with a warning.
"""
import logging
import os
from typing import List, Optional, Sequence

import torch
from torch import nn

from detectron2.data import MetadataCatalog

from ..config import SetupError

__all__ = ["CHECKPOINT_KEY", "RecordedClassNames", "checkpoint_class_names",
           "training_class_names", "head_class_names", "match_names", "class_index",
           "remap_instances", "to_dataset_classes",
           "check_class_match", "weights_file", "load_checkpoint", "resume_mismatch"]

logger = logging.getLogger(__name__)

# The checkpoint entry (beside "model", "optimizer", "iteration") that holds the class names.
CHECKPOINT_KEY = "thing_classes"


class RecordedClassNames:
    """A detectron2 checkpointable that writes the training classes into every checkpoint.

    On ``--resume`` the checkpointer hands the recorded names back; names other than this
    run's mean the output directory belongs to a run on other classes (a SetupError).
    """

    def __init__(self, names: Sequence[str], output_dir: str = ""):
        self.names = list(names)
        self.output_dir = output_dir

    def state_dict(self):
        return list(self.names)

    def load_state_dict(self, names):
        if list(names) != self.names:
            raise SetupError(resume_mismatch(self.output_dir, list(names), self.names))


def resume_mismatch(output_dir, recorded, now):
    """The one-line refusal of a resume whose checkpoint recorded other classes."""
    return (f"--resume: the checkpoint in {output_dir} was trained on classes {recorded}, the "
            f"training set now has {now}; use a new OUTPUT_DIR (or drop --resume to start over)")


def weights_file(cfg, resume=False) -> str:
    """The checkpoint a model built from ``cfg`` loads: OUTPUT_DIR's last checkpoint with
    ``resume`` (when there is one), else MODEL.WEIGHTS."""
    tag = os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")
    if resume and os.path.isfile(tag):
        with open(tag) as f:
            return os.path.join(cfg.OUTPUT_DIR, f.read().strip())
    return cfg.MODEL.WEIGHTS


def load_checkpoint(path):
    """A checkpoint file's dict (memory-mapped where torch can); SetupError if unreadable."""
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except RuntimeError:
        pass  # not torch's zip format (mmap needs it): read it whole
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file: torch raises many kinds
        raise SetupError(f"cannot read checkpoint {path} ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]}); give a checkpoint saved by "
                         "detectron2 / zip_d2") from None


def checkpoint_class_names(path: str) -> Optional[List[str]]:
    """The class names a zip_d2 checkpoint records; None for weights that record none (URLs,
    model-zoo names, detectron2 ``.pkl`` files, checkpoints of older zip_d2 versions)."""
    if not path or not os.path.isfile(path) or path.endswith(".pkl"):
        return None
    checkpoint = load_checkpoint(path)
    names = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    return list(names) if names is not None else None


def training_class_names(cfg) -> Optional[List[str]]:
    """The classes a model trained on ``cfg`` learns: DATASETS.TRAIN[0]'s ``thing_classes``
    (detectron2 requires every training set to have the same), None without a training set."""
    if not cfg.DATASETS.TRAIN:
        return None
    meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
    return list(meta.thing_classes) if hasattr(meta, "thing_classes") else None


def head_class_names(model: nn.Module) -> Optional[List[str]]:
    """The test vocabulary of an open-vocabulary model (the names it scores now); None for a
    closed-set model, whose classes are those it was trained on."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    predictor = getattr(getattr(model, "roi_heads", None), "box_predictor", None)
    if isinstance(predictor, nn.ModuleList):  # cascade: every stage scores the same names
        predictor = predictor[-1]
    names = getattr(predictor, "test_class_names", None)
    return list(names) if names is not None else None


def _dataset_classes(dataset_name):
    meta = MetadataCatalog.get(dataset_name)
    if not hasattr(meta, "thing_classes"):
        raise SetupError(f"dataset {dataset_name!r} has no class names (thing_classes); register "
                         "it from a COCO JSON with categories")
    return list(meta.thing_classes)


def match_names(model_names: Optional[Sequence[str]], names: Sequence[str], source: str,
                where: str, num_classes: Optional[int] = None) -> List[int]:
    """For each class index of the model, the index of the same name in ``names``, or -1
    where ``names`` lacks it (those detections are dropped).

    Args:
        model_names: the model's classes in index order; None when its weights record none:
            then the classes are matched by position and ``num_classes`` must equal
            ``len(names)``.
        names: the classes wanted (a dataset's ``thing_classes``, a demo's vocabulary).
        source / where: what ``model_names`` / ``names`` come from, for the error message.

    Raises:
        SetupError: ``names`` has a class the model does not know, or names repeat, or
            (without model names) the counts differ; one line naming both lists and the fix.
    """
    names = list(names)
    if model_names is None:
        if num_classes != len(names):
            raise SetupError(
                f"{where} has {len(names)} classes, the model {num_classes} and {source} records "
                "no class names to match them by; give the model's classes, or retrain with "
                "zip_d2 (its checkpoints record their class names)")
        logger.warning("%s records no class names: the %d classes of %s are matched by position",
                       source, num_classes, where)
        return list(range(num_classes))
    model_names = list(model_names)
    for listed, whose in ((model_names, source), (names, where)):
        repeated = sorted({n for n in listed if listed.count(n) > 1})
        if repeated:
            raise SetupError(f"{whose} names classes {repeated} more than once, so they cannot be "
                             "matched by name; give every class its own name")
    unknown = [n for n in names if n not in model_names]
    if unknown:
        raise SetupError(
            f"{where} has classes the model was not trained on: {unknown} (model classes from "
            f"{source}: {model_names}); use only classes the model knows (ids and order may "
            "differ; names must match), or train a model on these classes")
    extra = [n for n in model_names if n not in names]
    if extra:
        logger.info("%s lacks the model's classes %s: their detections are dropped", where, extra)
    position = {n: i for i, n in enumerate(names)}
    return [position.get(n, -1) for n in model_names]


def class_index(model_names: Optional[Sequence[str]], dataset_name: str, source: str,
                num_classes: Optional[int] = None) -> List[int]:
    """:func:`match_names` against a registered dataset's ``thing_classes``: for each class
    index of the model, the dataset's index of the same name, or -1."""
    json_file = MetadataCatalog.get(dataset_name).get("json_file")
    where = f"dataset {dataset_name!r}" + (f" ({json_file})" if json_file else "")
    return match_names(model_names, _dataset_classes(dataset_name), source, where, num_classes)


def remap_instances(instances, index: Sequence[int]):
    """Instances whose ``pred_classes`` are translated by ``index`` (:func:`match_names`);
    those of classes mapped to -1 dropped."""
    if list(index) == list(range(len(index))):
        return instances
    index = torch.as_tensor(list(index), dtype=torch.long)
    classes = index.to(instances.pred_classes.device)[instances.pred_classes]
    keep = classes >= 0
    instances = instances[keep]
    instances.pred_classes = classes[keep]
    return instances


class _DatasetClassesModel(nn.Module):
    """A detector whose outputs' ``pred_classes`` are a dataset's class indices."""

    def __init__(self, model: nn.Module, index: Sequence[int]):
        super().__init__()
        self.model = model
        self.index = list(index)

    def forward(self, inputs):
        outputs = self.model(inputs)
        for output in outputs:
            if "instances" in output:
                output["instances"] = remap_instances(output["instances"], self.index)
        return outputs


def to_dataset_classes(model: nn.Module, index: Sequence[int]) -> nn.Module:
    """``model``, its predicted classes translated by ``index`` (:func:`class_index`) and the
    detections of classes the dataset lacks dropped; ``model`` itself when the index is the
    identity. For inference: the wrapper has no parameters of its own."""
    if list(index) == list(range(len(index))):
        return model
    return _DatasetClassesModel(model, index)


def check_class_match(cfg, train: bool, resume: bool = False, test_names=None) -> None:
    """Refuse, before any work, a test set (DATASETS.TEST) the model cannot be scored on by
    name, and a closed-set model whose class count disagrees with its classes (a resumed
    checkpoint's classes: ``zip_d2.engine.setup.check_resume``).

    The model's classes: the open-vocabulary test vocabulary ``test_names`` when given; else
    the training set's when ``train``; else those recorded in the checkpoint it loads
    (:func:`weights_file`). The datasets must be registered.

    Raises:
        SetupError: one line naming both lists and the fix.
    """
    num = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if test_names is not None:
        names, source = list(test_names), "the test vocabulary (MODEL.ROI_BOX_HEAD.OPEN_VOCAB)"
    elif train:
        names = training_class_names(cfg)
        json_file = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).get("json_file")
        source = f"the training set {cfg.DATASETS.TRAIN[0]!r}" + (f" ({json_file})" if json_file
                                                                  else "")
        if names is not None and len(names) != num:
            raise SetupError(
                f"{source} has {len(names)} classes but MODEL.ROI_HEADS.NUM_CLASSES is {num}; "
                f"set MODEL.ROI_HEADS.NUM_CLASSES {len(names)}")
    else:
        weights = weights_file(cfg, resume)
        names, source = checkpoint_class_names(weights), weights or "MODEL.WEIGHTS"
        if names is not None and len(names) != num:
            raise SetupError(
                f"{weights} was trained on {len(names)} classes {names} but MODEL.ROI_HEADS."
                f"NUM_CLASSES is {num}; set MODEL.ROI_HEADS.NUM_CLASSES {len(names)}")
    for dataset_name in cfg.DATASETS.TEST:
        class_index(names, dataset_name, source, num_classes=num)
