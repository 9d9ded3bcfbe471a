"""Pre-flight checks and command-line pieces shared by the training tools (the config
itself is built by ``zip_d2.config.setup_cfg``)."""

import torch
from yacs.config import CfgNode

from ..config import OPTIMIZERS, SetupError
from ..data.register import check_datasets, register_from_cfg


def add_register_argument(parser):
    """``--register-dataset NAME JSON IMAGE_ROOT`` (repeatable) on an argparse parser."""
    parser.add_argument(
        "--register-dataset", nargs=3, action="append", default=[],
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a COCO-format JSON as dataset NAME (repeatable); same as an entry "
        "of ZIP.DATASETS.REGISTER",
    )


def preflight(cfg, train=True):
    """Register and validate the config's datasets and check the device; one-line errors.

    Runs in the launching process before any worker starts, so a bad dataset or config stops
    the job at once instead of inside every worker.
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
    check_datasets(cfg, names, require_annotations=cfg.DATASETS.TRAIN if train else ())


def config_dict(cfg):
    """The config as plain Python containers (for logs and experiment trackers)."""
    def convert(node):
        if isinstance(node, CfgNode):
            return {k: convert(v) for k, v in node.items()}
        return node
    return convert(cfg)
