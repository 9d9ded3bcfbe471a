"""Evaluating pseudo-labels against ground truth, and looking at them."""
import importlib.util
import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from zip_d2.evaluation.pseudo_labels import EvalError, evaluate_pseudo_labels
from zip_d2.labels.visualize import write_overlays

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


def _ground_truth():
    """Three 64x48 images, two objects each (a square and a bar), categories cat=1 and dog=2."""
    images, anns = [], []
    for i in range(3):
        images.append({"id": 10 + i, "file_name": f"im{i}.png", "width": 64, "height": 48})
        for j, (x, y, w, h) in enumerate([(4 + i, 5, 20, 20), (34, 10 + i, 24, 12)]):
            m = np.zeros((48, 64), bool)
            m[y:y + h, x:x + w] = True
            anns.append({"id": len(anns) + 1, "image_id": 10 + i, "category_id": 1 + j,
                         "segmentation": _rle(m), "area": int(m.sum()),
                         "bbox": [float(x), float(y), float(w), float(h)], "iscrowd": 0})
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}


def _as_pseudo_labels(gt, keep=lambda ann: True, category_names=None):
    """The ground truth re-numbered the way a folder job numbers things, with scores."""
    id_map = {im["id"]: k + 1 for k, im in enumerate(gt["images"])}
    names = category_names or {1: "cat", 2: "dog"}
    cats = [{"id": 7 + cid, "name": name} for cid, name in names.items()]
    anns = [dict(a, id=n + 1, image_id=id_map[a["image_id"]], category_id=7 + a["category_id"],
                 score=0.9) for n, a in enumerate(a for a in gt["annotations"] if keep(a))]
    return {"images": [dict(im, id=id_map[im["id"]]) for im in gt["images"]],
            "annotations": anns, "categories": cats, "skipped_images": []}


def test_ground_truth_scored_against_itself_is_perfect_despite_other_ids():
    gt = _ground_truth()
    metrics = evaluate_pseudo_labels(_as_pseudo_labels(gt), gt)
    assert metrics["images"] == 3 and metrics["detections"] == 6
    for kind in ("bbox", "segm"):
        assert metrics[kind]["AP"] == pytest.approx(1.0)
        assert metrics[kind]["AR100"] == pytest.approx(1.0)


def test_missing_pseudo_labels_lower_recall():
    gt = _ground_truth()
    pred = _as_pseudo_labels(gt, keep=lambda a: a["category_id"] == 1)
    metrics = evaluate_pseudo_labels(pred, gt)
    assert metrics["segm"]["AR100"] == pytest.approx(0.5)
    assert metrics["bbox"]["AP"] == pytest.approx(0.5)


def test_class_agnostic_ignores_wrong_class_names():
    gt = _ground_truth()
    swapped = _as_pseudo_labels(gt, category_names={1: "dog", 2: "cat"})
    assert evaluate_pseudo_labels(swapped, gt)["segm"]["AP"] == pytest.approx(0.0)
    assert evaluate_pseudo_labels(swapped, gt, class_agnostic=True)["segm"]["AP"] == \
        pytest.approx(1.0)
    unknown = _as_pseudo_labels(gt, category_names={1: "zebra", 2: "yak"})
    with pytest.raises(EvalError, match="--class-agnostic"):
        evaluate_pseudo_labels(unknown, gt)


def test_eval_tool_prints_box_and_mask_rows(tmp_path, capsys):
    gt = _ground_truth()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(_as_pseudo_labels(gt)))
    rc = _tool("eval_pseudo_labels").main(["--pred", str(tmp_path / "pred.json"),
                                           "--gt", str(tmp_path / "gt.json")])
    out = capsys.readouterr().out
    assert rc == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.startswith(("box", "mask"))}
    assert rows["box"][0] == "100.0" and rows["mask"][0] == "100.0"


def test_overlays_and_index_page_show_the_masks(tmp_path):
    gt = _ground_truth()
    pred = _as_pseudo_labels(gt)
    pred["skipped_images"] = [{"file_name": "bad.jpg", "reason": "cannot decode: OSError: x"}]
    root = tmp_path / "images"
    root.mkdir()
    for im in gt["images"]:
        Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(root / im["file_name"])
    index = write_overlays(pred, str(root), str(tmp_path / "vis"), num=2)
    page = open(index).read()
    drawn = sorted(f for f in os.listdir(tmp_path / "vis") if f.endswith(".jpg"))
    assert drawn == ["00000001.jpg", "00000002.jpg"]
    assert all(f"src='{name}'" in page for name in drawn)
    assert "bad.jpg: cannot decode" in page and "2 instances: cat, dog" in page
    overlay = np.asarray(Image.open(tmp_path / "vis" / "00000001.jpg")).astype(int)
    assert overlay.shape == (48, 64, 3)
    # Inside the square mask the flat grey background is tinted; far from any object it is not.
    assert np.abs(overlay[15, 14] - 200).max() > 15
    assert np.abs(overlay[44, 2] - 200).max() < 8
