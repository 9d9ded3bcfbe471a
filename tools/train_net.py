#!/usr/bin/env python
"""Train or evaluate a zip_d2 detector on registered COCO-format datasets.

Detectron2's conventions: --config-file, --num-gpus, --num-machines, --machine-rank,
--dist-url, --resume, --eval-only, then KEY VALUE config overrides. Datasets beyond
Detectron2's builtin names are registered with --register-dataset NAME JSON IMAGE_ROOT.

    python tools/train_net.py --config-file configs/synthetic/mask_rcnn_R18_synthetic.yaml \
        --register-dataset synthetic_train work/synthetic/train.json work/synthetic/train \
        --register-dataset synthetic_val work/synthetic/val.json work/synthetic/val
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import sys

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser, default_setup, launch

import zip_d2.modeling  # noqa: F401  (registers zip_d2's heads and proposal generators)
from zip_d2.config import SetupError, setup_cfg
from zip_d2.data.register import register_from_cfg
from zip_d2.data.validate import DatasetError
from zip_d2.engine import Trainer
from zip_d2.engine.setup import add_register_argument, preflight


def main(args):
    """Runs in every training process."""
    cfg = setup_cfg(args.config_file, args.opts, args.register_dataset)
    default_setup(cfg, args)
    register_from_cfg(cfg)  # spawned workers start with empty catalogs; checks ran in cli()
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def parse_args(argv=None):
    parser = default_argument_parser()
    add_register_argument(parser)
    return parser.parse_args(argv)


def cli(argv=None):
    args = parse_args(argv)
    try:
        cfg = setup_cfg(args.config_file, args.opts, args.register_dataset)
        preflight(cfg, train=not args.eval_only, resume=args.resume)
    except (SetupError, DatasetError) as e:
        print(f"train_net: error: {e}", file=sys.stderr)
        return 2
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
