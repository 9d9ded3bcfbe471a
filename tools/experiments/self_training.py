#!/usr/bin/env python
"""Experiment 2: one self-training round (CutLER rule, threshold 0.7) vs more training on the
round-0 labels.

Round 0 is experiment 1's detector of a pseudo-label source (default: discovery-made labels,
thinness rule; DropLoss). Round 1 (zip_d2.selftrain.SelfTrainingRun, as tools/self_train.py):
the round-0 detector predicts on the 400 train images; labels = predictions with score >= 0.7
plus the round-0 labels whose best mask IoU with them is < 0.5; then ROUND_ITERS iterations from
the round-0 weights. Control: the same ROUND_ITERS iterations from the same weights on the
round-0 labels, so "round 1 beats round 0" cannot be just "more training". Scored: box and mask
AP on val; the round-1 labels' AP against the train ground truth vs round 0's; how many
predictions passed the threshold.

    OMP_NUM_THREADS=1 nohup python tools/experiments/self_training.py --root work/exp15 \
        > work/exp15_e2.log 2>&1 &
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import os
import sys

import annotation_free
import common
import numpy as np

from zip_d2.data.coco_json import load_json
from zip_d2.selftrain import SelfTrainingRun

EXPERIMENT = "e2"
ROUND_ITERS, WARMUP = 300, 50
THRESHOLD = 0.7  # CutLER's round-1 threshold (ZIP.SELF_TRAIN.SCORE_THRESHOLDS[0])


def run_dir(root, source, seed):
    return os.path.join(root, "runs", EXPERIMENT, f"{source}_s{seed}")


def self_trained_checkpoint(root, source, seed):
    """The round-1 detector (the starting point of experiment 3)."""
    return os.path.join(run_dir(root, source, seed), "selftrain", "round1", "model_final.pth")


def control_checkpoint(root, source, seed):
    """The control detector: round 0 trained the same extra iterations on its own labels."""
    return os.path.join(run_dir(root, source, seed), "control", "round0", "model_final.pth")


def score_counts(predictions_json):
    """How many predictions on the train images reach 0.5 / 0.7 / 0.9, and the highest score."""
    scores = np.array([p["score"] for p in load_json(predictions_json)], np.float64)
    return {"predictions": int(scores.size), ">=0.5": int((scores >= 0.5).sum()),
            ">=0.7": int((scores >= 0.7).sum()), ">=0.9": int((scores >= 0.9).sum()),
            "max": round(float(scores.max()), 3) if scores.size else None}


def run(root, seeds, sources, iters=ROUND_ITERS):
    data = common.make_data(root)
    for seed in seeds:
        for source in sources:
            name = f"{source}_s{seed}"
            if common.finished(root, EXPERIMENT, name):
                continue
            round0 = annotation_free.round0_checkpoint(root, source, seed)
            e1 = common.finished(root, annotation_free.EXPERIMENT, name)
            e1_labels = common.finished(root, annotation_free.EXPERIMENT, f"labels_{name}")
            if e1 is None or e1_labels is None:
                sys.exit(f"self_training: experiment 1's run {name} is not finished "
                         f"({round0}); run tools/experiments/annotation_free.py first")
            labels = e1["labels"]
            opts = common.schedule(iters, min(WARMUP, iters), seed=seed) + [
                "ZIP.SELF_TRAIN.SCORE_THRESHOLDS", f"[{THRESHOLD}]", "DATASETS.TEST", "()"]
            st = SelfTrainingRun(common.CONFIG, labels, data["train_images"],
                                 os.path.join(run_dir(root, source, seed), "selftrain"),
                                 rounds=1, weights=round0, opts=opts)
            summary = st.run()
            # The control continues round 0 on its own labels, without DropLoss as round 1.
            control = SelfTrainingRun(common.CONFIG, labels, data["train_images"],
                                      os.path.join(run_dir(root, source, seed), "control"),
                                      rounds=0, opts=opts + ["MODEL.WEIGHTS", round0])
            control.run()
            round1_labels = st.labels_path(1)
            merge = load_json(round1_labels)["info"]["self_training"]
            common.record(root, EXPERIMENT, name, {
                "source": source, "source_label": common.SOURCES[source], "seed": seed,
                "round_iterations": iters, "threshold": THRESHOLD,
                "predictions_on_train": score_counts(
                    os.path.join(st.round_dir(1), "predictions.json")),
                "merge": {k: merge[k] for k in ("predictions_kept", "old_kept", "old_replaced")},
                "round1_summary": summary["round_info"]["1"],
                "round0_val": e1["val"],
                "round1_val": common.evaluate_checkpoint(
                    st.checkpoint(1), f"e2_val_round1_{name}", data["val"], data["val_images"]),
                "control_val": common.evaluate_checkpoint(
                    control.checkpoint(0), f"e2_val_control_{name}", data["val"],
                    data["val_images"]),
                "round0_labels_vs_train_gt": e1_labels["vs_train_gt"],
                "round1_labels_vs_train_gt": common.label_quality(round1_labels, data["train"]),
            })


def main():
    parser = common.experiment_parser(__doc__, ROUND_ITERS, "round-1 (and control) iterations")
    parser.add_argument("--sources", nargs="+", default=["disc_new"],
                        choices=[s for s in common.SOURCES if s != "gt"])
    args = parser.parse_args()
    run(common.start(args), args.seeds, args.sources, args.iters)


if __name__ == "__main__":
    main()
