"""What ``tools/train_net.py`` does once its arguments are parsed: check the config, the launch
and the inputs in the launching process (one line on error), then train or evaluate in every
process of detectron2's ``launch``."""
import sys

from detectron2.engine import default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from .. import modeling  # noqa: F401  (registers zip_d2's heads and proposal generators)
from ..config import SetupError, setup_cfg
from ..data.register import register_from_cfg
from ..data.validate import DatasetError
from .distributed import check_launch, set_cpu_threads
from .setup import inference_cfg, preflight
from .train import train_detector
from .trainer import Trainer

__all__ = ["train_net", "train_net_worker"]


def train_net_worker(args):
    """Runs in every training process (``args``: the parsed command line)."""
    cfg = setup_cfg(args.config_file, args.opts, args.register_dataset)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="zip_d2")
    set_cpu_threads()
    register_from_cfg(cfg)  # spawned workers start with empty catalogs; checks ran in train_net()
    if args.eval_only:
        model, iteration, class_names = Trainer.build_inference_model(cfg, resume=args.resume)
        results = Trainer.test(inference_cfg(cfg), model, class_names=class_names)
        # One stamp for one checkpoint: the iterations its weights were trained for, as the
        # end-of-training evaluation stamps it (detectron2 saves model_final at MAX_ITER - 1).
        Trainer.write_eval_results(cfg, results, None if iteration is None else iteration + 1)
        return results
    return train_detector(cfg, resume=args.resume)


def train_net(args):
    """Check, then launch :func:`train_net_worker` on ``args.num_gpus`` processes per machine.
    Returns the exit status: 2 after a one-line error on stderr, 0 once the launch returns."""
    if not args.config_file:
        print("train_net: error: give --config-file, the detector's config (e.g. "
              "configs/synthetic/mask_rcnn_R18_synthetic.yaml)", file=sys.stderr)
        return 2
    try:
        cfg = setup_cfg(args.config_file, args.opts, args.register_dataset)
        check_launch(cfg, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url,
                     train=not args.eval_only)
        if args.eval_only:
            preflight(inference_cfg(cfg), train=False, resume=args.resume)
        else:
            preflight(cfg, train=True, resume=args.resume)
    except (SetupError, DatasetError) as e:
        print(f"train_net: error: {e}", file=sys.stderr)
        return 2
    launch(train_net_worker, args.num_gpus, num_machines=args.num_machines,
           machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
    return 0
