"""Bad datasets stop training before any work, with one line naming the problem."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest
from conftest import run_tool
from pycocotools import mask as mask_util

from zip_d2.config import SetupError, setup_cfg
from zip_d2.data.register import register_coco_json
from zip_d2.data.rle import segmentation_to_rle
from zip_d2.data.validate import DatasetError, validate_coco
from zip_d2.engine.setup import preflight

CONFIG = "configs/synthetic/mask_rcnn_R18_synthetic.yaml"


@pytest.fixture
def dataset_copy(synthetic_dataset, tmp_path):
    """A private, editable copy of the synthetic val split: (json_path, image_root, data)."""
    root = tmp_path / "val"
    shutil.copytree(os.path.join(synthetic_dataset["root"], "val"), root)
    data = json.load(open(synthetic_dataset["val"]))
    return str(tmp_path / "val.json"), str(root), data


def check(name, json_path, image_root, data=None):
    if data is not None:
        json.dump(data, open(json_path, "w"))
    cfg = setup_cfg(CONFIG, ["DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()"],
                    [[name, json_path, image_root]])
    preflight(cfg)


def expect_one_line(excinfo, *fragments):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for frag in fragments:
        assert frag in msg, msg


def test_valid_dataset_passes(dataset_copy):
    check("ok_set", *dataset_copy)


def test_missing_json_file(dataset_copy):
    _, root, _ = dataset_copy
    with pytest.raises(DatasetError) as e:
        check("no_json", "/nonexistent/x.json", root)
    expect_one_line(e, "JSON file not found", "/nonexistent/x.json")


def test_missing_image_root(dataset_copy):
    path, _, data = dataset_copy
    with pytest.raises(DatasetError) as e:
        check("no_root", path, "/nonexistent/images", data)
    expect_one_line(e, "image root not found")


def test_json_missing_required_field(dataset_copy):
    path, root, data = dataset_copy
    del data["images"][2]["height"]
    with pytest.raises(DatasetError) as e:
        check("no_height", path, root, data)
    expect_one_line(e, "images[2]", "height")


def test_annotation_with_unknown_category(dataset_copy):
    path, root, data = dataset_copy
    data["annotations"][0]["category_id"] = 99
    with pytest.raises(DatasetError) as e:
        check("bad_cat", path, root, data)
    expect_one_line(e, "category_id 99 is not in 'categories'")


def test_image_size_differs_from_json(dataset_copy):
    path, root, data = dataset_copy
    img = data["images"][1]
    cv2.imwrite(os.path.join(root, img["file_name"]), np.zeros((50, 70, 3), np.uint8))
    with pytest.raises(DatasetError) as e:
        check("bad_size", path, root, data)
    expect_one_line(e, "is 70x50 (WxH)", f"says {img['width']}x{img['height']}")


@pytest.mark.parametrize("bbox", [[60.0, 50.0, 60.0, 50.0], [-20.0, -5.0, 30.0, 30.0]],
                         ids=["past the right and bottom edges", "negative coordinates"])
def test_boxes_outside_their_image_stop_training_before_any_work(dataset_copy, bbox):
    path, root, data = dataset_copy
    img = data["images"][0]
    ann = next(a for a in data["annotations"] if a["image_id"] == img["id"])
    ann["bbox"] = bbox
    with pytest.raises(DatasetError) as e:
        check(f"box_outside_{int(bbox[0])}", path, root, data)
    expect_one_line(e, f"annotation {ann['id']}", "outside its",
                    f"{img['width']}x{img['height']} image")


def test_coco_crowd_annotations_in_uncompressed_rle_pass_and_bad_run_lengths_do_not(dataset_copy):
    # COCO's own JSONs store crowd regions as uncompressed RLE (counts: a list of run lengths).
    path, root, data = dataset_copy
    img = data["images"][0]
    ann = next(a for a in data["annotations"] if a["image_id"] == img["id"])
    mask = mask_util.decode(segmentation_to_rle(ann["segmentation"], img["height"], img["width"]))
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])))
    ann["segmentation"] = {"size": [img["height"], img["width"]],
                           "counts": np.diff(np.concatenate([[0], changes])).tolist()}
    ann["iscrowd"] = 1
    check("crowd_uncompressed_rle", path, root, data)
    ann["segmentation"]["counts"][-1] += 7
    with pytest.raises(DatasetError) as e:
        check("crowd_bad_run_lengths", path, root, data)
    expect_one_line(e, f"annotation {ann['id']}", "run lengths sum to")


def test_empty_dataset(dataset_copy):
    path, root, data = dataset_copy
    data["images"], data["annotations"] = [], []
    with pytest.raises(DatasetError) as e:
        check("empty", path, root, data)
    expect_one_line(e, "empty")


def test_training_set_without_annotations(dataset_copy):
    path, root, data = dataset_copy
    data["annotations"] = []
    with pytest.raises(DatasetError) as e:
        check("no_anns", path, root, data)
    expect_one_line(e, "no annotations to train on")


def test_duplicate_ids_and_rle_area_are_reported(dataset_copy):
    _, root, data = dataset_copy
    data["annotations"][1]["id"] = data["annotations"][0]["id"]
    data["annotations"][2]["area"] += 50
    problems = validate_coco(data, root, check_segmentations=True)
    assert any("duplicate id" in p for p in problems)
    assert any("RLE decodes to area" in p for p in problems)


def test_unregistered_name_and_name_reuse_are_errors(dataset_copy):
    path, root, data = dataset_copy
    cfg = setup_cfg(CONFIG, ["DATASETS.TRAIN", "('never_registered',)"])
    with pytest.raises(DatasetError, match="not registered: pass --register-dataset"):
        preflight(cfg)
    json.dump(data, open(path, "w"))
    register_coco_json("reused_name", path, root)
    register_coco_json("reused_name", path, root)  # same files: fine
    with pytest.raises(DatasetError, match="already registered"):
        register_coco_json("reused_name", path, "/elsewhere")


def test_bad_config_key_and_missing_config_file():
    with pytest.raises(
        SetupError, match="command-line overrides: Non-existent key: MODEL.NOT_A_KEY"
    ):
        setup_cfg(CONFIG, ["MODEL.NOT_A_KEY", "1"])
    with pytest.raises(SetupError, match="config file not found"):
        setup_cfg("configs/nope.yaml")


def test_train_net_reports_a_bad_dataset_in_one_line_without_traceback(dataset_copy):
    path, root, data = dataset_copy
    data["annotations"][0]["category_id"] = 42
    json.dump(data, open(path, "w"))
    res = run_tool("train_net.py", "--config-file", CONFIG,
                   "--register-dataset", "cli_bad", path, root,
                   "DATASETS.TRAIN", "('cli_bad',)", "DATASETS.TEST", "()", timeout=120)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("train_net: error: dataset 'cli_bad'")
    assert "category_id 42" in lines[-1]


def test_json_stream_reads_any_layout_one_element_at_a_time(tmp_path):
    from zip_d2.data.json_stream import iter_object

    data = {"info": {"a": [1, 2.5e-3, None, True]}, "images": [{"id": 1, "s": "x\u00e9\"\\"}],
            "empty": [], "n": 12345678901234567890, "annotations": [[], {}, -0.5, "]"]}
    path = str(tmp_path / "d.json")
    for indent in (None, 3):
        with open(path, "w") as f:
            json.dump(data, f, indent=indent, ensure_ascii=indent is None)
        for chunk in (1, 2, 7, 1 << 20):  # values cut at every place by the block boundaries
            got = {k: list(v) if not isinstance(v, (dict, int)) else v
                   for k, v in iter_object(path, chunk=chunk)}
            assert got == data
    with open(path, "w") as f:
        f.write('{"images": [{"id": 1}, {"id": 2]')
    with pytest.raises(DatasetError, match="not valid JSON"):
        for _, value in iter_object(path, chunk=4):
            list(value)


def test_streaming_validation_of_a_file_finds_what_the_in_memory_one_finds(dataset_copy):
    from zip_d2.data.validate import validate_coco_file

    path, root, data = dataset_copy
    data["annotations"][1]["id"] = data["annotations"][0]["id"]
    data["annotations"][2]["area"] += 50
    data["images"][3]["width"] += 1
    data["annotations"][4]["category_id"] = 999
    expected = validate_coco(data, root, check_image_sizes=True, check_segmentations=True)
    assert len(expected) >= 4 and any("duplicate id" in p for p in expected)
    # COCO's own order (categories last, after the annotations they are checked against),
    # pretty-printed, and the merged pseudo-label order (categories first)
    layouts = [dict(data), {k: data[k] for k in ("categories", "images", "annotations")}]
    layouts[0]["categories"] = layouts[0].pop("categories")
    for layout in layouts:
        json.dump(layout, open(path, "w"), indent=1)
        problems, counts, used_root = validate_coco_file(path, root, check_image_sizes=True,
                                                         check_segmentations=True)
        assert sorted(problems) == sorted(expected) and used_root == root
        assert {k: counts[k] for k in ("images", "annotations", "categories")} == {
            "images": len(data["images"]), "annotations": len(data["annotations"]),
            "categories": len(data["categories"])}
        bare = [a for a in data["annotations"]
                if not a.get("iscrowd") and not a.get("segmentation")]
        assert counts["instances"] == sum(not a.get("iscrowd") for a in data["annotations"])
        assert counts["without_segmentation"] == len(bare)
    del layout["images"]
    json.dump(layout, open(path, "w"))
    assert validate_coco_file(path)[0] == ["missing required list 'images'"]
