"""Pre-flight checks shared by the training tools (their flags are in :mod:`zip_d2.arguments`,
the config itself is built by ``zip_d2.config.setup_cfg``)."""
import os

import torch
from yacs.config import CfgNode

from ..config import OPTIMIZERS, SetupError
from ..data.register import check_datasets, register_from_cfg
from ..modeling.vocabulary import planned_test_class_names, required_clip_weights
from ..models import MissingWeightsError, checkpoint_weight_source, require_weights
from .class_names import (
    CHECKPOINT_KEY,
    check_class_match,
    load_checkpoint,
    resume_mismatch,
    training_class_names,
    weights_file,
)


def required_weights(cfg, resume=False, model_weights=True):
    """Every weight source building and loading this config's detector uses, found without the
    network: MODEL.WEIGHTS (a file, a URL or a detectron2:// / catalog:// model-zoo name; not
    needed when ``resume`` finds a last_checkpoint in OUTPUT_DIR, nor when ``model_weights`` is
    False) and the CLIP weights of open-vocabulary heads that compute text embeddings.
    The config's datasets must be registered (the heads may take their class names)."""
    sources = []
    resumed = resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))
    if model_weights and cfg.MODEL.WEIGHTS and not resumed:
        sources.append(checkpoint_weight_source(cfg.MODEL.WEIGHTS, key="MODEL.WEIGHTS"))
    return sources + required_clip_weights(cfg)


def check_weights(cfg, resume=False, model_weights=True):
    """SetupError, with one line per missing file or model naming the key that provides
    it, unless all of :func:`required_weights` are on this machine or can be downloaded now."""
    try:
        require_weights(required_weights(cfg, resume, model_weights))
    except (MissingWeightsError, ValueError) as e:
        raise SetupError(str(e)) from None


def preflight(cfg, train=True, resume=False):
    """Register and validate the config's datasets, check the device and every weight source;
    one-line errors.

    Runs in the launching process before any worker starts, so a bad dataset, config or a
    missing weights file stops the job at once instead of inside every worker.
    """
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise SetupError("MODEL.DEVICE is cuda but no GPU is visible; add MODEL.DEVICE cpu")
    if train and cfg.SOLVER.AMP.ENABLED and not cfg.MODEL.DEVICE.startswith("cuda"):
        raise SetupError("SOLVER.AMP.ENABLED needs a GPU (Detectron2's AMPTrainer is CUDA-only)")
    if train:
        check_optimizer(cfg)
        check_schedule(cfg)
    register_from_cfg(cfg)
    names = (list(cfg.DATASETS.TRAIN) if train else []) + list(cfg.DATASETS.TEST)
    refuse_writing_over_datasets(cfg, names)
    required = cfg.DATASETS.TRAIN if train else ()
    # Weights first: seconds, where checking every image of a large dataset takes minutes.
    try:
        sources = required_weights(cfg, resume)
    except ValueError as e:
        # The heads' vocabulary comes from the datasets: a broken one explains this better.
        check_datasets(cfg, names, require_annotations=required)
        raise SetupError(str(e)) from None
    try:
        require_weights(sources)
    except MissingWeightsError as e:
        raise SetupError(str(e)) from None
    check_datasets(cfg, names, require_annotations=required,
                   require_masks=required if cfg.MODEL.MASK_ON else ())
    # The model's classes against each test set's, by name: a test set with a class the model
    # never learned would be scored at exit 0 (by index, against another class).
    try:
        test_names = planned_test_class_names(cfg)
    except ValueError as e:
        raise SetupError(str(e)) from None
    check_class_match(cfg, train=train, resume=resume, test_names=test_names)
    if train and resume:
        check_resume(cfg)


def check_optimizer(cfg):
    """SetupError unless SOLVER.OPTIMIZER is one zip_d2's Trainer builds."""
    if cfg.SOLVER.OPTIMIZER not in OPTIMIZERS:
        raise SetupError(f"SOLVER.OPTIMIZER must be {' or '.join(OPTIMIZERS)}, "
                         f"got {cfg.SOLVER.OPTIMIZER!r}")


def check_schedule(cfg):
    """SetupError for a learning-rate schedule detectron2's scheduler cannot build (it raises
    once the workers start): SOLVER.STEPS not increasing, or a step at SOLVER.MAX_ITER.
    Steps beyond MAX_ITER are detectron2's to drop (with its warning)."""
    steps, max_iter = list(cfg.SOLVER.STEPS), cfg.SOLVER.MAX_ITER
    if max_iter < 1:
        raise SetupError(f"SOLVER.MAX_ITER must be at least 1, got {max_iter}")
    if cfg.SOLVER.LR_SCHEDULER_NAME != "WarmupMultiStepLR":
        return
    kept = [s for s in steps if s <= max_iter]
    if any(b <= a for a, b in zip(kept, kept[1:])) or any(s < 1 for s in kept):
        raise SetupError(f"SOLVER.STEPS {tuple(steps)} must be positive and increasing")
    if max_iter in kept:
        raise SetupError(
            f"SOLVER.STEPS {tuple(steps)} has a step at SOLVER.MAX_ITER {max_iter} (a step must "
            f"come before the last iteration); set SOLVER.STEPS below it, e.g. "
            f"SOLVER.STEPS \"({max(1, int(max_iter * 0.8))},)\", or SOLVER.STEPS \"()\" for none")


def check_resume(cfg):
    """SetupError unless the checkpoint ``--resume`` continues from (OUTPUT_DIR's last one)
    fits the model this config builds: the same training classes (where it records them) and
    the same parameter names and shapes. Detectron2 would otherwise skip the tensors that
    changed (a NUM_CLASSES change re-initialises the classifier at exit 0) or fail inside the
    optimizer."""
    path = weights_file(cfg, resume=True)
    if path == cfg.MODEL.WEIGHTS:
        return  # nothing to resume: training starts from MODEL.WEIGHTS
    if not os.path.isfile(path):
        raise SetupError(f"--resume: {os.path.join(cfg.OUTPUT_DIR, 'last_checkpoint')} names "
                         f"{path}, which does not exist; drop --resume or use a new OUTPUT_DIR")
    checkpoint = load_checkpoint(path)
    recorded, names = checkpoint.get(CHECKPOINT_KEY), training_class_names(cfg)
    if recorded is not None and names is not None and list(recorded) != names:
        raise SetupError(resume_mismatch(cfg.OUTPUT_DIR, list(recorded), names))
    saved = checkpoint.get("model") or {}
    from detectron2.modeling import build_model

    built = cfg.clone()
    built.defrost()
    built.MODEL.DEVICE = "cpu"
    with torch.random.fork_rng(devices=[]):
        now = {k: tuple(v.shape) for k, v in build_model(built).state_dict().items()}
    was = {k: tuple(getattr(v, "shape", ())) for k, v in saved.items()}
    changed = sorted(k for k in now.keys() & was.keys() if now[k] != was[k])
    missing, extra = sorted(now.keys() - was.keys()), sorted(was.keys() - now.keys())
    if not (changed or missing or extra):
        return
    if changed:
        first = f"{changed[0]} is {was[changed[0]]} there, {now[changed[0]]} now"
    else:
        first = f"{(missing or extra)[0]} is {'missing there' if missing else 'not in the model'}"
    raise SetupError(
        f"--resume: {path} was trained with another architecture or NUM_CLASSES ({first}; "
        f"{len(changed) + len(missing) + len(extra)} tensors differ); resume with the config it "
        "was trained with, or use a new OUTPUT_DIR (or drop --resume to start over)")


# What a training or evaluation run writes in OUTPUT_DIR (detectron2's default_setup, logger,
# checkpointer, JSON writer, and the COCO evaluators under inference/<dataset>).
_RUN_FILES = ("config.yaml", "log.txt", "metrics.json", "last_checkpoint", "model_final.pth")
_EVAL_FILES = ("coco_instances_results.json", "instances_predictions.pth")


def refuse_writing_over_datasets(cfg, names):
    """SetupError if a file the run writes in OUTPUT_DIR is the annotation file of one of the
    datasets ``names`` (registered), with or without --resume."""
    from detectron2.data import MetadataCatalog

    from ..data.paths import OverwriteError, refuse_overwriting_inputs

    out = cfg.OUTPUT_DIR
    outputs = [os.path.join(out, f) for f in _RUN_FILES] + [
        os.path.join(out, "inference", name, f) for name in cfg.DATASETS.TEST for f in _EVAL_FILES]
    inputs = [(f"the annotations of {name}", MetadataCatalog.get(name).get("json_file", None))
              for name in names]
    try:
        refuse_overwriting_inputs([("OUTPUT_DIR", path) for path in outputs], inputs)
    except OverwriteError as e:
        raise SetupError(str(e)) from None


def inference_cfg(cfg, weights=None, test=None, device=None, score_thresh=None):
    """The config of a model built only for inference (``train_net.py --eval-only``, the demo,
    evaluating a checkpoint): ``cfg`` with DATASETS.TRAIN cleared. Nothing at inference
    depends on the training data, and an open-vocabulary head then takes its vocabulary from
    the test set (or the explicit OPEN_VOCAB keys), so the training set need not be
    registered. Frozen; ``cfg`` itself is not changed.

    Args:
        weights (str or None): MODEL.WEIGHTS (None: keep the config's).
        test (sequence of str or None): DATASETS.TEST (None: keep the config's).
        device (str or None): MODEL.DEVICE (None: keep the config's).
        score_thresh (float or None): MODEL.ROI_HEADS.SCORE_THRESH_TEST (None: keep).
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.TRAIN = ()
    if test is not None:
        cfg.DATASETS.TEST = tuple(test)
    if weights is not None:
        cfg.MODEL.WEIGHTS = weights
    if device is not None:
        cfg.MODEL.DEVICE = device
    if score_thresh is not None:
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_thresh
    cfg.freeze()
    return cfg


def config_dict(cfg):
    """The config as plain Python containers (for logs and experiment trackers)."""
    def convert(node):
        if isinstance(node, CfgNode):
            return {k: convert(v) for k, v in node.items()}
        return node
    return convert(cfg)
