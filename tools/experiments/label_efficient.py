#!/usr/bin/env python
"""Experiment 3: finetuning on 1, 2, 5 and 10 % of the ground truth, from the self-trained
detector vs from the round-0 detector vs from scratch, same schedule (and, added after those
results, from experiment 2's control detector).

Subsets: zip_d2.data.subsets (tools/make_label_subset.py's rule: CutLER's protocol, seeded
random images with all their annotations, nested across budgets) of the 400 train images;
the subset seed is the run's seed. Starting points (trained on pseudo-labels only, never on
ground truth): experiment 1's detector of a source (round 0, default: discovery-made labels,
thinness rule) and experiment 2's round-1 detector of the same source. Every run: ITERS
iterations of the synthetic config (AdamW LR 6e-4, batch 4), scored on val.

    OMP_NUM_THREADS=1 nohup python tools/experiments/label_efficient.py --root work/exp15 \
        > work/exp15_e3.log 2>&1 &
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import os
import sys

import annotation_free
import common
import self_training

from zip_d2.data.coco_json import load_json, write_json_atomic
from zip_d2.data.subsets import LABEL_PERCENTS, make_label_subset

EXPERIMENT = "e3"
ITERS, WARMUP = 100, 20  # as written in docs/EXPERIMENTS_RESULTS.md before the runs
# "control" (experiment 2's control: round 0 plus the same 300 iterations on its own labels,
# without DropLoss) was added after the other starts' results, to tell self-training apart from
# the self-trained detector's extra training; its runs came last.
STARTS = ("self_trained", "round0", "scratch", "control")


def start_weights(root, start, source, seed):
    if start == "scratch":
        return ""
    path = {"self_trained": self_training.self_trained_checkpoint,
            "control": self_training.control_checkpoint,
            "round0": annotation_free.round0_checkpoint}[start](root, source, seed)
    if not os.path.isfile(path):
        sys.exit(f"label_efficient: starting point {path} is missing; run experiments 1 and 2 "
                 "(annotation_free.py, self_training.py) first")
    return path


def run(root, seeds, source, percents, iters=ITERS):
    data = common.make_data(root)
    full = load_json(data["train"])
    for seed in seeds:
        for percent in percents:
            subset_json = os.path.join(root, "subsets", f"train_{percent:g}pct_s{seed}.json")
            if not os.path.isfile(subset_json):
                write_json_atomic(make_label_subset(full, percent, seed, source=data["train"]),
                                  subset_json)
            subset = load_json(subset_json)
            for start in STARTS:
                name = f"{percent:g}pct_{start}_s{seed}"
                if common.finished(root, EXPERIMENT, name):
                    continue
                weights = start_weights(root, start, source, seed)
                ckpt, seconds = common.train(
                    os.path.join(root, "runs", EXPERIMENT, name), f"e3_train_{name}", subset_json,
                    data["train_images"],
                    common.schedule(iters, min(WARMUP, iters), seed=seed) + ["MODEL.WEIGHTS",
                                                                             weights])
                common.record(root, EXPERIMENT, name, {
                    "percent": percent, "start": start, "seed": seed,
                    "start_weights": weights or "none (from scratch)",
                    "start_trained_on": (common.SOURCES[source] if weights else "nothing"),
                    "num_images": len(subset["images"]),
                    "num_annotations": len(subset["annotations"]), "iterations": iters,
                    "train_seconds": seconds, "checkpoint": ckpt,
                    "val": common.evaluate_checkpoint(ckpt, f"e3_val_{name}", data["val"],
                                                      data["val_images"])})


def main():
    parser = common.experiment_parser(__doc__, ITERS, "finetuning iterations")
    parser.add_argument("--source", default="disc_new",
                        choices=[s for s in common.SOURCES if s != "gt"],
                        help="pseudo-label source of the round-0 and self-trained starts")
    parser.add_argument("--percents", type=float, nargs="+", default=list(LABEL_PERCENTS))
    args = parser.parse_args()
    run(common.start(args), args.seeds, args.source, args.percents, args.iters)


if __name__ == "__main__":
    main()
