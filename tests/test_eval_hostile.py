"""tools/eval_pseudo_labels.py validates both files first: a broken or mis-given input is one
line and exit 2, never a traceback and never a number."""
import copy
import json

import numpy as np
import pytest
from conftest import load_tool, run_tool

from zip_d2.data.rle import encode_mask


def _gt():
    images, annotations = [], []
    for i in range(1, 4):
        images.append({"id": i, "file_name": f"{i}.png", "width": 40, "height": 30})
        mask = np.zeros((30, 40), bool)
        mask[3 * i:3 * i + 10, 2 * i:2 * i + 15] = True
        rle, area, bbox = encode_mask(mask)
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": bbox,
                            "area": area, "segmentation": rle, "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "cat"}]}


def _perfect_predictions():
    pred = copy.deepcopy(_gt())
    for ann in pred["annotations"]:
        ann["score"] = 0.9
    return pred


def _run(tmp_path, capsys, pred, gt):
    pred_path, gt_path = tmp_path / "pred.json", tmp_path / "gt.json"
    pred_path.write_text(json.dumps(pred))
    gt_path.write_text(json.dumps(gt))
    code = load_tool("eval_pseudo_labels").main(["--pred", str(pred_path), "--gt", str(gt_path)])
    out, err = capsys.readouterr()
    return code, out, err, str(pred_path), str(gt_path)


def test_perfect_predictions_score_100(tmp_path, capsys):
    code, out, err, _, _ = _run(tmp_path, capsys, _perfect_predictions(), _gt())
    assert code == 0, err
    box = next(line for line in out.splitlines() if line.startswith("box"))
    assert float(box.split()[1]) == 100.0


def _drop(key):
    def mutate(pred, gt):
        del pred[key]
    return mutate


def _pred_ann(key, value):
    def mutate(pred, gt):
        pred["annotations"][0][key] = value
    return mutate


def _drop_bbox(pred, gt):
    del pred["annotations"][1]["bbox"]


def _gt_duplicate_file_name(pred, gt):
    # COCOeval would score image 1's predictions against image 2's objects.
    gt["images"][1]["file_name"] = gt["images"][0]["file_name"]


def _swap(pred, gt):
    scored = copy.deepcopy(pred)
    pred.clear()
    pred.update(copy.deepcopy(gt))
    gt.clear()
    gt.update(scored)


def _results_list(pred, gt):
    pred["as_list"] = True


CASES = [
    ("pred_without_images", _drop("images"), "pred", "missing required list 'images'"),
    ("pred_without_categories", _drop("categories"), "pred",
     "missing required list 'categories'"),
    ("pred_annotation_without_bbox", _drop_bbox, "pred", "missing required field(s) bbox"),
    ("bbox_of_length_3", _pred_ann("bbox", [1.0, 2.0, 3.0]), "pred", "bbox must be"),
    ("string_score", _pred_ann("score", "high"), "pred", "score must be"),
    ("nan_score", _pred_ann("score", float("nan")), "pred", "score must be"),
    ("gt_with_two_images_of_one_file_name", _gt_duplicate_file_name, "gt",
     "file_name '1.png' is used by images 1 and 2"),
    ("pred_and_gt_swapped", _swap, "gt", "look swapped"),
    ("pred_is_a_results_list", _results_list, "pred", "list of detections"),
]


@pytest.mark.parametrize("name, mutate, which, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_inputs_are_one_line_naming_the_file_and_exit_2(tmp_path, capsys, name, mutate,
                                                            which, fragment):
    pred, gt = _perfect_predictions(), _gt()
    mutate(pred, gt)
    if pred.pop("as_list", False):
        pred = [dict(a, score=0.9) for a in gt["annotations"]]
    code, out, err, pred_path, gt_path = _run(tmp_path, capsys, pred, gt)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], err
    assert (pred_path if which == "pred" else gt_path) in lines[0]
    assert "AP" not in out


def test_the_tool_as_a_user_runs_it_prints_no_traceback(tmp_path):
    pred = _perfect_predictions()
    pred["annotations"][0]["bbox"] = [1, 2, 3]
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    (tmp_path / "gt.json").write_text(json.dumps(_gt()))
    proc = run_tool("eval_pseudo_labels.py", "--pred", tmp_path / "pred.json",
                    "--gt", tmp_path / "gt.json", timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'pred.json'}: ")
