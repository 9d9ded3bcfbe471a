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

from zip_d2.arguments import LAUNCH_HELP, add_register_argument, default_argument_parser


def parse_args(argv=None):
    parser = default_argument_parser(epilog=LAUNCH_HELP)
    add_register_argument(parser)
    return parser.parse_args(argv)


def cli(argv=None):
    args = parse_args(argv)
    # torch and detectron2 load only now: --help and argument errors answer without them.
    from zip_d2.engine.train_net import train_net
    return train_net(args)


if __name__ == "__main__":
    sys.exit(cli())
