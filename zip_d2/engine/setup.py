"""Pre-flight checks and command-line pieces shared by the training tools (the config
itself is built by ``zip_d2.config.setup_cfg``)."""
import os

import torch
from yacs.config import CfgNode

from ..config import OPTIMIZERS, SetupError
from ..data.register import check_datasets, register_from_cfg
from ..modeling.vocabulary import required_clip_weights
from ..models import MissingWeightsError, checkpoint_weight_source, require_weights


def add_register_argument(parser):
    """``--register-dataset NAME JSON IMAGE_ROOT`` (repeatable) on an argparse parser."""
    parser.add_argument(
        "--register-dataset", nargs=3, action="append", default=[],
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a COCO-format JSON as dataset NAME (repeatable); same as an entry "
        "of ZIP.DATASETS.REGISTER",
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
    if train and cfg.SOLVER.OPTIMIZER not in OPTIMIZERS:
        raise SetupError(f"SOLVER.OPTIMIZER must be {' or '.join(OPTIMIZERS)}, "
                         f"got {cfg.SOLVER.OPTIMIZER!r}")
    register_from_cfg(cfg)
    names = (list(cfg.DATASETS.TRAIN) if train else []) + list(cfg.DATASETS.TEST)
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
    check_datasets(cfg, names, require_annotations=required)


def inference_cfg(cfg):
    """The config of a model built only for inference (``train_net.py --eval-only``): ``cfg``
    with DATASETS.TRAIN cleared. Nothing at inference depends on the training data, and an
    open-vocabulary head then takes its vocabulary from the test set (or the explicit
    OPEN_VOCAB keys), so the training set need not be registered. Frozen like ``cfg``."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.TRAIN = ()
    cfg.freeze()
    return cfg


def config_dict(cfg):
    """The config as plain Python containers (for logs and experiment trackers)."""
    def convert(node):
        if isinstance(node, CfgNode):
            return {k: convert(v) for k, v in node.items()}
        return node
    return convert(cfg)
