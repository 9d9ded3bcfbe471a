"""Label subsets: deterministic, documented sizes, nested across percentages; config schedules."""
import json
import os

import pytest
from conftest import run_tool

from zip_d2.config import get_cfg
from zip_d2.data.subsets import LABEL_PERCENTS, make_label_subset, scaled_schedule, subset_size
from zip_d2.data.validate import validate_coco


def _coco(num_images=250):
    # Ids deliberately not in file order: the draw must depend on ids, not on file order.
    images = [{"id": i, "file_name": f"{i}.png", "width": 8, "height": 8}
              for i in reversed(range(1, num_images + 1))]
    anns = [{"id": 2 * i + k, "image_id": i, "category_id": 1, "bbox": [0, 0, 2, 2],
             "area": 4.0, "iscrowd": 0} for i in range(1, num_images + 1) for k in range(2)]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}]}


def test_subset_sizes_round_half_up_with_at_least_one_image():
    assert [subset_size(250, p) for p in LABEL_PERCENTS] == [3, 5, 13, 25]  # 2.5 -> 3
    assert subset_size(20, 1) == 1 and subset_size(118287, 1) == 1183
    with pytest.raises(ValueError):
        subset_size(100, 0)


def test_same_seed_same_subset_other_seed_other_subset_and_file_order_irrelevant():
    coco = _coco()
    a = make_label_subset(coco, 10, seed=1)
    b = make_label_subset(dict(coco, images=list(reversed(coco["images"]))), 10, seed=1)
    c = make_label_subset(coco, 10, seed=2)
    ids = lambda d: [img["id"] for img in d["images"]]  # noqa: E731
    assert ids(a) == ids(b) and a["annotations"] == b["annotations"]
    assert ids(a) != ids(c)
    assert ids(a) == sorted(ids(a))


def test_subsets_of_one_seed_are_nested_and_keep_all_their_annotations():
    coco = _coco()
    subsets = [make_label_subset(coco, p, seed=3) for p in LABEL_PERCENTS]
    sets = [{img["id"] for img in s["images"]} for s in subsets]
    assert all(small < big for small, big in zip(sets, sets[1:]))
    for s, chosen in zip(subsets, sets):
        assert {a["image_id"] for a in s["annotations"]} == chosen
        assert len(s["annotations"]) == 2 * len(chosen)
        assert s["info"]["label_subset"]["seed"] == 3
        assert validate_coco(s) == []


def test_make_label_subset_tool_writes_the_documented_files(synthetic_dataset, tmp_path):
    proc = run_tool("make_label_subset.py", "--coco-json", synthetic_dataset["train"],
                    "--out-dir", tmp_path, "--percents", "10", "50", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    with open(synthetic_dataset["train"]) as f:
        full = json.load(f)
    for p, n in ((10, 2), (50, 12)):  # 24 images: 2.4 -> 2, 12
        path = tmp_path / f"train_{p}pct_seed1.json"
        data = json.loads(path.read_text())
        assert len(data["images"]) == n
        assert data == json.loads(json.dumps(make_label_subset(
            full, float(p), 1, source=os.path.abspath(synthetic_dataset["train"]))))


def test_label_efficient_configs_use_the_scaled_schedule():
    for p in LABEL_PERCENTS:
        cfg = get_cfg()
        cfg.merge_from_file(f"configs/label_efficient/mask_rcnn_R50_FPN_{p}pct.yaml")
        max_iter, steps = scaled_schedule(p, 90000, (60000, 80000), min_iter=1000)
        assert (cfg.SOLVER.MAX_ITER, tuple(cfg.SOLVER.STEPS)) == (max_iter, steps)
        assert cfg.DATASETS.TRAIN == (f"coco_2017_train_{p}pct",)
        assert cfg.MODEL.WEIGHTS.endswith("model_final.pth")  # a pseudo-label-trained start
    # Fewer labels -> proportionally fewer iterations, down to the floor.
    assert [scaled_schedule(p, 90000, (60000, 80000), 1000)[0] for p in LABEL_PERCENTS] == [
        1000, 1800, 4500, 9000]
