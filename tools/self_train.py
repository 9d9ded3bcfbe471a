#!/usr/bin/env python
"""Self-training rounds (CutLER recipe) from pseudo-labels or a trained round-0 checkpoint.

Each round predicts on the pseudo-labelled images, keeps predictions scored >= the round's
threshold (ZIP.SELF_TRAIN.SCORE_THRESHOLDS) plus old pseudo-masks they do not cover
(best mask IoU < ZIP.SELF_TRAIN.KEEP_OLD_MAX_IOU), writes and validates roundK/labels.json,
registers it and trains the next detector from the previous one. Rerun the same command to
resume an interrupted run; the run directory records its inputs, and other inputs are refused
(--overwrite starts over).

    python tools/self_train.py --config-file configs/self_train/mask_rcnn_R18_synthetic.yaml \
        --labels work/sim/pseudo_train.json --image-root work/synthetic/train \
        --output-dir output/self_train --rounds 2 --droploss
    # from an existing detector (round 0 not trained here):
    python tools/self_train.py ... --weights output/round0/model_final.pth --rounds 1
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import argparse
import sys

from detectron2.utils.logger import setup_logger

import zip_d2.modeling  # noqa: F401  (registers zip_d2's heads, DropLoss included)
from zip_d2.config import SetupError
from zip_d2.data.validate import DatasetError
from zip_d2.engine.setup import add_register_argument
from zip_d2.selftrain import SelfTrainingRun, summary_table


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config overrides for every round")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for name in ("detectron2", "fvcore", "zip_d2"):  # as train_net's default_setup does
        setup_logger(name=name)
    try:
        run = SelfTrainingRun(args.config_file, args.labels, args.image_root, args.output_dir,
                              args.rounds, weights=args.weights, droploss=args.droploss,
                              opts=args.opts, register=args.register_dataset,
                              overwrite=args.overwrite)
        run.check_weights()  # every missing weight in one line, before round 0 starts
        summary = run.run()
    except (SetupError, DatasetError, ValueError) as e:
        print(f"self_train: error: {e}", file=sys.stderr)
        return 2
    print(summary_table(summary, run.output_dir))
    print(f"summary: {run.summary_path}; each round's log: {run.output_dir}/roundK/log.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
