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

from torch.multiprocessing import ProcessExitedException

from detectron2.engine import launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import zip_d2.modeling  # noqa: F401  (registers zip_d2's heads, DropLoss included)
from zip_d2.config import SetupError
from zip_d2.data.validate import DatasetError
from zip_d2.engine.distributed import (
    LAUNCH_HELP,
    add_launch_arguments,
    check_launch,
    set_cpu_threads,
)
from zip_d2.engine.setup import add_register_argument
from zip_d2.selftrain import SelfTrainingRun, summary_table

# Errors reported as one line (exit status 2) rather than a traceback.
REPORTED = (SetupError, DatasetError, ValueError)


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


def worker(run):
    """Runs in every process, with the run the launching process built and checked; exits
    with status 2 after a reported error."""
    for name in ("detectron2", "fvcore", "zip_d2"):  # as train_net's default_setup does
        setup_logger(name=name, distributed_rank=comm.get_rank())
    set_cpu_threads()
    try:
        summary = run.run()
    except REPORTED as e:
        # Every process meets the same error (decisions are shared), so all stop here.
        if comm.is_main_process():
            print(f"self_train: error: {e}", file=sys.stderr)
        sys.exit(2)
    if comm.is_main_process():
        print(summary_table(summary, run.output_dir))
        print(f"summary: {run.summary_path}; each round's log: {run.output_dir}/roundK/log.txt")


def main(argv=None):
    args = parse_args(argv)
    try:
        # Built once here (its inputs fingerprinted once) and handed to every process.
        run = SelfTrainingRun(args.config_file, args.labels, args.image_root, args.output_dir,
                              args.rounds, weights=args.weights, droploss=args.droploss,
                              opts=args.opts, register=args.register_dataset,
                              overwrite=args.overwrite)
        check_launch(run.base_cfg, args.num_gpus, args.num_machines, args.machine_rank,
                     args.dist_url)
        run.preflight()  # weights, labels, classes: one line before anything is written
    except REPORTED as e:
        print(f"self_train: error: {e}", file=sys.stderr)
        return 2
    try:
        launch(worker, args.num_gpus, num_machines=args.num_machines,
               machine_rank=args.machine_rank, dist_url=args.dist_url, args=(run,))
    except SystemExit as e:  # one process: worker() ran here
        return e.code
    except ProcessExitedException as e:  # several: a worker exited with an error status
        return e.exit_code if e.exit_code and e.exit_code > 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
