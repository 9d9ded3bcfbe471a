#!/usr/bin/env python
"""Experiment 1: Mask R-CNN trained on discovery-made pseudo-labels vs on ground truth.

Sources (common.SOURCES): ground truth (the upper bound) and DISCOVERY-MADE labels (zip_d2's
k-means and discovery on constructed features, not CLIP, thinness rule; ``--sources`` also
takes the paper rule and SIMULATED labels). Every detector is the synthetic config
(configs/synthetic/mask_rcnn_R18_synthetic.yaml) from scratch (AdamW, LR 6e-4, batch 4,
common.DETECTOR_ITERS iterations); pseudo-label runs use DropLoss (CutLER's round 0).
Scored: box and mask AP on the 300 held-out test scenes, and each label file's own AP against
the 400 train images' ground truth. The discovery-made detectors
are experiment 3's pseudo-label starts.

    python tools/experiments/annotation_free.py      # records: docs/experiments/records/e1/
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import os

import common

EXPERIMENT = "e1"
SOURCES = ("disc_new", "gt")


def round0_dir(root, source, seed):
    return os.path.join(root, "runs", EXPERIMENT, f"{source}_s{seed}")


def round0_checkpoint(root, source, seed):
    """Experiment 1's detector for ``source`` and ``seed`` (experiment 3's start)."""
    return os.path.join(round0_dir(root, source, seed), "model_final.pth")


def label_record(root, records, source, seed, data):
    """The label file of ``source`` and ``seed`` (made once), its quality recorded once."""
    if records.get(EXPERIMENT, f"labels_{source}_s{seed}") is None:
        with records.run(EXPERIMENT, f"labels_{source}_s{seed}", source=source,
                         source_label=common.SOURCES[source], seed=seed) as rec:
            labels = common.pseudo_labels(root, source, seed, data["train"])
            rec["vs_train_gt"] = common.label_quality(labels, data["train"])
    return common.pseudo_labels(root, source, seed, data["train"])


def train_round0(root, records, source, seed, iters, data):
    """Train (once) and record experiment 1's detector of ``source`` and ``seed``."""
    name = f"{source}_s{seed}"
    if records.get(EXPERIMENT, name) is not None:
        return
    labels = data["train"] if source == "gt" else label_record(root, records, source, seed, data)
    opts = common.schedule(iters, min(common.WARMUP, iters), seed=seed)
    if source != "gt":
        opts += common.droploss_opts()
    with records.run(EXPERIMENT, name, source=source, source_label=common.SOURCES[source],
                     seed=seed, droploss=source != "gt") as rec:
        ckpt, seconds, settings = common.train(round0_dir(root, source, seed),
                                               f"e1_train_{name}", labels, data["train_images"],
                                               opts)
        rec.update(settings, train_seconds=seconds,
                   test=common.evaluate_checkpoint(ckpt, f"e1_test_{name}", data["test"],
                                                   data["test_images"]))


def run(root, records, seeds, sources, iters=common.DETECTOR_ITERS):
    data = common.make_data(root)
    for seed in seeds:  # labels first (seconds each): their quality is known before training
        for source in sources:
            if source != "gt":
                label_record(root, records, source, seed, data)
    for seed in seeds:
        for source in sources:
            train_round0(root, records, source, seed, iters, data)


def main():
    parser = common.experiment_parser(__doc__, common.DETECTOR_ITERS)
    parser.add_argument("--sources", nargs="+", default=list(SOURCES),
                        choices=[s for s in common.SOURCES if s != "sim_precise"])
    args = parser.parse_args()
    run(*common.start(args), args.seeds, args.sources, args.iters)


if __name__ == "__main__":
    main()
