"""Helpers shared by the experiment scripts in this folder (data, evaluation, result files).

The scripts run as ``python tools/experiments/<name>.py`` from the repository root; Python puts
this folder on the import path, so ``import common`` finds this file.
"""
import json
import os
import time

import numpy as np

import zip_d2.modeling  # noqa: F401  (registers zip_d2's heads)
from zip_d2.config import setup_cfg
from zip_d2.data.coco_json import load_json
from zip_d2.data.synthetic import SceneParams, make_synthetic_dataset
from zip_d2.engine.setup import preflight
from zip_d2.evaluation.coco_eval import coco_from_dict, coco_stats
from zip_d2.selftrain import predict_dataset


def make_data(root, num_train, num_val, num_categories=4, seed=0):
    """Synthetic train/val at the CPU training scale of configs/synthetic (160x128 scenes)."""
    if os.path.isfile(os.path.join(root, "val.json")):
        return {"train": os.path.join(root, "train.json"), "val": os.path.join(root, "val.json")}
    return make_synthetic_dataset(root, num_train=num_train, num_val=num_val, seed=seed,
                                  params=SceneParams(num_categories=num_categories))


def coco_ap(gt_json, results, iou_type="segm", cat_ids=None):
    """{"AP", "AP50"} (in %) of COCO results against a COCO ground-truth file."""
    stats = coco_stats(coco_from_dict(load_json(gt_json)), results, iou_type, cat_ids=cat_ids)
    return {"AP": round(100 * stats["AP"], 1), "AP50": round(100 * stats["AP50"], 1)}


def labels_as_results(labels_json):
    """A pseudo-label file's annotations as COCO results (score = the label's score)."""
    with open(labels_json) as f:
        data = json.load(f)
    return [{"image_id": a["image_id"], "category_id": a["category_id"],
             "segmentation": a["segmentation"], "bbox": a["bbox"],
             "score": a.get("score", 1.0)} for a in data["annotations"]]


def evaluate_checkpoint(config_file, weights, name, gt_json, image_root, opts=()):
    """Box and mask AP/AP50 of a checkpoint on a ground-truth set (class-aware)."""
    cfg = setup_cfg(config_file, list(opts) + ["DATASETS.TEST", f"('{name}',)"],
                    [[name, gt_json, image_root]])
    preflight(cfg, train=False)
    results = predict_dataset(cfg, weights, name)
    return {"box": coco_ap(gt_json, results, "bbox"), "mask": coco_ap(gt_json, results, "segm")}


def write_results(path, results):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    results = dict(results, finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))


def mean(values):
    return float(np.mean(values)) if len(values) else 0.0


def train(config_file, out_dir, train_name, train_json, image_root, opts=()):
    """Train a detector once (skipped when ``out_dir/model_final.pth`` exists); return it."""
    from zip_d2.engine import Trainer

    final = os.path.join(out_dir, "model_final.pth")
    if os.path.isfile(final):
        return final
    cfg = setup_cfg(config_file, list(opts) + ["DATASETS.TRAIN", f"('{train_name}',)",
                                               "DATASETS.TEST", "()", "OUTPUT_DIR", out_dir],
                    [[train_name, train_json, image_root]])
    preflight(cfg, train=True)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    trainer.train()
    return final


def schedule_opts(iters, batch, lr=0.01):
    """Short CPU schedule: ``iters`` iterations, LR drop at 80 %, 20 warm-up iterations.

    SGD, as when docs/EXPERIMENTS_RESULTS.md was measured (the synthetic config now defaults to
    AdamW at LR 6e-4; pass ``"SOLVER.OPTIMIZER", "AdamW"`` and a matching LR after these to
    use it)."""
    return ["SOLVER.OPTIMIZER", "SGD", "SOLVER.MAX_ITER", str(iters),
            "SOLVER.IMS_PER_BATCH", str(batch),
            "SOLVER.STEPS", f"({int(iters * 0.8)},)", "SOLVER.WARMUP_ITERS", str(min(20, iters)),
            "SOLVER.CHECKPOINT_PERIOD", "50", "SOLVER.BASE_LR", str(lr)]
