#!/usr/bin/env python
"""Train or evaluate a zip_d2 detector on registered COCO-format datasets.

Detectron2's conventions: --config-file, --num-gpus, --num-machines, --machine-rank,
--dist-url, --resume, --eval-only, then KEY VALUE config overrides. Datasets beyond
Detectron2's builtin names are registered with --register-dataset NAME JSON IMAGE_ROOT.
On a machine without a GPU, --num-gpus N trains with N CPU processes (see --help).

    python tools/train_net.py --config-file configs/synthetic/mask_rcnn_R18_synthetic.yaml \
        --register-dataset synthetic_train work/synthetic/train.json work/synthetic/train \
        --register-dataset synthetic_val work/synthetic/val.json work/synthetic/val
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import sys

from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import zip_d2.modeling  # noqa: F401  (registers zip_d2's heads and proposal generators)
from zip_d2.config import SetupError, setup_cfg
from zip_d2.data.register import register_from_cfg
from zip_d2.data.validate import DatasetError
from zip_d2.engine import Trainer
from zip_d2.engine.distributed import LAUNCH_HELP, check_launch, set_cpu_threads
from zip_d2.engine.setup import add_register_argument, inference_cfg, preflight
from zip_d2.engine.train import train_detector


def main(args):
    """Runs in every training process."""
    cfg = setup_cfg(args.config_file, args.opts, args.register_dataset)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="zip_d2")
    set_cpu_threads()
    register_from_cfg(cfg)  # spawned workers start with empty catalogs; checks ran in cli()
    if args.eval_only:
        model, iteration, class_names = Trainer.build_inference_model(cfg, resume=args.resume)
        results = Trainer.test(inference_cfg(cfg), model, class_names=class_names)
        # One stamp for one checkpoint: the iterations its weights were trained for, as the
        # end-of-training evaluation stamps it (detectron2 saves model_final at MAX_ITER - 1).
        Trainer.write_eval_results(cfg, results, None if iteration is None else iteration + 1)
        return results
    return train_detector(cfg, resume=args.resume)


def parse_args(argv=None):
    parser = default_argument_parser(epilog=LAUNCH_HELP)
    add_register_argument(parser)
    return parser.parse_args(argv)


def cli(argv=None):
    args = parse_args(argv)
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
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
