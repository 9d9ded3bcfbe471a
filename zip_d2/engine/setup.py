"""Config set-up and pre-flight checks shared by the training tools."""
import os

import torch
from yacs.config import CfgNode

from ..config import OPTIMIZERS, get_cfg
from ..data.register import check_datasets, register_from_cfg


class SetupError(ValueError):
    """A problem with the command line or config, reported as one line before any work."""


def add_register_argument(parser):
    """``--register-dataset NAME JSON IMAGE_ROOT`` (repeatable) on an argparse parser."""
    parser.add_argument(
        "--register-dataset", nargs=3, action="append", default=[],
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a COCO-format JSON as dataset NAME (repeatable); same as an entry "
        "of ZIP.DATASETS.REGISTER",
    )


def setup_cfg(config_file, opts=(), register=()):
    """Build the frozen config: defaults, ``config_file``, ``KEY VALUE`` ``opts``, registrations.

    Raises:
        SetupError: missing config file, unknown key or bad value, as one line.
    """
    cfg = get_cfg()
    if config_file and not os.path.isfile(config_file):
        raise SetupError(f"config file not found: {config_file}")
    for source, merge, arg in ((config_file, cfg.merge_from_file, config_file),
                               ("command-line overrides", cfg.merge_from_list, list(opts))):
        if not arg:
            continue
        try:
            merge(arg)
        except (KeyError, ValueError, AssertionError, TypeError) as e:
            msg = str(e).strip("'\"") or type(e).__name__
            raise SetupError(f"bad config in {source}: {msg}") from None
    cfg.ZIP.DATASETS.REGISTER = [list(r) for r in cfg.ZIP.DATASETS.REGISTER] + [
        list(r) for r in register]
    cfg.freeze()
    return cfg


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
