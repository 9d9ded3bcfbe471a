import json

import cv2
import numpy as np
from pycocotools import mask as mask_util

from zip_d2.data.synthetic import SceneParams, make_synthetic_split, render_scene
from zip_d2.data.validate import validate_coco


def test_same_seed_gives_identical_dataset_and_other_seed_differs(tmp_path):
    params = SceneParams(width=64, height=48, min_radius=6, max_radius=10)
    a = json.load(open(make_synthetic_split(str(tmp_path / "a"), "train", 5, 3, params)))
    b = json.load(open(make_synthetic_split(str(tmp_path / "b"), "train", 5, 3, params)))
    c = json.load(open(make_synthetic_split(str(tmp_path / "c"), "train", 5, 4, params)))
    assert a["annotations"] == b["annotations"]
    img_a = cv2.imread(str(tmp_path / "a" / "train" / "train_000001.png"))
    img_b = cv2.imread(str(tmp_path / "b" / "train" / "train_000001.png"))
    assert np.array_equal(img_a, img_b)
    assert a["annotations"] != c["annotations"]


def test_json_width_height_match_the_written_non_square_images(synthetic_dataset):
    data = json.load(open(synthetic_dataset["train"]))
    for img in data["images"][:5]:
        pixels = cv2.imread(f"{synthetic_dataset['root']}/train/{img['file_name']}")
        assert pixels.shape[:2] == (img["height"], img["width"]) == (80, 96)
    assert validate_coco(data, f"{synthetic_dataset['root']}/train", check_image_sizes=True,
                         check_segmentations=True) == []


def test_masks_are_exact_disjoint_and_match_rle_area_and_box():
    rng = np.random.default_rng(0)
    params = SceneParams(touch_prob=1.0, min_objects=4, max_objects=4)
    image, objects = render_scene(rng, params)
    assert image.shape == (params.height, params.width, 3) and image.dtype == np.uint8
    stack = np.stack([o["mask"] for o in objects])
    assert stack.sum(0).max() == 1  # occlusion resolved: no pixel in two instances
    from zip_d2.data.synthetic import mask_to_annotation
    for o in objects:
        ann = mask_to_annotation(o["mask"], id=1)
        assert ann["area"] == o["mask"].sum()
        ys, xs = np.nonzero(o["mask"])
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        decoded = mask_util.decode({**ann["segmentation"],
                                    "counts": ann["segmentation"]["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), o["mask"])


def test_touching_same_category_instances_share_a_boundary():
    """The case Zip exists for: pairs of one category whose masks are 4-adjacent."""
    rng = np.random.default_rng(1)
    params = SceneParams(touch_prob=0.8, min_objects=5, max_objects=6)
    found = 0
    for _ in range(20):
        _, objects = render_scene(rng, params)
        for i, a in enumerate(objects):
            grown = cv2.dilate(a["mask"].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            found += sum(1 for b in objects[i + 1:] if b["category_id"] == a["category_id"]
                         and (grown & b["mask"]).any())
    assert found >= 10


def test_the_tool_refuses_an_existing_dataset_and_overwrite_leaves_no_stale_image(tmp_path):
    from conftest import run_tool

    out = tmp_path / "shapes"
    small = ["--width", "96", "--height", "80", "--seed", "0"]
    assert run_tool("make_synthetic_dataset.py", "--out", out, "--num-train", "5",
                    "--num-val", "2", *small).returncode == 0
    (out / "train" / "notes.txt").write_text("the user's own file")
    before = sorted(p.name for p in (out / "train").iterdir())
    res = run_tool("make_synthetic_dataset.py", "--out", out, "--num-train", "2",
                   "--num-val", "1", *small)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "--overwrite" in res.stderr and str(out) in res.stderr
    assert sorted(p.name for p in (out / "train").iterdir()) == before  # nothing touched
    res = run_tool("make_synthetic_dataset.py", "--out", out, "--num-train", "2",
                   "--num-val", "1", "--overwrite", *small)
    assert res.returncode == 0, res.stderr
    # The smaller dataset's images only, and the file the tool did not write.
    assert sorted(p.name for p in (out / "train").iterdir()) == [
        "notes.txt", "train_000001.png", "train_000002.png"]
    assert sorted(p.name for p in (out / "val").iterdir()) == ["val_000001.png"]
    assert len(json.load(open(out / "train.json"))["images"]) == 2
