"""OV-COCO: the 48/17 class lists, the split builder, registered names, base/novel AP50."""
import json
import os

import pytest
import torch
from conftest import run_tool

from detectron2.data import MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from detectron2.structures import Boxes, Instances

from zip_d2.data.ov_coco import OV_COCO_BASE, OV_COCO_NOVEL
from zip_d2.data.register import register_coco_json
from zip_d2.evaluation import OVCOCOEvaluator
from zip_d2.evaluation.ov_coco import evaluate_ov_results

COCO_THINGS = [c for c in COCO_CATEGORIES if c["isthing"]]
ID = {c["name"]: c["id"] for c in COCO_THINGS}


def test_class_lists_are_the_48_17_split_of_coco_names():
    assert len(OV_COCO_BASE) == len(set(OV_COCO_BASE)) == 48
    assert len(OV_COCO_NOVEL) == len(set(OV_COCO_NOVEL)) == 17
    assert not set(OV_COCO_BASE) & set(OV_COCO_NOVEL)
    assert set(OV_COCO_BASE + OV_COCO_NOVEL) <= set(ID)
    # The 15 COCO classes OVR-CNN leaves out of the benchmark.
    left_out = set(ID) - set(OV_COCO_BASE + OV_COCO_NOVEL)
    assert len(left_out) == 15 and {"fire hydrant", "teddy bear", "hair drier"} <= left_out


def _box_ann(ann_id, image_id, name, box=(10, 10, 20, 20)):
    return {"id": ann_id, "image_id": image_id, "category_id": ID[name], "bbox": list(box),
            "area": float(box[2] * box[3]), "iscrowd": 0}


def _write_coco(path, annotations, num_images):
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 64, "height": 64}
              for i in range(1, num_images + 1)]
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": c["id"], "name": c["name"]} for c in COCO_THINGS]}, f)


def test_split_tool_keeps_base_for_training_and_all_65_for_eval(tmp_path):
    ann_dir = tmp_path / "coco" / "annotations"
    ann_dir.mkdir(parents=True)
    anns = [_box_ann(1, 1, "person"), _box_ann(2, 1, "airplane"), _box_ann(3, 2, "airplane"),
            _box_ann(4, 3, "fire hydrant"), _box_ann(5, 4, "dog")]
    _write_coco(ann_dir / "instances_train2017.json", anns, 5)
    _write_coco(ann_dir / "instances_val2017.json", anns, 5)
    proc = run_tool("make_ov_coco_splits.py", env={"DETECTRON2_DATASETS": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    base = json.loads((ann_dir / "instances_train2017_ov_base.json").read_text())
    assert [c["name"] for c in base["categories"]] == [c["name"] for c in COCO_THINGS
                                                       if c["name"] in OV_COCO_BASE]
    assert [a["id"] for a in base["annotations"]] == [1]  # no novel box leaks into training
    assert [img["id"] for img in base["images"]] == [1]
    val = json.loads((ann_dir / "instances_val2017_ov_all.json").read_text())
    assert len(val["categories"]) == 65
    assert [a["id"] for a in val["annotations"]] == [1, 2, 3, 5]  # hydrant (not in 65) dropped
    assert [img["id"] for img in val["images"]] == [1, 2, 4]
    vocab = (ann_dir / "ov_coco_vocabulary_65.txt").read_text().split("\n")[:-1]
    assert vocab == [c["name"] for c in COCO_THINGS if c["name"] in OV_COCO_BASE + OV_COCO_NOVEL]


def test_split_tool_reports_a_missing_coco_file(tmp_path):
    proc = run_tool("make_ov_coco_splits.py", "--root", tmp_path)
    assert proc.returncode == 2 and "instances_train2017.json" in proc.stderr


def test_ov_coco_names_are_registered_with_the_split_and_the_ov_evaluator():
    root = os.environ.get("DETECTRON2_DATASETS", "datasets")
    meta = MetadataCatalog.get("coco_2017_val_ov_all")
    assert meta.evaluator_type == "ov_coco"
    assert meta.json_file == os.path.abspath(
        os.path.join(root, "coco", "annotations", "instances_val2017_ov_all.json"))
    assert len(meta.thing_classes) == 65 and meta.ov_novel_classes == OV_COCO_NOVEL
    assert MetadataCatalog.get("coco_2017_train_ov_base").thing_classes == [
        c["name"] for c in COCO_THINGS if c["name"] in OV_COCO_BASE]


# Constructed case: 3 base classes (person 100, car 0, bicycle 100) and 1 novel (cat 50).
# Expected AP50: base 66.7, novel 50, all 62.5.
GT_ANNS = [_box_ann(1, 1, "person", (0, 0, 20, 20)), _box_ann(2, 1, "car", (30, 30, 20, 20)),
           _box_ann(3, 2, "bicycle", (0, 0, 30, 30)), _box_ann(4, 2, "cat", (30, 30, 30, 30))]
PREDS = [("person", 1, (0, 0, 20, 20), 0.9),
         ("car", 1, (40, 40, 20, 20), 0.9),       # IoU 0.14: a miss and a false positive
         ("bicycle", 2, (1, 1, 29, 29), 0.8),
         ("cat", 1, (0, 30, 30, 30), 0.95),       # false positive ranked above the hit
         ("cat", 2, (30, 30, 30, 30), 0.7)]
EXPECTED = {"AP50-base": 200 / 3, "AP50-novel": 50.0, "AP50-all": 62.5}


def _gt_dict():
    return {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 64}
                       for i in (1, 2)],
            "annotations": GT_ANNS,
            "categories": [{"id": ID[n], "name": n} for n in ("person", "bicycle", "car", "cat")]}


def test_results_breakdown_on_constructed_predictions():
    results = [{"image_id": img, "category_id": ID[n], "bbox": list(b), "score": s}
               for n, img, b, s in PREDS]
    r = evaluate_ov_results(_gt_dict(), results, ["person", "bicycle", "car"], ["cat"])
    for k, v in EXPECTED.items():
        assert r[k] == pytest.approx(v, abs=0.01), k
    assert r["per_class"] == pytest.approx({"person": 100.0, "bicycle": 100.0, "car": 0.0,
                                            "cat": 50.0}, abs=0.01)


def test_evaluator_adds_base_novel_all_ap50_to_box_results(tmp_path):
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(_gt_dict()))
    register_coco_json("test_ov_eval_constructed", str(gt_path), str(tmp_path))
    evaluator = OVCOCOEvaluator("test_ov_eval_constructed",
                                base_classes=["person", "bicycle", "car"],
                                novel_classes=["cat"], distributed=False)
    evaluator.reset()
    contiguous = {n: i for i, n in enumerate(["person", "bicycle", "car", "cat"])}  # id order
    for img in (1, 2):
        preds = [(n, b, s) for n, i, b, s in PREDS if i == img]
        inst = Instances((64, 64))
        inst.pred_boxes = Boxes(torch.tensor([[x, y, x + w, y + h] for _, (x, y, w, h), _ in preds],
                                             dtype=torch.float32))
        inst.scores = torch.tensor([s for *_, s in preds])
        inst.pred_classes = torch.tensor([contiguous[n] for n, *_ in preds])
        evaluator.process([{"image_id": img}], [{"instances": inst}])
    box = evaluator.evaluate()["bbox"]
    for k, v in EXPECTED.items():
        assert box[k] == pytest.approx(v, abs=0.01), k


def test_both_ov_coco_settings_train_on_their_classes_and_test_on_all_65():
    from zip_d2.config import get_cfg

    for setting, train_name, num in (("base_annotated", "coco_2017_train_ov_base", 48),
                                     ("annotation_free", "coco_2017_train_ov_zip", 65)):
        cfg = get_cfg()
        cfg.merge_from_file(f"configs/ov_coco/mask_rcnn_R50_FPN_ov_{setting}.yaml")
        assert cfg.DATASETS.TRAIN == (train_name,) and cfg.MODEL.ROI_HEADS.NUM_CLASSES == num
        assert cfg.DATASETS.TEST == ("coco_2017_val_ov_all",)
        assert cfg.MODEL.ROI_HEADS.NAME == "OpenVocabROIHeads"
    assert len(MetadataCatalog.get("coco_2017_train_ov_base").thing_classes) == 48
