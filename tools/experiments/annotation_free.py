#!/usr/bin/env python
"""Experiment 1: Mask R-CNN trained on each pseudo-label source vs on ground truth.

Sources (common.SOURCES): ground truth (upper bound); SIMULATED labels (ground truth degraded by
zip_d2.data.simulate); DISCOVERY-MADE labels (zip_d2's k-means and discovery on constructed
features, not CLIP) with the paper's fragment rule and with the thinness rule. Every detector is
configs/synthetic/mask_rcnn_R18_synthetic.yaml from scratch (AdamW, LR 6e-4, batch 4, 600
iterations); pseudo-label runs use DropLoss (CutLER's round 0). Scored: box and mask AP on the
60 val images, and each label file's own AP against the 400 train images' ground truth.

    OMP_NUM_THREADS=1 nohup python tools/experiments/annotation_free.py --root work/exp15 \
        > work/exp15_e1.log 2>&1 &

Each finished run is stored under ROOT/results/e1/ and skipped on a rerun.
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import os

import common

EXPERIMENT = "e1"
ITERS, WARMUP = 600, 50


def round0_checkpoint(root, source, seed):
    """Experiment 1's detector for ``source`` and ``seed`` (the round 0 of experiments 2, 3)."""
    return os.path.join(root, "runs", EXPERIMENT, f"{source}_s{seed}", "model_final.pth")


def run(root, seeds, sources, iters=ITERS):
    data = common.make_data(root)
    # Labels first (seconds each): their quality is known before any training starts.
    for seed in seeds:
        for source in sources:
            if source == "gt" or common.finished(root, EXPERIMENT, f"labels_{source}_s{seed}"):
                continue
            labels = common.pseudo_labels(root, source, seed, data["train"])
            common.record(root, EXPERIMENT, f"labels_{source}_s{seed}", {
                "source": source, "source_label": common.SOURCES[source], "seed": seed,
                "labels": labels, "vs_train_gt": common.label_quality(labels, data["train"])})
    for seed in seeds:
        for source in sources:
            name = f"{source}_s{seed}"
            if common.finished(root, EXPERIMENT, name):
                continue
            labels = common.pseudo_labels(root, source, seed, data["train"])
            opts = common.schedule(iters, min(WARMUP, iters), seed=seed)
            if source != "gt":
                opts += common.droploss_opts()
            ckpt, seconds = common.train(os.path.dirname(round0_checkpoint(root, source, seed)),
                                         f"e1_train_{name}", labels, data["train_images"], opts)
            val = common.evaluate_checkpoint(ckpt, f"e1_val_{name}", data["val"],
                                             data["val_images"])
            common.record(root, EXPERIMENT, name, {
                "source": source, "source_label": common.SOURCES[source], "seed": seed,
                "labels": labels, "droploss": source != "gt", "iterations": iters,
                "train_seconds": seconds, "checkpoint": ckpt, "val": val})


def main():
    parser = common.experiment_parser(__doc__, ITERS)
    parser.add_argument("--sources", nargs="+", default=list(common.SOURCES),
                        choices=list(common.SOURCES))
    args = parser.parse_args()
    run(common.start(args), args.seeds, args.sources, args.iters)


if __name__ == "__main__":
    main()
