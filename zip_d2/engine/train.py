"""Train one detector, resumably: the one mechanism ``tools/train_net.py``, the self-training
rounds and the experiments share, with one rule for "finished"."""
import logging
import os

from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

from ..config import SetupError
from ..modeling.droploss import DROPLOSS_HEADS
from .trainer import Trainer

__all__ = ["train_detector", "is_finished", "final_checkpoint", "droploss_opts"]

logger = logging.getLogger(__name__)

FINAL_CHECKPOINT = "model_final.pth"


def final_checkpoint(output_dir):
    """Path of the checkpoint a finished training leaves in ``output_dir``."""
    return os.path.join(output_dir, FINAL_CHECKPOINT)


def is_finished(output_dir):
    """Whether a training in ``output_dir`` completed: detectron2's checkpointer tags
    ``last_checkpoint`` with ``model_final.pth`` only after writing that file, so a file cut
    short by a kill (or left by another run without the tag) is not taken for a finished one."""
    tag = os.path.join(output_dir, "last_checkpoint")
    if not (os.path.isfile(final_checkpoint(output_dir)) and os.path.isfile(tag)):
        return False
    with open(tag) as f:
        return f.read().strip() == FINAL_CHECKPOINT


def train_detector(cfg, resume=False, seed=None, name=None):
    """Train the detector ``cfg`` describes into ``cfg.OUTPUT_DIR`` (every process of a launch
    calls it; data-parallel on all of them).

    The caller checks the config first (:func:`zip_d2.engine.setup.preflight`) and decides
    whether to skip a finished training (:func:`is_finished`).

    Args:
        cfg: the training config (frozen).
        resume (bool): continue from OUTPUT_DIR's ``last_checkpoint`` if there is one
            (detectron2's resume; a finished training only re-runs its final hooks);
            otherwise, and without one, start from MODEL.WEIGHTS.
        seed (int or None): seed every RNG first, as detectron2's default_setup does: with
            ``seed`` + this process's rank, or a random seed if ``seed`` is negative
            (None: leave them as they are).
        name (str or None): what the log calls this training (default: its OUTPUT_DIR).

    Returns:
        dict or None: the last evaluation's results (None if the training evaluated nothing);
        ``final_checkpoint(cfg.OUTPUT_DIR)`` is on disk for every process when it returns.
    """
    if comm.is_main_process():
        # As detectron2's default_setup does: the config next to the checkpoints.
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
            f.write(cfg.dump())
    if seed is not None:
        seed_all_rng(None if seed < 0 else seed + comm.get_rank())
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=resume)
    logger.info("%s: training from iteration %d to %d", name or cfg.OUTPUT_DIR,
                trainer.start_iter, cfg.SOLVER.MAX_ITER)
    trainer.train()
    comm.synchronize()  # model_final.pth is on disk (rank 0 wrote it) before anyone reads it
    return getattr(trainer, "_last_eval_results", None) or None


def droploss_opts(cfg):
    """KEY VALUE overrides that train ``cfg``'s RoI heads with DropLoss (CutLER's round 0):
    the DropLoss variant of MODEL.ROI_HEADS.NAME, switched on.

    Raises:
        SetupError: the heads have no DropLoss variant (one line naming the supported ones).
    """
    name = cfg.MODEL.ROI_HEADS.NAME
    if name not in DROPLOSS_HEADS:
        raise SetupError(f"DropLoss has no variant of MODEL.ROI_HEADS.NAME {name!r}; "
                         f"supported: {sorted(DROPLOSS_HEADS)}")
    return ["MODEL.ROI_HEADS.NAME", DROPLOSS_HEADS[name], "MODEL.ROI_HEADS.DROPLOSS.ENABLED",
            "True"]
