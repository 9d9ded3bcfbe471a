#!/usr/bin/env python
"""Experiment (a): does one self-training round improve on round 0? (SIMULATED pseudo-labels)

Round 0 trains on simulated pseudo-labels (ground truth degraded by zip_d2.data.simulate) with
DropLoss; round 1 trains from round 0 on the CutLER-merged labels. A control continues round 0
on its own labels for the same number of iterations, so "round 1 beats round 0" is not just
"more iterations". Everything is scored against the synthetic ground truth:
detector box/mask AP on val, and the quality of the round-0 and round-1 *labels* on train.

    nice python tools/experiments/self_training.py --out work/exp_self_training --iters 150 \
        --round-iters 80 --low-threshold 0.3
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import argparse
import os
import shutil

from common import (
    coco_ap,
    evaluate_checkpoint,
    labels_as_results,
    make_data,
    schedule_opts,
    write_results,
)

from detectron2.utils.logger import setup_logger

from zip_d2.data.simulate import SimulationParams, write_simulated_pseudo_labels
from zip_d2.selftrain import SelfTrainingRun

CONFIG = "configs/self_train/mask_rcnn_R18_synthetic.yaml"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="work/exp_self_training")
    parser.add_argument("--num-train", type=int, default=80)
    parser.add_argument("--num-val", type=int, default=30)
    parser.add_argument("--iters", type=int, default=150, help="round-0 iterations (from scratch)")
    parser.add_argument("--round-iters", type=int, default=80,
                        help="round-1 iterations (from round 0), also the control's")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--low-threshold", type=float, default=None,
                        help="also run round 1 with this score threshold instead of 0.7")
    args = parser.parse_args()
    setup_logger(name="zip_d2")
    data = make_data(os.path.join(args.out, "data"), args.num_train, args.num_val)
    train_root, val_root = (os.path.join(args.out, "data", s) for s in ("train", "val"))
    params = SimulationParams()
    sim = os.path.join(args.out, "simulated_pseudo_train.json")
    write_simulated_pseudo_labels(data["train"], sim, params, seed=1)

    run_dir = os.path.join(args.out, "run")
    # Round 0: from scratch on the simulated labels, with DropLoss.
    round0 = SelfTrainingRun(CONFIG, sim, train_root, run_dir, rounds=0, droploss=True,
                             opts=schedule_opts(args.iters, args.batch))
    round0.run()
    # Round 1 (same run directory, round 0 given as weights): a shorter schedule from round 0.
    opts = schedule_opts(args.round_iters, args.batch)
    run = SelfTrainingRun(CONFIG, sim, train_root, run_dir, rounds=1,
                          weights=round0.checkpoint(0), opts=opts)
    summary = run.run()
    # Control: round 0 continued on the round-0 labels for the same iterations as round 1.
    control = SelfTrainingRun(CONFIG, sim, train_root, os.path.join(args.out, "control"),
                              rounds=0, opts=opts + ["MODEL.WEIGHTS", round0.checkpoint(0)])
    control.run()
    arms = [("round0", run.checkpoint(0), None), ("round1", run.checkpoint(1), run.labels_path(1)),
            ("round0_continued_control", control.checkpoint(0), None)]
    if args.low_threshold is not None:
        # Extra arm, outside the recipe: a threshold inside this short-trained detector's score
        # range. Same checkpoint and images as round 1, so its predictions are reused.
        low_dir = os.path.join(args.out, f"run_t{args.low_threshold:g}")
        os.makedirs(os.path.join(low_dir, "round1"), exist_ok=True)
        preds = os.path.join(low_dir, "round1", "predictions.json")
        if not os.path.isfile(preds):
            shutil.copyfile(os.path.join(run.round_dir(1), "predictions.json"), preds)
        low = SelfTrainingRun(CONFIG, sim, train_root, low_dir, rounds=1,
                              weights=round0.checkpoint(0),
                              opts=opts + ["ZIP.SELF_TRAIN.SCORE_THRESHOLDS",
                                           f"[{args.low_threshold}]"])
        low_summary = low.run()
        tag = f"round1_t{args.low_threshold:g}"
        arms.append((tag, low.checkpoint(1), low.labels_path(1)))

    results = {"simulated": True, "simulation_params": vars(params), "scale": vars(args),
               "round1_label_stats": summary["round_info"]["1"]}
    if args.low_threshold is not None:
        results[f"round1_t{args.low_threshold:g}_label_stats"] = low_summary["round_info"]["1"]
    results["round0_labels_vs_train_gt"] = coco_ap(data["train"], labels_as_results(sim), "segm")
    for tag, weights, labels in arms:
        results[f"{tag}_val"] = evaluate_checkpoint(CONFIG, weights, f"exp_a_val_{tag}",
                                                    data["val"], val_root)
        if labels:
            # Label quality against the train ground truth (labels scored by their own scores).
            results[f"{tag}_labels_vs_train_gt"] = coco_ap(data["train"],
                                                           labels_as_results(labels), "segm")
    write_results(os.path.join(args.out, "results.json"), results)


if __name__ == "__main__":
    main()
