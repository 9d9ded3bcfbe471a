"""tools/make_label_subset.py: a broken source is one line (exit 2) before any file is written,
and two percentages never write one file."""
import json
import os

import pytest
from conftest import load_tool


def _coco(n=20):
    return {"images": [{"id": i, "file_name": f"{i}.png", "width": 8, "height": 6}
                       for i in range(1, n + 1)],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 2, 2]}
                            for i in range(1, n + 1)],
            "categories": [{"id": 1, "name": "cat"}]}


def _run(tmp_path, capsys, coco, *percents):
    src = tmp_path / "train.json"
    src.write_text(json.dumps(coco))
    out_dir = tmp_path / "subsets"
    code = load_tool("make_label_subset").main(
        ["--coco-json", str(src), "--out-dir", str(out_dir), "--percents", *percents])
    out, err = capsys.readouterr()
    written = sorted(os.listdir(out_dir)) if out_dir.exists() else []
    return code, out, err, written


@pytest.mark.parametrize("drop", ["images", "annotations", "categories"])
def test_a_source_without_a_required_list_is_one_line_and_writes_nothing(tmp_path, capsys, drop):
    coco = _coco()
    del coco[drop]
    code, out, err, written = _run(tmp_path, capsys, coco, "10")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"missing required list '{drop}'" in err and "train.json" in err
    assert written == []


def test_a_source_with_a_nan_box_is_refused(tmp_path, capsys):
    coco = _coco()
    coco["annotations"][3]["bbox"][0] = float("nan")
    code, out, err, written = _run(tmp_path, capsys, coco, "50")
    assert code == 2 and "annotation 4: bbox must be" in err and written == []


def test_percentages_that_differ_write_different_files(tmp_path, capsys):
    code, out, err, written = _run(tmp_path, capsys, _coco(), "10", "10.0000001")
    assert code == 0, err
    assert written == ["train_10.0000001pct_seed1.json", "train_10pct_seed1.json"]
    assert out.count("->") == 2


def test_a_percentage_given_twice_is_written_once_with_a_note(tmp_path, capsys):
    code, out, err, written = _run(tmp_path, capsys, _coco(), "10", "10.0", "50")
    assert code == 0, err
    assert written == ["train_10pct_seed1.json", "train_50pct_seed1.json"]
    assert out.count("->") == 2 and "more than once" in err


def test_a_bad_percentage_anywhere_writes_nothing(tmp_path, capsys):
    code, out, err, written = _run(tmp_path, capsys, _coco(), "10", "150")
    assert code == 2 and "percent must be in (0, 100]" in err and written == []


def test_file_names_keep_the_documented_form_for_usual_percentages():
    from zip_d2.data.subsets import subset_file_name

    names = [subset_file_name("/d/instances_train2017.json", p, 1) for p in (1, 2.0, 5, 10, 0.5)]
    assert names == ["instances_train2017_1pct_seed1.json", "instances_train2017_2pct_seed1.json",
                     "instances_train2017_5pct_seed1.json", "instances_train2017_10pct_seed1.json",
                     "instances_train2017_0.5pct_seed1.json"]
