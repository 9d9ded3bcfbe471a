"""What the experiment scripts in this folder share: data, pseudo-label sources, training,
evaluation, and one result file per finished run (a rerun skips it).

The scripts run as ``python tools/experiments/<name>.py`` from the repository root; Python puts
this folder on the import path, so ``import common`` finds this file. Every script works under
one ``--root`` (default ``work/exp15``) so runs are shared: experiment 1's detectors are the
starting points of experiments 2 and 3.

Layout of ``--root``::

    data/                 400 train / 60 val synthetic scenes, 4 shapes, seed 0 (the
                          training benchmark's set); data6/ the same with 6 shapes (exp. 4)
    labels/<source>_s<seed>.json        pseudo-labels of data/train (simulated or discovery-made)
    runs/<experiment>/<run>/            detectron2 output of one training
    results/<experiment>/<run>.json     its evaluation; present = finished, never redone
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import argparse
import contextlib
import json
import os
import time

import numpy as np
import torch

from detectron2.utils.logger import setup_logger

import zip_d2.modeling  # noqa: F401  (registers zip_d2's heads)
from zip_d2.config import setup_cfg
from zip_d2.data.coco_json import load_json, write_json_atomic  # noqa: F401  (load_json: report.py)
from zip_d2.data.simulate import SimulationParams, write_simulated_pseudo_labels
from zip_d2.data.synthetic import SceneParams, make_synthetic_dataset
from zip_d2.engine.setup import inference_cfg, preflight
from zip_d2.engine.train import droploss_opts as engine_droploss_opts
from zip_d2.engine.train import final_checkpoint, is_finished, train_detector
from zip_d2.evaluation.coco_eval import coco_from_dict, coco_stats
from zip_d2.pseudo.discovery_labels import (
    DISCOVERY_LABEL,
    DiscoveryLabelParams,
    write_discovery_pseudo_labels,
)
from zip_d2.selftrain import predict_dataset

CONFIG = "configs/synthetic/mask_rcnn_R18_synthetic.yaml"
SEEDS = (0, 1)
NUM_TRAIN, NUM_VAL = 400, 60

# Pseudo-label sources, as every table and figure names them.
SOURCES = {
    "gt": "ground truth (upper bound)",
    "simulated": "SIMULATED (ground truth degraded by zip_d2.data.simulate)",
    "disc_paper": f"{DISCOVERY_LABEL}, paper rule",
    "disc_new": f"{DISCOVERY_LABEL}, thinness rule (radius >= 2)",
}
# The same, short enough for a figure's axis.
SHORT_NAMES = {
    "gt": "ground truth",
    "simulated": "SIMULATED",
    "disc_paper": "discovery-made\n(constructed features)\npaper rule",
    "disc_new": "discovery-made\n(constructed features)\nthinness rule",
}
THINNESS_RADIUS = 2.0  # the zip_plus preset's DISCOVERY.MIN_INSCRIBED_RADIUS


def experiment_parser(doc, iters, iters_what="training iterations"):
    """The flags every experiment script takes: --root, --seeds, --iters, --threads."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--root", default="work/exp15")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--iters", type=int, default=iters,
                        help=f"{iters_what} (change only with a fresh --root)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on the shared 2-core machine, one thread "
                             "trained at 3.0 s/iteration while a two-thread run beside it took "
                             "6-11 s, at load average 7; use 2 on an idle machine)")
    return parser


def start(args):
    """Logs to the console, torch on ``args.threads`` threads (one training at a time);
    returns the absolute --root."""
    setup_logger(name="zip_d2")
    setup_logger(name="detectron2")
    torch.set_num_threads(args.threads)
    return os.path.abspath(args.root)


@contextlib.contextmanager
def one_thread():
    """torch on one thread inside the block: k-means on an 80x64 grid is too small to share,
    and two threads on a loaded machine spent minutes per label file waiting for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_data(root, num_categories=4):
    """{"train", "val", "train_images", "val_images"}: the synthetic split, made once.

    4 shapes: ``root/data`` (the set of tools/bench/benchmark_training.py: 400 / 60 images, seed 0).
    6 shapes: ``root/data6`` (same sizes and seed, star and cross added)."""
    folder = os.path.join(root, "data" if num_categories == 4 else f"data{num_categories}")
    paths = {"train": os.path.join(folder, "train.json"), "val": os.path.join(folder, "val.json")}
    if not os.path.isfile(paths["val"]):
        make_synthetic_dataset(folder, num_train=NUM_TRAIN, num_val=NUM_VAL, seed=0,
                               params=SceneParams(num_categories=num_categories))
    return {**paths, "train_images": os.path.join(folder, "train"),
            "val_images": os.path.join(folder, "val")}


def pseudo_labels(root, source, seed, gt_json, tag=""):
    """Path of ``source``'s pseudo-labels of ``gt_json`` with ``seed`` (written once).

    simulated: zip_d2.data.simulate defaults; disc_paper / disc_new: zip_d2.pseudo.
    discovery_labels with the paper's rule / the thinness rule; gt: ``gt_json`` itself."""
    if source == "gt":
        return gt_json
    path = os.path.join(root, "labels", f"{source}{tag}_s{seed}.json")
    if os.path.isfile(path):
        return path
    if source == "simulated":
        write_simulated_pseudo_labels(gt_json, path, SimulationParams(), seed=seed)
    elif source in ("disc_paper", "disc_new"):
        radius = THINNESS_RADIUS if source == "disc_new" else 0.0
        with one_thread():
            write_discovery_pseudo_labels(gt_json, path, DiscoveryLabelParams(
                min_inscribed_radius=radius), seed=seed)
    else:
        raise ValueError(f"unknown pseudo-label source {source!r}; one of {sorted(SOURCES)}")
    return path


def coco_ap(gt_json, results, iou_type="segm"):
    """{"AP", "AP50"} (in %, one decimal) of COCO results against a COCO ground-truth file."""
    stats = coco_stats(coco_from_dict(load_json(gt_json)), results, iou_type)
    return {"AP": round(100 * stats["AP"], 1), "AP50": round(100 * stats["AP50"], 1)}


def labels_as_results(labels_json):
    """A label file's annotations as COCO results (score = the label's score, 1 if none)."""
    return [{"image_id": a["image_id"], "category_id": a["category_id"],
             "segmentation": a["segmentation"], "bbox": a["bbox"],
             "score": a.get("score", 1.0)} for a in load_json(labels_json)["annotations"]]


def label_quality(labels_json, gt_json):
    """Box and mask AP of a label file against the ground truth of the same images."""
    results = labels_as_results(labels_json)
    return {"box": coco_ap(gt_json, results, "bbox"), "mask": coco_ap(gt_json, results, "segm"),
            "num_labels": len(results)}


def evaluate_checkpoint(weights, name, gt_json, image_root, config=CONFIG, opts=()):
    """Box and mask AP/AP50 (class-aware) of a checkpoint on a ground-truth set."""
    cfg = inference_cfg(setup_cfg(config, list(opts), [[name, gt_json, image_root]]),
                        test=[name])
    preflight(cfg, train=False)
    results = predict_dataset(cfg, weights, name)
    return {"box": coco_ap(gt_json, results, "bbox"), "mask": coco_ap(gt_json, results, "segm")}


def droploss_opts(config=CONFIG):
    """KEY VALUE overrides that train ``config``'s RoI heads with DropLoss (CutLER's round 0)."""
    return engine_droploss_opts(setup_cfg(config, []))


def train(out_dir, train_name, train_json, image_root, opts=(), config=CONFIG):
    """Train once, seeded by the config's SEED; ``(checkpoint, whole seconds)``.

    Skipped when the training in ``out_dir`` finished (:func:`zip_d2.engine.train.is_finished`);
    an interrupted training resumes from its last checkpoint. Seconds: the time of all its
    iterations, from metrics.json (a resumed run's earlier sessions included), or None if there
    is none."""
    final = final_checkpoint(out_dir)
    metrics = os.path.join(out_dir, "metrics.json")
    if is_finished(out_dir):
        return final, round(training_seconds(metrics)) if os.path.isfile(metrics) else None
    cfg = setup_cfg(config, list(opts) + ["DATASETS.TRAIN", f"('{train_name}',)",
                                          "DATASETS.TEST", "()", "OUTPUT_DIR", out_dir],
                    [[train_name, train_json, image_root]])
    preflight(cfg, train=True)
    train_detector(cfg, resume=True, seed=cfg.SEED)
    return final, round(training_seconds(metrics))


def training_seconds(metrics_file):
    """Seconds spent in training iterations, from detectron2's metrics.json: each record's
    per-iteration ``time`` times the iterations since the previous record. A run resumed after
    an interruption counts each iteration once (the later record of an iteration wins);
    evaluation, data loading before the first iteration and model building are not counted."""
    per_iteration = {}
    with open(metrics_file) as f:
        for line in f:
            record = json.loads(line)
            if "time" in record and "iteration" in record:
                per_iteration[record["iteration"]] = record["time"]
    total, previous = 0.0, -1
    for iteration in sorted(per_iteration):
        total += per_iteration[iteration] * (iteration - previous)
        previous = iteration
    return total


def schedule(iters, warmup, lr=6e-4, batch=4, seed=0):
    """AdamW at ``lr`` (the synthetic config's optimiser), LR x0.1 at 80 %, ``warmup`` iters."""
    return ["SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", f"({int(iters * 0.8)},)",
            "SOLVER.WARMUP_ITERS", str(warmup), "SOLVER.BASE_LR", str(lr),
            "SOLVER.IMS_PER_BATCH", str(batch), "SOLVER.CHECKPOINT_PERIOD", "100",
            "SEED", str(seed)]


def result_path(root, experiment, run):
    return os.path.join(root, "results", experiment, f"{run}.json")


def finished(root, experiment, run):
    """The stored result of a finished run, or None."""
    path = result_path(root, experiment, run)
    return load_json(path) if os.path.isfile(path) else None


def record(root, experiment, run, result):
    """Store a finished run's result (atomically) with the time and the machine load."""
    result = dict(result, finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                  load_average=[round(x, 2) for x in os.getloadavg()])
    write_json_atomic(result, result_path(root, experiment, run), indent=1)
    print(f"[{experiment}/{run}] " + json.dumps(result), flush=True)
    return result


def mean_spread(values):
    """(mean, half range) of a list of numbers; the spread of one value is 0."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), float((values.max() - values.min()) / 2)
