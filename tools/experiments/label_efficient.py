#!/usr/bin/env python
"""Experiment 3: finetuning on 5 % of the ground truth from a pseudo-label start, vs a start
pretrained on the same labels shuffled across images, vs scratch with the same total iterations.

Subset: zip_d2.data.subsets (tools/make_label_subset.py's rule: seeded random images with all
their annotations) of the 400 train images; the subset seed is the run's seed. Arms, each ending
on the same subset and scored on the 300 held-out test scenes:

  pseudo    experiment 1's discovery-made detector (common.DETECTOR_ITERS iterations, DropLoss)
            + FINETUNE_ITERS iterations on the subset
  shuffled  the same training on the same labels with each image's annotations moved to
            another image (a seeded permutation: same labels and compute, no correspondence to
            the pixels) + FINETUNE_ITERS iterations on the subset
  scratch   common.DETECTOR_ITERS + FINETUNE_ITERS iterations on the subset from scratch

    python tools/experiments/label_efficient.py    # records: docs/experiments/records/e3/
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import os
import sys

import annotation_free
import common
import numpy as np

from zip_d2.data.coco_json import load_json, write_json_atomic
from zip_d2.data.subsets import make_label_subset

EXPERIMENT = "e3"
SOURCE = "disc_new"
PERCENT = 5.0
FINETUNE_ITERS, FINETUNE_WARMUP = 100, 20
ARMS = ("pseudo", "shuffled", "scratch")


def shuffled_labels(labels_json, out_json, seed):
    """``labels_json`` with image i's annotations moved to image perm(i) (a seeded permutation
    with no fixed point; all scenes have one size), written once."""
    if os.path.isfile(out_json):
        return out_json
    data = load_json(labels_json)
    ids = [img["id"] for img in data["images"]]
    rng = np.random.default_rng([seed, 23])
    while True:
        perm = rng.permutation(len(ids))
        if not (perm == np.arange(len(ids))).any():
            break
    move = {ids[i]: ids[j] for i, j in enumerate(perm)}
    sizes = {(img["height"], img["width"]) for img in data["images"]}
    if len(sizes) != 1:
        raise ValueError(f"shuffling labels needs images of one size, found {sorted(sizes)}")
    data["annotations"] = [dict(a, image_id=move[a["image_id"]]) for a in data["annotations"]]
    data["info"] = dict(data.get("info", {}), shuffled_across_images={
        "seed": seed, "source": os.path.abspath(labels_json),
        "note": "each image's annotations moved to another image: no label matches its pixels"})
    write_json_atomic(data, out_json)
    return out_json


def shuffled_start(root, records, seed, data, iters):
    """The shuffled-label detector (trained and recorded once); its checkpoint."""
    name = f"shuffled_start_s{seed}"
    out = os.path.join(root, "runs", EXPERIMENT, name)
    if records.get(EXPERIMENT, name) is None:
        with records.run(EXPERIMENT, name, source=SOURCE, seed=seed, droploss=True) as rec:
            labels = shuffled_labels(
                common.pseudo_labels(root, SOURCE, seed, data["train"]),
                os.path.join(root, "labels", f"{SOURCE}_shuffled_s{seed}.json"), seed)
            ckpt, seconds, settings = common.train(
                out, f"e3_train_{name}", labels, data["train_images"],
                common.schedule(iters, common.WARMUP, seed=seed) + common.droploss_opts())
            rec.update(settings, train_seconds=seconds,
                       labels_vs_train_gt=common.label_quality(labels, data["train"]),
                       test=common.evaluate_checkpoint(ckpt, f"e3_test_{name}", data["test"],
                                                       data["test_images"]))
    return os.path.join(out, "model_final.pth")


def run(root, records, seeds, percent=PERCENT, iters=FINETUNE_ITERS,
        start_iters=common.DETECTOR_ITERS):
    data = common.make_data(root)
    full = load_json(data["train"])
    for seed in seeds:
        if records.get(annotation_free.EXPERIMENT, f"{SOURCE}_s{seed}") is None:
            sys.exit(f"label_efficient: experiment 1's run {SOURCE}_s{seed} is not finished; "
                     "run tools/experiments/annotation_free.py first")
        starts = {"pseudo": annotation_free.round0_checkpoint(root, SOURCE, seed),
                  "shuffled": shuffled_start(root, records, seed, data, start_iters),
                  "scratch": ""}
        subset_json = os.path.join(root, "subsets", f"train_{percent:g}pct_s{seed}.json")
        if not os.path.isfile(subset_json):
            write_json_atomic(make_label_subset(full, percent, seed, source=data["train"]),
                              subset_json)
        subset = load_json(subset_json)
        for arm in ARMS:
            name = f"{arm}_{percent:g}pct_s{seed}"
            if records.get(EXPERIMENT, name) is not None:
                continue
            arm_iters = iters + (start_iters if arm == "scratch" else 0)
            warmup = common.WARMUP if arm == "scratch" else FINETUNE_WARMUP
            with records.run(EXPERIMENT, name, arm=arm, percent=percent, seed=seed,
                             start_weights=starts[arm] or "none (from scratch)",
                             num_images=len(subset["images"]),
                             num_annotations=len(subset["annotations"])) as rec:
                ckpt, seconds, settings = common.train(
                    os.path.join(root, "runs", EXPERIMENT, name), f"e3_train_{name}",
                    subset_json, data["train_images"],
                    common.schedule(arm_iters, warmup, seed=seed) + ["MODEL.WEIGHTS",
                                                                     starts[arm]])
                rec.update(settings, train_seconds=seconds,
                           test=common.evaluate_checkpoint(ckpt, f"e3_test_{name}",
                                                           data["test"], data["test_images"]))


def main():
    parser = common.experiment_parser(__doc__, FINETUNE_ITERS, "finetuning iterations")
    parser.add_argument("--percent", type=float, default=PERCENT)
    parser.add_argument("--start-iters", type=int, default=common.DETECTOR_ITERS,
                        help="iterations of the shuffled-label start (as experiment 1's)")
    args = parser.parse_args()
    run(*common.start(args), args.seeds, args.percent, args.iters, args.start_iters)


if __name__ == "__main__":
    main()
