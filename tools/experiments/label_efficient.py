#!/usr/bin/env python
"""Experiment (b): finetuning on 1 % and 10 % of labelled images, from a detector trained on
SIMULATED pseudo-labels vs from scratch.

The initial detector is experiment (a)'s round-0 detector (trained on simulated pseudo-labels of
another synthetic image set, with DropLoss). Subsets come from tools/make_label_subset.py's rule
(zip_d2.data.subsets, seed 1) over a fresh synthetic train set; every run uses the same short
schedule (the floor of scaled_schedule at this scale) and is scored on the synthetic val set.

    nice python tools/experiments/label_efficient.py --out work/exp_label_efficient \
        --init work/exp_self_training/run/round0/model_final.pth --iters 60
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import argparse
import json
import os

from common import evaluate_checkpoint, make_data, schedule_opts, train, write_results

from detectron2.utils.logger import setup_logger

from zip_d2.data.subsets import make_label_subset

CONFIG = "configs/synthetic/mask_rcnn_R18_synthetic.yaml"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="work/exp_label_efficient")
    parser.add_argument("--init", required=True, help="pseudo-label-trained checkpoint")
    parser.add_argument("--num-train", type=int, default=200)
    parser.add_argument("--num-val", type=int, default=30)
    parser.add_argument("--percents", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    setup_logger(name="zip_d2")
    out = os.path.abspath(args.out)
    # A different seed from experiment (a): finetuning images are not the pretraining images.
    data = make_data(os.path.join(out, "data"), args.num_train, args.num_val, seed=5)
    train_root, val_root = os.path.join(out, "data", "train"), os.path.join(out, "data", "val")
    with open(data["train"]) as f:
        full = json.load(f)
    results = {"init": os.path.abspath(args.init), "init_trained_on": "SIMULATED pseudo-labels",
               "scale": vars(args)}
    for percent in args.percents:
        subset = make_label_subset(full, percent, seed=1, source=data["train"])
        path = os.path.join(out, f"train_{percent:g}pct_seed1.json")
        with open(path, "w") as f:
            json.dump(subset, f)
        for start, weights in (("pseudo_init", os.path.abspath(args.init)), ("scratch", "")):
            tag = f"{percent:g}pct_{start}"
            ckpt = train(CONFIG, os.path.join(out, tag), f"exp_b_train_{tag}", path, train_root,
                         schedule_opts(args.iters, args.batch) + ["MODEL.WEIGHTS", weights])
            results[tag] = {"num_images": len(subset["images"]),
                            "num_annotations": len(subset["annotations"]),
                            **evaluate_checkpoint(CONFIG, ckpt, f"exp_b_val_{tag}", data["val"],
                                                  val_root)}
    results["init_without_finetuning"] = evaluate_checkpoint(
        CONFIG, os.path.abspath(args.init), "exp_b_val_init", data["val"], val_root)
    write_results(os.path.join(out, "results.json"), results)


if __name__ == "__main__":
    main()
