"""What the experiment scripts in this folder share: data, pseudo-label sources, training,
evaluation, and one result file per finished run (a rerun skips it).

The scripts run as ``python tools/experiments/<name>.py`` from the repository root; Python puts
this folder on the import path, so ``import common`` finds this file. Every script works under
one ``--root`` (default ``work/exp23``, git-ignored: data, labels, checkpoints) so runs are
shared: experiment 1's detectors are the starting points of experiment 3. What a run found goes
to ``--records`` (default ``docs/experiments/records``, tracked): one small JSON per finished
run, which is what tools/experiments/report.py reads and what makes a rerun skip the run.

Layout of ``--root``::

    data/                 400 train / 60 val synthetic scenes, 4 shapes, seed 0 (the
                          training recipe was tuned on this val), and test/: 300 held-out
                          scenes (split "test", same seed, never used for tuning);
                          data6/ the same with 6 shapes (experiment 4)
    labels/<source>_s<seed>.json        pseudo-labels of data/train (simulated or discovery-made)
    runs/<experiment>/<run>/            detectron2 output of one training

A record holds the run's settings (seed, iterations, config file, overrides and the hash of the
whole resolved config), where it ran (git commit and whether the tree had uncommitted changes,
torch threads, load average at start and end), what it cost (wall and CPU seconds, training
seconds from detectron2's metrics) and every metric it measured.
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import time

import numpy as np
import pycocotools.mask as mask_util
import torch

from detectron2.utils.logger import setup_logger

import zip_d2.modeling  # noqa: F401  (registers zip_d2's heads)
from zip_d2.config import setup_cfg
from zip_d2.data.coco_json import load_json, write_json_atomic  # noqa: F401  (load_json: report.py)
from zip_d2.data.simulate import SimulationParams, write_simulated_pseudo_labels
from zip_d2.data.synthetic import SceneParams, make_synthetic_dataset, make_synthetic_split
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
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECORDS = os.path.join("docs", "experiments", "records")
SEEDS = (0, 1, 2, 3)
NUM_TRAIN, NUM_VAL, NUM_TEST = 400, 60, 300
# Iterations of every detector trained from scratch on a full label set (round 0): the
# synthetic recipe's 600 cut to 500 to fit 4 seeds of every arm into the compute budget.
DETECTOR_ITERS, WARMUP = 500, 50

# Pseudo-label sources, as every table and figure names them.
SOURCES = {
    "gt": "ground truth (upper bound)",
    "simulated": "SIMULATED (ground truth degraded by zip_d2.data.simulate)",
    "disc_paper": f"{DISCOVERY_LABEL}, paper rule",
    "disc_new": f"{DISCOVERY_LABEL}, thinness rule (radius >= 2)",
}
THINNESS_RADIUS = 2.0  # the zip_plus preset's DISCOVERY.MIN_INSCRIBED_RADIUS
# Experiment 2's labeller: every label right (no merges, rims, blobs or wrong classes), half the
# objects missing: high precision, low recall, the regime where self-training can add objects.
PRECISE = SimulationParams(merge_prob=0.0, miss_prob=0.5, boundary_prob=0.0,
                           spurious_per_image=0.0, flip_prob=0.0)
SOURCES["sim_precise"] = "SIMULATED, precise: no wrong labels, half the objects missing"


def experiment_parser(doc, iters, iters_what="training iterations"):
    """The flags every experiment script takes: --root, --records, --seeds, --iters, --threads."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--root", default="work/exp23",
                        help="data, labels and checkpoints (git-ignored)")
    parser.add_argument("--records", default=RECORDS,
                        help="one JSON record per finished run (tracked; read by report.py)")
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
    returns the absolute --root and the :class:`Records` of --records."""
    setup_logger(name="zip_d2")
    setup_logger(name="detectron2")
    torch.set_num_threads(args.threads)
    return os.path.abspath(args.root), Records(args.records, args.threads)


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
    """{"train", "val", "test"} JSON paths and their "<split>_images" folders, made once.

    4 shapes: ``root/data`` (the set of tools/bench/benchmark_training.py: 400 / 60 images, seed 0,
    on whose val the recipe was tuned) plus a held-out split "test" of 300 scenes (the split name
    is mixed into the seed, so its scenes are new). 6 shapes: ``root/data6`` (same sizes and seed,
    star and cross added)."""
    folder = os.path.join(root, "data" if num_categories == 4 else f"data{num_categories}")
    params = SceneParams(num_categories=num_categories)
    paths = {split: os.path.join(folder, f"{split}.json") for split in ("train", "val", "test")}
    if not os.path.isfile(paths["val"]):
        make_synthetic_dataset(folder, num_train=NUM_TRAIN, num_val=NUM_VAL, seed=0, params=params)
    if not os.path.isfile(paths["test"]):
        make_synthetic_split(folder, "test", NUM_TEST, seed=0, params=params)
    return {**paths, **{f"{split}_images": os.path.join(folder, split)
                        for split in ("train", "val", "test")}}


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
    elif source == "sim_precise":
        write_simulated_pseudo_labels(gt_json, path, PRECISE, seed=seed)
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


def predict(weights, name, gt_json, image_root, config=CONFIG, opts=()):
    """COCO results of a checkpoint on the images of a COCO file."""
    cfg = inference_cfg(setup_cfg(config, list(opts), [[name, gt_json, image_root]]),
                        test=[name])
    preflight(cfg, train=False)
    return predict_dataset(cfg, weights, name)


def evaluate_checkpoint(weights, name, gt_json, image_root, config=CONFIG, opts=()):
    """Box and mask AP/AP50 (class-aware) of a checkpoint on a ground-truth set."""
    results = predict(weights, name, gt_json, image_root, config, opts)
    return {"box": coco_ap(gt_json, results, "bbox"), "mask": coco_ap(gt_json, results, "segm")}


def match_counts(found, gt_json, min_score=0.0, iou=0.5):
    """Recall and precision of instances (COCO annotations or results) against ground truth.

    A ground-truth object is found when an instance of its class with score >= ``min_score``
    covers it with mask IoU >= ``iou``; an instance is right when it so covers some object.
    Returns {"objects", "found", "recall", "instances", "right", "precision"} and the set of
    found object ids under "found_ids" (not for records)."""
    gt = load_json(gt_json)
    by_image = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], ([], []))[0].append(a)
    kept = [f for f in found if f.get("score", 1.0) >= min_score]
    for f in kept:
        by_image.setdefault(f["image_id"], ([], []))[1].append(f)
    found_ids, right = set(), 0
    for objects, instances in by_image.values():
        if not objects or not instances:
            continue
        ious = mask_util.iou([i["segmentation"] for i in instances],
                             [o["segmentation"] for o in objects], [0] * len(objects))
        same = (np.array([i["category_id"] for i in instances])[:, None]
                == np.array([o["category_id"] for o in objects])[None, :])
        hit = (np.asarray(ious) >= iou) & same
        right += int(hit.any(axis=1).sum())
        found_ids |= {o["id"] for o, h in zip(objects, hit.any(axis=0)) if h}
    n = len(gt["annotations"])
    return {"objects": n, "found": len(found_ids), "recall": round(len(found_ids) / max(n, 1), 3),
            "instances": len(kept), "right": right,
            "precision": round(right / max(len(kept), 1), 3), "found_ids": found_ids}


def droploss_opts(config=CONFIG):
    """KEY VALUE overrides that train ``config``'s RoI heads with DropLoss (CutLER's round 0)."""
    return engine_droploss_opts(setup_cfg(config, []))


def config_hash(cfg):
    """12 hex digits of SHA-256 over the resolved config; OUTPUT_DIR and the registered datasets'
    paths (machine-specific) are left out."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = ""
    cfg.ZIP.DATASETS.REGISTER = [[name] for name, *_ in cfg.ZIP.DATASETS.REGISTER]
    return hashlib.sha256(cfg.dump().encode()).hexdigest()[:12]


def train(out_dir, train_name, train_json, image_root, opts=(), config=CONFIG):
    """Train once, seeded by the config's SEED; ``(checkpoint, whole seconds, settings)``.

    Skipped when the training in ``out_dir`` finished (:func:`zip_d2.engine.train.is_finished`);
    an interrupted training resumes from its last checkpoint. Seconds: the time of all its
    iterations, from metrics.json (a resumed run's earlier sessions included), or None if there
    is none. Settings: the config file, the overrides, the resolved config's hash, MAX_ITER
    and the label file's name."""
    final = final_checkpoint(out_dir)
    metrics = os.path.join(out_dir, "metrics.json")
    opts = list(opts) + ["DATASETS.TRAIN", f"('{train_name}',)", "DATASETS.TEST", "()"]
    cfg = setup_cfg(config, opts + ["OUTPUT_DIR", out_dir], [[train_name, train_json, image_root]])
    settings = {"config": config, "opts": opts, "config_hash": config_hash(cfg),
                "iterations": cfg.SOLVER.MAX_ITER, "train_labels": os.path.basename(train_json)}
    if not is_finished(out_dir):
        preflight(cfg, train=True)
        train_detector(cfg, resume=True, seed=cfg.SEED)
    seconds = round(training_seconds(metrics)) if os.path.isfile(metrics) else None
    return final, seconds, settings


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


def git_state(repo=REPO):
    """{"commit": HEAD, "dirty": whether tracked files differ from it}; the records folder is
    left out of "dirty" (records are written while the experiments run)."""
    def git(*cmd):
        return subprocess.run(["git", "-C", repo, *cmd], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": any(RECORDS not in line for line in changed)}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown (not a git checkout)", "dirty": None}


class Records:
    """The tracked folder of run records: ``<folder>/<experiment>/<run>.json``."""

    def __init__(self, folder, threads=None):
        self.folder, self.threads = os.path.abspath(folder), threads
        self.git = git_state()

    def path(self, experiment, run):
        return os.path.join(self.folder, experiment, f"{run}.json")

    def get(self, experiment, run):
        """The record of a finished run, or None."""
        path = self.path(experiment, run)
        return load_json(path) if os.path.isfile(path) else None

    @contextlib.contextmanager
    def run(self, experiment, run, **fields):
        """Measure the block and, when it ends without an exception, write its record: the
        dict the block receives (``fields`` first), filled by the block with its results."""
        record = {"experiment": experiment, "run": run, **fields}
        wall, cpu, load = time.time(), os.times(), os.getloadavg()
        yield record
        end = os.times()
        record.update(
            **self.git, torch_threads=self.threads or torch.get_num_threads(),
            omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
            load_average_start=[round(x, 2) for x in load],
            load_average_end=[round(x, 2) for x in os.getloadavg()],
            wall_seconds=round(time.time() - wall, 1),
            cpu_seconds=round(sum(end[:4]) - sum(cpu[:4]), 1),
            finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
        write_json_atomic(record, self.path(experiment, run), indent=1)
        print(f"[{experiment}/{run}] " + json.dumps(record), flush=True)
