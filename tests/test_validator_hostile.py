"""The validator is the one gate: whatever a later stage would drop, mis-score or crash on, it
reports as one line (the tool exits 1), never a traceback and never "OK"."""
import json

import numpy as np
import pytest
from conftest import load_tool, run_tool
from pycocotools import mask as mask_util

from zip_d2.data.rle import encode_mask
from zip_d2.data.validate import rle_string_run_lengths, validate_coco, validate_coco_file


def _base():
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:7] = True
    rle, area, bbox = encode_mask(mask)
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6},
                   {"id": 2, "file_name": "b.jpg", "width": 8, "height": 6}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": bbox, "area": area,
             "segmentation": rle, "iscrowd": 0, "score": 0.9},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [2.0, 1.0, 5.0, 3.0],
             "area": 15.0, "segmentation": [[2, 1, 7, 1, 7, 4, 2, 4]], "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "cat"}],
    }


def _set(path, value):
    """A mutation of the base dataset: ``path`` like "annotations.0.bbox.0"."""
    def mutate(data):
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return mutate


NAN, INF = float("nan"), float("inf")
# (what a user might hand over, a fragment of the one line that must name it)
HOSTILE = [
    ("nan_bbox", _set("annotations.0.bbox.0", NAN), "bbox must be"),
    ("inf_bbox_width", _set("annotations.0.bbox.2", INF), "bbox must be"),
    ("string_bbox_coordinates", _set("annotations.0.bbox", ["2", "1", "5", "3"]), "bbox must be"),
    ("string_bbox", _set("annotations.0.bbox", "2,1,5,3"), "bbox must be"),
    ("null_bbox", _set("annotations.0.bbox", None), "bbox must be"),
    ("nan_score", _set("annotations.0.score", NAN), "score must be"),
    ("string_score", _set("annotations.0.score", "0.9"), "score must be"),
    ("score_above_one", _set("annotations.0.score", 7.5), "score must be"),
    ("nan_area", _set("annotations.1.area", NAN), "area must be"),
    ("inf_area", _set("annotations.0.area", INF), "area must be"),
    ("string_area", _set("annotations.1.area", "15"), "area must be"),
    ("negative_polygon_area", _set("annotations.1.area", -15.0), "area must be"),
    ("float_rle_counts", _set("annotations.0.segmentation",
                              {"size": [6, 8], "counts": [8.5, 39.5]}), "non-negative integers"),
    ("negative_rle_counts", _set("annotations.0.segmentation",
                                 {"size": [6, 8], "counts": [-2, 50]}), "non-negative integers"),
    ("garbage_rle_string", _set("annotations.0.segmentation.counts", "!!~~garbage"),
     "not a valid compressed"),
    ("empty_rle_string", _set("annotations.0.segmentation.counts", ""), "run lengths sum to 0"),
    ("short_rle_string", _set("annotations.0.segmentation.counts", "52"), "run lengths sum to 7"),
    ("rle_counts_null", _set("annotations.0.segmentation.counts", None), "RLE counts must be"),
    ("rle_size_strings", _set("annotations.0.segmentation.size", ["6", "8"]), "RLE size"),
    ("flat_polygon_list", _set("annotations.1.segmentation", [2, 1, 7, 1, 7, 4, 2, 4]),
     "flat list"),
    ("string_polygon_coordinates", _set("annotations.1.segmentation",
                                        [["2", "1", "7", "1", "7", "4"]]), "finite numbers"),
    ("nan_polygon_coordinate", _set("annotations.1.segmentation.0.0", NAN), "finite numbers"),
    ("segmentation_string", _set("annotations.1.segmentation", "poly"), "RLE dict or a list"),
    ("iscrowd_two", _set("annotations.1.iscrowd", 2), "iscrowd must be"),
    ("duplicate_file_name", _set("images.1.file_name", "a.jpg"), "file_name 'a.jpg' is used by"),
    ("null_file_name", _set("images.0.file_name", None), "file_name must be a non-empty"),
    ("list_file_name", _set("images.0.file_name", ["a.jpg"]), "file_name must be a non-empty"),
    ("string_width", _set("images.0.width", "8"), "width/height must be positive integers"),
    ("float_height", _set("images.1.height", 6.5), "width/height must be positive integers"),
    ("list_image_id", _set("images.0.id", [1]), "id must be an integer"),
    ("list_annotation_id", _set("annotations.0.id", [1]), "id must be an integer"),
    ("string_image_id_in_annotation", _set("annotations.0.image_id", "1"),
     "image_id must be an integer"),
    ("null_category_id", _set("annotations.0.category_id", None), "category_id must be"),
    ("list_category_name", _set("categories.0.name", ["cat"]), "name must be a non-empty"),
    ("bool_category_id", _set("categories.0.id", True), "id must be an integer"),
]


def test_the_base_dataset_is_valid():
    assert validate_coco(_base(), check_segmentations=True) == []


# Compressed RLE strings are decoded only when segmentations are checked.
DECODED = {"garbage_rle_string", "empty_rle_string", "short_rle_string"}
CASES = [(*h, check) for h in HOSTILE for check in (False, True) if check or h[0] not in DECODED]


@pytest.mark.parametrize("name, mutate, fragment, check_segmentations", CASES,
                         ids=[f"{c[0]}-{'decode' if c[3] else 'form'}" for c in CASES])
def test_every_hostile_field_is_one_problem_line(name, mutate, fragment, check_segmentations):
    data = _base()
    mutate(data)
    problems = validate_coco(data, check_segmentations=check_segmentations)
    assert problems, f"{name} passed the validator"
    assert all("\n" not in p for p in problems)
    assert any(fragment in p for p in problems), problems


@pytest.mark.parametrize("name, mutate, fragment, check_segmentations", CASES,
                         ids=[f"{c[0]}-{'decode' if c[3] else 'form'}" for c in CASES])
def test_the_file_read_as_a_stream_gets_the_same_lines(tmp_path, name, mutate, fragment,
                                                       check_segmentations):
    # what tools/validate_pseudo_labels.py and the training checks run (zip_d2.data.json_stream)
    data = _base()
    mutate(data)
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(data))
    problems, _, _ = validate_coco_file(str(path), check_segmentations=check_segmentations)
    assert problems == validate_coco(data, check_segmentations=check_segmentations)


def test_rle_string_run_lengths_agree_with_pycocotools_on_random_masks():
    rng = np.random.default_rng(0)
    strings, expected = [], []
    for trial in range(60):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        mask = rng.random((h, w)) < rng.random()
        if trial % 5 == 0:
            mask[:] = trial % 2
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        strings.append(rle["counts"].decode("ascii"))
        flat = mask.flatten(order="F").astype(np.int8)
        changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])))
        expected.append(np.diff(np.concatenate([[0], changes])).tolist())
    big = np.zeros((3000, 4000), np.uint8)  # run lengths of several 5-bit groups
    big[5:2990, 7:3999] = 1
    strings.append(mask_util.encode(np.asfortranarray(big))["counts"].decode())
    # Strings that are not RLEs, between the good ones: each alone is None, its neighbours intact.
    bad = ["!!", "0o", "\u00e9", "zz"]
    mixed = [x for pair in zip(strings, bad * 20) for x in pair] + [""]
    runs = rle_string_run_lengths(mixed)
    assert [r.tolist() for r in runs[:-2:2][:60]] == expected
    assert runs[-1].tolist() == [] and all(r is None for r in runs[1:-1:2])
    big_runs = runs[-3]
    assert int(big_runs.sum()) == 3000 * 4000 and int(big_runs[1::2].sum()) == int(big.sum())


def test_two_images_with_one_file_name_are_reported_even_with_distinct_ids():
    data = _base()
    data["images"].append(dict(data["images"][0], id=3))
    problems = validate_coco(data)
    assert any("file_name 'a.jpg' is used by images 1 and 3" in p for p in problems), problems


def test_the_tool_prints_one_line_per_problem_and_exits_1_never_a_traceback(tmp_path, capsys):
    tool = load_tool("validate_pseudo_labels")
    for name, mutate, fragment in HOSTILE:
        data = _base()
        mutate(data)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))  # NaN and Infinity as Python's json writes them
        assert tool.main([str(path)]) == 1, name
        out = capsys.readouterr().out
        assert fragment in out, out
        assert "OK" not in out


def test_the_tool_run_as_a_user_runs_it_names_the_file_and_exits_1(tmp_path):
    data = _base()
    data["annotations"][1]["segmentation"] = [2, 1, 7, 1, 7, 4, 2, 4]
    data["images"][1]["file_name"] = "a.jpg"
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(data))
    proc = run_tool("validate_pseudo_labels.py", path, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert any("file_name 'a.jpg' is used by" in line for line in lines)
    assert any("flat list" in line for line in lines)

