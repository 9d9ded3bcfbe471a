#!/usr/bin/env python
"""Experiment 2: one self-training round where it can work, vs as much training on the old labels.

Labels: SIMULATED precise labels of the 400 train scenes (common.PRECISE: every label right,
half the objects missing). Round 0: a detector trained on them from scratch for ROUND0_ITERS
iterations with DropLoss, so that objects without a label are not taught as background.

Precondition, measured first, on the train images: does the round-0 detector find objects its
labels miss? (recall of its predictions with score >= THRESHOLD vs the labels' recall, and the
share of the label-missed objects it finds.) Round 1 (zip_d2.selftrain.SelfTrainingRun, as
tools/self_train.py): labels = round-0 predictions with score >= THRESHOLD plus the round-0
labels whose best mask IoU with them is < 0.5; ROUND_ITERS iterations from the round-0 weights.
Control: the same ROUND_ITERS iterations from the same weights on the round-0 labels. Both use
DropLoss, as round 0, so the control is not taught to suppress the unlabelled objects: round 1
can only win through the objects it adds. Scored on the 300 held-out test scenes.

    python tools/experiments/self_training.py      # records: docs/experiments/records/e2/
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import os

import common
import numpy as np

from zip_d2.data.coco_json import load_json
from zip_d2.selftrain import SelfTrainingRun

EXPERIMENT = "e2"
SOURCE = "sim_precise"
ROUND0_ITERS = 600  # longer than the other round-0 detectors: it must outgrow its labels
ROUND_ITERS = 200
THRESHOLD = 0.7  # CutLER's round-1 threshold (ZIP.SELF_TRAIN.SCORE_THRESHOLDS[0])


def run_dir(root, seed):
    return os.path.join(root, "runs", EXPERIMENT, f"s{seed}")


def score_counts(results):
    """How many predictions reach 0.5 / 0.7 / 0.9, and the highest score."""
    scores = np.array([p["score"] for p in results], np.float64)
    return {"predictions": int(scores.size), ">=0.5": int((scores >= 0.5).sum()),
            ">=0.7": int((scores >= 0.7).sum()), ">=0.9": int((scores >= 0.9).sum()),
            "max": round(float(scores.max()), 3) if scores.size else None}


def public(counts):
    return {k: v for k, v in counts.items() if k != "found_ids"}


def round0(root, records, seed, iters, data):
    """Train round 0, then measure the precondition on the train images; recorded once."""
    name = f"round0_s{seed}"
    labels = common.pseudo_labels(root, SOURCE, seed, data["train"])
    if records.get(EXPERIMENT, name) is not None:
        return labels
    with records.run(EXPERIMENT, name, source=SOURCE, source_label=common.SOURCES[SOURCE],
                     seed=seed, droploss=True) as rec:
        ckpt, seconds, settings = common.train(
            os.path.join(run_dir(root, seed), "round0"), f"e2_train_{name}", labels,
            data["train_images"], common.schedule(iters, common.WARMUP, seed=seed)
            + common.droploss_opts())
        on_train = common.predict(ckpt, f"e2_pred_{name}", data["train"], data["train_images"])
        label_counts = common.match_counts(load_json(labels)["annotations"], data["train"])
        det_counts = common.match_counts(on_train, data["train"], min_score=THRESHOLD)
        missed = {a["id"] for a in load_json(data["train"])["annotations"]} - \
            label_counts["found_ids"]
        rec.update(settings, train_seconds=seconds, threshold=THRESHOLD,
                   precondition={
                       "labels_vs_train_gt": public(label_counts),
                       "detector_vs_train_gt": public(det_counts),
                       "label_missed_objects": len(missed),
                       "label_missed_found_by_detector": len(missed & det_counts["found_ids"]),
                       "scores_on_train": score_counts(on_train)},
                   test=common.evaluate_checkpoint(ckpt, f"e2_test_{name}", data["test"],
                                                   data["test_images"]))
    return labels


def round1_and_control(root, records, seed, iters, labels, data):
    round0_ckpt = os.path.join(run_dir(root, seed), "round0", "model_final.pth")
    opts = (common.schedule(iters, min(common.WARMUP, iters), seed=seed) + common.droploss_opts()
            + ["ZIP.SELF_TRAIN.SCORE_THRESHOLDS", f"[{THRESHOLD}]", "DATASETS.TEST", "()"])
    name = f"round1_s{seed}"
    if records.get(EXPERIMENT, name) is None:
        with records.run(EXPERIMENT, name, seed=seed, threshold=THRESHOLD,
                         round_iterations=iters, droploss=True, opts=opts) as rec:
            st = SelfTrainingRun(common.CONFIG, labels, data["train_images"],
                                 os.path.join(run_dir(root, seed), "selftrain"), rounds=1,
                                 weights=round0_ckpt, opts=opts)
            st.run()
            merged = load_json(st.labels_path(1))
            rec.update(
                merge={k: merged["info"]["self_training"][k]
                       for k in ("predictions_kept", "old_kept", "old_replaced")},
                round1_labels_vs_train_gt=public(common.match_counts(merged["annotations"],
                                                                     data["train"])),
                test=common.evaluate_checkpoint(st.checkpoint(1), f"e2_test_{name}",
                                                data["test"], data["test_images"]))
    name = f"control_s{seed}"
    if records.get(EXPERIMENT, name) is None:
        with records.run(EXPERIMENT, name, seed=seed, round_iterations=iters, droploss=True,
                         opts=opts) as rec:
            control = SelfTrainingRun(common.CONFIG, labels, data["train_images"],
                                      os.path.join(run_dir(root, seed), "control"), rounds=0,
                                      opts=opts + ["MODEL.WEIGHTS", round0_ckpt])
            control.run()
            rec["test"] = common.evaluate_checkpoint(control.checkpoint(0), f"e2_test_{name}",
                                                     data["test"], data["test_images"])


def run(root, records, seeds, iters=ROUND_ITERS, round0_iters=ROUND0_ITERS):
    data = common.make_data(root)
    labels = {seed: round0(root, records, seed, round0_iters, data) for seed in seeds}
    for seed in seeds:
        round1_and_control(root, records, seed, iters, labels[seed], data)


def main():
    parser = common.experiment_parser(__doc__, ROUND_ITERS, "round-1 (and control) iterations")
    parser.add_argument("--round0-iters", type=int, default=ROUND0_ITERS)
    args = parser.parse_args()
    run(*common.start(args), args.seeds, args.iters, args.round0_iters)


if __name__ == "__main__":
    main()
