"""Open-vocabulary COCO evaluation from tools/train_net.py: base / novel / all AP50 printed as a
table and written to metrics.json and W&B, at the end of training and with --eval-only, and
--eval-only needs no training set registered.

The real ``coco_2017_val_ov_all`` name is used, pointed by $DETECTRON2_DATASETS at a miniature
COCO layout: the synthetic val scenes with their four shapes renamed to two base classes
(person, car) and two novel ones (bus, cat), and all 65 OV-COCO categories declared. Training
sees only the base classes (the base-annotated setting in small).
"""
import glob
import json
import os
import re
import sys
import types

import pytest
from conftest import run_tool

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from zip_d2.config import get_cfg
from zip_d2.data.ov_coco import OV_COCO_BASE, OV_COCO_NOVEL, build_ov_split
from zip_d2.engine import Trainer
from zip_d2.evaluation.ov_coco import evaluate_ov_results

CONFIG = "configs/open_vocab/mask_rcnn_R18_ov_synthetic.yaml"
# circle, square -> base; triangle, hexagon -> novel
RENAME = {"circle": "person", "square": "car", "triangle": "bus", "hexagon": "cat"}
BASE, NOVEL = ["person", "car"], ["bus", "cat"]
FAST = ["INPUT.MIN_SIZE_TRAIN", "(80,)", "INPUT.MIN_SIZE_TEST", "80", "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "()", "SOLVER.MAX_ITER", "6",
        "SOLVER.CHECKPOINT_PERIOD", "1000", "DATALOADER.NUM_WORKERS", "0",
        "ZIP.DATASETS.CHECK_IMAGE_SIZES", "False", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
        "DATASETS.TEST", "('coco_2017_val_ov_all',)",
        "ZIP.WANDB.ENABLED", "True", "ZIP.WANDB.MODE", "offline"]
SPLIT_KEYS = ("AP50-base", "AP50-novel", "AP50-all")
ENV = {"WANDB_SILENT": "true"}


def _renamed(path):
    with open(path) as f:
        data = json.load(f)
    coco_id = {c["name"]: c["id"] for c in COCO_CATEGORIES if c["isthing"]}
    new_id = {c["id"]: coco_id[RENAME[c["name"]]] for c in data["categories"]}
    for a in data["annotations"]:
        a["category_id"] = new_id[a["category_id"]]
    data["categories"] = [{"id": c["id"], "name": c["name"]} for c in COCO_CATEGORIES
                          if c["isthing"]]
    return data


@pytest.fixture(scope="module")
def ov_layout(synthetic_dataset, tmp_path_factory):
    """$DETECTRON2_DATASETS holding coco/{val2017, annotations/instances_val2017_ov_all.json},
    and a base-only training JSON; {"root", "train_json", "train_images", "val_json"}."""
    root = tmp_path_factory.mktemp("d2_datasets")
    (root / "coco" / "annotations").mkdir(parents=True)
    os.symlink(os.path.join(synthetic_dataset["root"], "val"), root / "coco" / "val2017")
    val = build_ov_split(_renamed(synthetic_dataset["val"]), OV_COCO_BASE + OV_COCO_NOVEL)
    assert len(val["categories"]) == 65 and {a["category_id"] for a in val["annotations"]}
    val_json = root / "coco" / "annotations" / "instances_val2017_ov_all.json"
    val_json.write_text(json.dumps(val))
    train = build_ov_split(_renamed(synthetic_dataset["train"]), BASE)
    train_json = root / "train_base.json"
    train_json.write_text(json.dumps(train))
    return {"root": str(root), "train_json": str(train_json), "val_json": str(val_json),
            "train_images": os.path.join(synthetic_dataset["root"], "train")}


def _metrics(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _printed_split(log):
    """The base/novel/all AP50 table the evaluator prints: [{key: value}, ...] per table."""
    tables = re.findall(r"\| *AP50-base *\| *AP50-novel *\| *AP50-all *\|\n\|[-:| ]+\|\n"
                        r"\| *([\d.na]+) *\| *([\d.na]+) *\| *([\d.na]+) *\|", log)
    return [dict(zip(SPLIT_KEYS, map(float, t))) for t in tables]


@pytest.fixture(scope="module")
def trained(ov_layout, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ov_coco_train"))
    res = run_tool("train_net.py", "--config-file", CONFIG,
                   "--register-dataset", "ov_train_base", ov_layout["train_json"],
                   ov_layout["train_images"], *FAST, "MODEL.ROI_HEADS.NUM_CLASSES", "2",
                   "DATASETS.TRAIN", "('ov_train_base',)", "OUTPUT_DIR", out,
                   env=dict(ENV, DETECTRON2_DATASETS=ov_layout["root"]))
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res.stdout + res.stderr


def test_end_of_training_eval_prints_and_records_base_novel_all_ap50(trained):
    out, log = trained
    printed = _printed_split(log)
    assert len(printed) == 1, log[-3000:]
    final = _metrics(out)[-1]
    for key in SPLIT_KEYS:
        assert final[f"bbox/{key}"] == pytest.approx(printed[0][key], abs=0.05)
    # The model learned only the base classes; it was scored on all 65 (generalised setting).
    assert "Open-vocabulary box AP50 (generalised, 48 base + 17 novel classes)" in log


def test_eval_only_needs_no_training_set_and_writes_the_split_to_metrics_and_wandb(
        trained, ov_layout, tmp_path):
    train_out, _ = trained
    out = str(tmp_path / "eval")
    # The config still names the training set, but it is not registered here.
    res = run_tool("train_net.py", "--config-file", CONFIG, "--eval-only", *FAST,
                   "MODEL.ROI_HEADS.NUM_CLASSES", "2", "DATASETS.TRAIN", "('ov_train_base',)",
                   "MODEL.WEIGHTS", os.path.join(train_out, "model_final.pth"), "OUTPUT_DIR", out,
                   env=dict(ENV, DETECTRON2_DATASETS=ov_layout["root"]))
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert "no training vocabulary" not in log
    printed = _printed_split(log)
    assert len(printed) == 1, log[-3000:]

    records = _metrics(out)
    assert len(records) == 1
    # Stamped as the end-of-training evaluation of the same checkpoint is: the iterations its
    # weights were trained for (SOLVER.MAX_ITER 6; detectron2 stores iteration 5 in it).
    final = [r for r in _metrics(train_out) if "bbox/AP50-all" in r][-1]
    assert records[0]["iteration"] == final["iteration"] == 6
    # The same numbers as the stand-alone tool's computation on the saved predictions.
    with open(os.path.join(out, "inference", "coco_2017_val_ov_all",
                           "coco_instances_results.json")) as f:
        saved = json.load(f)
    with open(ov_layout["val_json"]) as f:
        gt = json.load(f)
    recomputed = evaluate_ov_results(gt, saved, OV_COCO_BASE, OV_COCO_NOVEL)
    for key in SPLIT_KEYS:
        assert records[0][f"bbox/{key}"] == pytest.approx(recomputed[key], abs=1e-6), key
        assert printed[0][key] == pytest.approx(recomputed[key], abs=0.05), key

    # W&B (offline) got the same keys; their values are checked without W&B below.
    runs = glob.glob(os.path.join(out, "wandb", "offline-run-*", "*.wandb"))
    assert len(runs) == 1
    with open(runs[0], "rb") as f:
        logged = f.read()
    assert all(f"bbox/{key}".encode() in logged for key in SPLIT_KEYS)


def test_eval_results_reach_metrics_json_and_wandb_at_the_checkpoint_iteration(
        tmp_path, monkeypatch):
    logged = []

    class RecordingRun:
        def log(self, data, step):
            logged.append((step, dict(data)))

        def finish(self):
            logged.append("finished")

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(
        init=lambda **kwargs: RecordingRun()))
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.ZIP.WANDB.ENABLED = True
    results = {"bbox": {"AP": 12.5, "AP50-base": 200 / 3, "AP50-novel": 50.0, "AP50-all": 62.5}}
    Trainer.write_eval_results(cfg, results, iteration=1234)
    expected = {f"bbox/{k}": v for k, v in results["bbox"].items()}
    assert _metrics(str(tmp_path)) == [{"iteration": 1234, **expected}]
    assert logged == [(1234, expected), "finished"]
    assert glob.glob(str(tmp_path / "events.out.tfevents.*"))
