"""Simulated pseudo-labels: each error kind does what its parameter says, and is recorded."""
import json

import numpy as np
from pycocotools import mask as mask_util

from zip_d2.data.simulate import (
    SimulationParams,
    simulate_pseudo_labels,
    write_simulated_pseudo_labels,
)
from zip_d2.data.synthetic import mask_to_annotation
from zip_d2.data.validate import validate_coco

NO_ERRORS = dict(merge_prob=0.0, miss_prob=0.0, boundary_prob=0.0, spurious_per_image=0.0,
                 flip_prob=0.0)


def _gt():
    """One 64x64 image: two touching class-1 squares and a separate class-2 square."""
    h = w = 64
    masks = [np.zeros((h, w), bool) for _ in range(3)]
    masks[0][10:20, 10:20] = True
    masks[1][10:20, 20:30] = True  # shares the column boundary with masks[0]
    masks[2][40:50, 40:50] = True
    cats = [1, 1, 2]
    anns = [mask_to_annotation(m, id=i + 1, image_id=1, category_id=c)
            for i, (m, c) in enumerate(zip(masks, cats))]
    return {"images": [{"id": 1, "file_name": "a.png", "width": w, "height": h}],
            "annotations": anns,
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}, masks


def _masks(data):
    return [mask_util.decode(a["segmentation"]).astype(bool) for a in data["annotations"]]


def test_without_errors_labels_equal_ground_truth_masks_and_classes():
    gt, masks = _gt()
    out = simulate_pseudo_labels(gt, SimulationParams(**NO_ERRORS))
    assert [a["category_id"] for a in out["annotations"]] == [1, 1, 2]
    assert all((a == b).all() for a, b in zip(_masks(out), masks))


def test_merge_joins_touching_same_class_instances_only():
    gt, masks = _gt()
    out = simulate_pseudo_labels(gt, SimulationParams(**dict(NO_ERRORS, merge_prob=1.0)))
    got = _masks(out)
    assert len(got) == 2
    assert (got[0] == (masks[0] | masks[1])).all()
    assert (got[1] == masks[2]).all()


def test_miss_flip_boundary_and_spurious_errors():
    gt, masks = _gt()
    assert simulate_pseudo_labels(gt, SimulationParams(**dict(NO_ERRORS, miss_prob=1.0)))[
        "annotations"] == []
    flipped = simulate_pseudo_labels(gt, SimulationParams(**dict(NO_ERRORS, flip_prob=1.0)))
    assert [a["category_id"] for a in flipped["annotations"]] == [2, 2, 1]
    eroded = simulate_pseudo_labels(gt, SimulationParams(**dict(NO_ERRORS, boundary_prob=1.0,
                                                                boundary_px=1)))
    areas = [m.sum() for m in _masks(eroded)]
    assert all(a != 100 for a in areas)  # every 10x10 square became 8x8 or 12x12
    assert set(areas) <= {64, 144}
    spurious = simulate_pseudo_labels(gt, SimulationParams(**dict(NO_ERRORS,
                                                                   spurious_per_image=5.0)), seed=3)
    assert len(spurious["annotations"]) > 3


def test_scores_are_higher_for_correct_labels_on_average():
    gt, _ = _gt()
    gt["images"] = [dict(gt["images"][0], id=i) for i in range(1, 201)]
    gt["annotations"] = [dict(a, id=len(gt["annotations"]) * (i - 1) + a["id"], image_id=i)
                         for i in range(1, 201) for a in gt["annotations"]]
    p = SimulationParams(**dict(NO_ERRORS, flip_prob=0.5))
    out = simulate_pseudo_labels(gt, p, seed=0)
    truth = {(a["image_id"], a["bbox"][0], a["bbox"][1]): a["category_id"]
             for a in gt["annotations"]}
    right = [a["score"] for a in out["annotations"]
             if truth[(a["image_id"], a["bbox"][0], a["bbox"][1])] == a["category_id"]]
    wrong = [a["score"] for a in out["annotations"]
             if truth[(a["image_id"], a["bbox"][0], a["bbox"][1])] != a["category_id"]]
    assert len(right) > 100 and len(wrong) > 100
    assert np.mean(right) > np.mean(wrong) + 0.1
    assert max(wrong) > min(right)  # imperfect: the score distributions overlap


def test_written_file_is_valid_seeded_and_marked_simulated(tmp_path):
    gt, _ = _gt()
    src = tmp_path / "gt.json"
    src.write_text(json.dumps(gt))
    a = write_simulated_pseudo_labels(str(src), str(tmp_path / "a.json"), seed=7)
    b = write_simulated_pseudo_labels(str(src), str(tmp_path / "b.json"), seed=7)
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    assert a == b
    info = json.loads((tmp_path / "a.json").read_text())["info"]
    assert info["simulated"] is True and "SIMULATED" in info["description"]
    assert info["simulation"]["seed"] == 7
    assert info["simulation"]["params"]["merge_prob"] == SimulationParams().merge_prob
    assert validate_coco(a, check_segmentations=True) == []
