#!/usr/bin/env python
"""Self-training rounds (CutLER recipe) from pseudo-labels or a trained round-0 checkpoint.

Each round predicts on the pseudo-labelled images, keeps predictions scored >= the round's
threshold (ZIP.SELF_TRAIN.SCORE_THRESHOLDS) plus old pseudo-masks they do not cover
(best mask IoU < ZIP.SELF_TRAIN.KEEP_OLD_MAX_IOU), writes and validates roundK/labels.json,
registers it and trains the next detector from the previous one. Rerun the same command to
resume an interrupted run; the run directory records its inputs, and other inputs are refused
(--overwrite starts over). Detectron2's launch flags (--num-gpus, --num-machines,
--machine-rank, --dist-url) run every round on several processes: GPUs, or CPU processes on
a machine without one (see --help).

    python tools/self_train.py --config-file configs/self_train/mask_rcnn_R18_synthetic.yaml \
        --labels work/sim/pseudo_train.json --image-root work/synthetic/train \
        --output-dir output/self_train --rounds 2 --droploss
    # from an existing detector (round 0 not trained here):
    python tools/self_train.py ... --weights output/round0/model_final.pth --rounds 1
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import argparse
import sys

from zip_d2.arguments import LAUNCH_HELP, add_launch_arguments, add_register_argument


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=LAUNCH_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="detector config (MASK_ON)")
    parser.add_argument("--labels", required=True, help="round-0 pseudo-labels (COCO JSON)")
    parser.add_argument("--image-root", required=True, help="directory of the labelled images")
    parser.add_argument("--output-dir", required=True, help="run directory (resumed if present)")
    parser.add_argument("--rounds", type=int, default=1, help="self-training rounds after round 0")
    parser.add_argument("--weights", default=None,
                        help="trained round-0 checkpoint; omit to train round 0 here")
    parser.add_argument("--droploss", action="store_true",
                        help="train round 0 with DropLoss (ignored with --weights)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in an --output-dir that holds a run with other inputs "
                             "(deletes its rounds); without it such a directory is refused")
    add_register_argument(parser)
    add_launch_arguments(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config overrides for every round")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # torch and detectron2 load only now: --help and argument errors answer without them.
    from zip_d2.selftrain.launch import self_train
    return self_train(args)


if __name__ == "__main__":
    sys.exit(main())
