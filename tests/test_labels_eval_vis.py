"""Evaluating pseudo-labels against ground truth, and looking at them."""
import json
import os

import numpy as np
import pytest
from conftest import load_tool
from PIL import Image
from pycocotools import mask as mask_util

from zip_d2.evaluation.pseudo_labels import EvalError, evaluate_pseudo_labels
from zip_d2.labels.visualize import write_overlays

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    rc = load_tool("eval_pseudo_labels").main(["--pred", str(tmp_path / "pred.json"),
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
    # The 64x48 image is enlarged 10x for display (short side 480), a legend strip below it.
    assert overlay.shape[1] == 640 and overlay.shape[0] > 480
    # Inside the square mask the flat grey background is tinted; far from any object it is not.
    assert np.abs(overlay[155, 145] - 200).max() > 15
    assert np.abs(overlay[445, 25] - 200).max() < 8


def test_label_statistics_count_classes_images_and_empty_ones():
    from zip_d2.labels.statistics import label_statistics, statistics_lines

    data = _as_pseudo_labels(_ground_truth(), keep=lambda a: a["image_id"] != 12 or
                             a["category_id"] == 1)
    data["images"].append({"id": 4, "file_name": "empty.png", "width": 64, "height": 48})
    data["categories"].append({"id": 20, "name": "zebra"})
    data["skipped_images"] = [{"file_name": "bad.jpg", "reason": "x"}]
    stats = label_statistics(data)
    assert [(c.name, c.labels, c.images) for c in stats.per_class] == [
        ("cat", 3, 3), ("dog", 2, 2), ("zebra", 0, 0)]
    assert sorted(stats.per_image.tolist()) == [0, 1, 2, 2]
    lines = statistics_lines(stats)
    assert lines[0] == ("labels per image: mean 1.2, median 1.5, 90th percentile 2, max 2; "
                        "1 of 4 labelled images have none (1 skipped)")
    assert lines[2].split() == ["cat", "3", "60%", "3", "0.90"]
    assert lines[-1] == "  1 of 3 classes got no label: zebra"


def test_gallery_has_a_score_histogram_per_labelled_class(tmp_path):
    gt = _ground_truth()
    pred = _as_pseudo_labels(gt)
    for i, ann in enumerate(pred["annotations"]):
        ann["score"] = (0.2 if ann["category_id"] == 8 else 0.95) - 0.01 * i
    pred["categories"].append({"id": 30, "name": "zebra"})
    root = tmp_path / "images"
    root.mkdir()
    for im in gt["images"]:
        Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(root / im["file_name"])
    page = open(write_overlays(pred, str(root), str(tmp_path / "vis"), num=1)).read()
    pngs = sorted(f for f in os.listdir(tmp_path / "vis") if f.startswith("scores_"))
    assert pngs == ["scores_8.png", "scores_9.png"]  # cat and dog; zebra has no label
    for name in pngs:
        assert Image.open(tmp_path / "vis" / name).size == (240, 120)
        assert f"<img src='{name}'" in page
    assert "<td>zebra</td><td>0</td>" in page and "labels per image: mean 2.0" in page
    # cat's scores are all near 0.2, dog's near 0.95: the bars stand where the scores are.
    bars = {}
    for name in ("scores_8.png", "scores_9.png"):
        plot = np.asarray(Image.open(tmp_path / "vis" / name).convert("RGB")).astype(int)
        blue = (plot[:, :, 2] - plot[:, :, 0] > 60)[30:95]  # the bars' colour, inside the axes
        bars[name] = (blue[:, 40:120].sum(), blue[:, 180:232].sum())
    assert bars["scores_8.png"][0] > 0 == bars["scores_8.png"][1]
    assert bars["scores_9.png"][1] > 0 == bars["scores_9.png"][0]


def _gallery_images(tmp_path, gt, size=(48, 64)):
    root = tmp_path / "images"
    root.mkdir(exist_ok=True)
    for im in gt["images"]:
        Image.fromarray(np.full((*size, 3), 200, np.uint8)).save(root / im["file_name"])
    return root


def test_ground_truth_is_drawn_beside_the_labels_and_without_a_score(tmp_path):
    from zip_d2.labels.visualize import _label

    gt = _ground_truth()
    pred = _as_pseudo_labels(gt)
    root = _gallery_images(tmp_path, gt)
    write_overlays(pred, str(root), str(tmp_path / "alone"), num=1)
    write_overlays(pred, str(root), str(tmp_path / "both"), num=1, gt=gt)
    alone = np.asarray(Image.open(tmp_path / "alone" / "00000001.jpg"))
    both = np.asarray(Image.open(tmp_path / "both" / "00000001.jpg"))
    assert both.shape[1] > 2 * alone.shape[1]  # two panels side by side
    assert _label("cat", None) == "cat"  # ground truth: no fake "1.00"
    assert _label("cat", 0.5) == "cat 0.50"
    # A ground-truth file drawn on its own is not called pseudo-labels.
    page = open(write_overlays(gt, str(root), str(tmp_path / "gt"), num=1)).read()
    assert "<h1>Labels (no scores)" in page and "Pseudo-labels" not in page


def test_random_weight_labels_are_stamped_on_the_pictures_and_labels_are_capped(tmp_path):
    from zip_d2.labels.visualize import draw_overlay

    gt = _ground_truth()
    pred = _as_pseudo_labels(gt)
    root = _gallery_images(tmp_path, gt)
    write_overlays(pred, str(root), str(tmp_path / "plain"), num=1)
    pred["info"] = {"random_weights": True}
    write_overlays(pred, str(root), str(tmp_path / "random"), num=1)
    plain = np.asarray(Image.open(tmp_path / "plain" / "00000001.jpg")).astype(int)
    stamped = np.asarray(Image.open(tmp_path / "random" / "00000001.jpg")).astype(int)
    # A red band across the bottom of the 480-px picture, away from every object.
    red = stamped[465, 300:600]
    assert (red[:, 0] - red[:, 2] > 60).mean() > 0.5
    assert np.abs(plain[465, 300:600] - 200).max() < 8
    # Many detections: only MAX_LABELS text labels; the legend says how many more.
    many = [dict(pred["annotations"][0], id=i, score=1 - i / 100) for i in range(30)]
    few = draw_overlay(np.full((48, 64, 3), 200, np.uint8), many[:1], {8: "cat", 9: "dog"},
                       max_labels=1)
    capped = draw_overlay(np.full((48, 64, 3), 200, np.uint8), many, {8: "cat", 9: "dog"},
                          max_labels=1)
    assert capped.shape[0] > few.shape[0]  # the "29 more without a text label" legend line
