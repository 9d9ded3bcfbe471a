"""The experiment scripts' shared pieces: flags, run records, label matching, the shuffled-label
control, and the report that rebuilds docs/EXPERIMENTS_RESULTS.md from the committed records."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from zip_d2.config import setup_cfg
from zip_d2.data.coco_json import load_json
from zip_d2.data.synthetic import mask_to_annotation

sys.path.insert(0, os.path.join(REPO, "tools", "experiments"))

import common  # noqa: E402
import label_efficient  # noqa: E402
import report  # noqa: E402


def _metrics(path, records):
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def test_training_time_counts_a_resumed_runs_iterations_once(tmp_path):
    path = str(tmp_path / "metrics.json")
    # Iterations 0-59 at 2 s, killed after 59 with a checkpoint at 39, resumed: 40-79 at 1 s.
    # The evaluation record has no time and counts nothing.
    _metrics(path, [{"iteration": 19, "time": 2.0}, {"iteration": 39, "time": 2.0},
                    {"iteration": 59, "time": 2.0},
                    {"iteration": 59, "time": 1.0}, {"iteration": 79, "time": 1.0},
                    {"iteration": 79, "bbox/AP50": 40.0}])
    assert common.training_seconds(path) == pytest.approx(20 * 2 + 20 * 2 + 20 * 1 + 20 * 1)


def test_a_run_is_recorded_with_where_and_what_it_cost_and_a_failed_one_is_not(tmp_path):
    records = common.Records(str(tmp_path / "rec"), threads=1)
    assert records.get("e1", "gt_s0") is None
    with pytest.raises(RuntimeError):
        with records.run("e1", "gt_s0", seed=0):
            raise RuntimeError("training died")
    assert records.get("e1", "gt_s0") is None  # an interrupted run is redone, never half-kept
    with records.run("e1", "gt_s0", seed=0) as rec:
        sum(i * i for i in range(200000))  # some CPU time
        rec["test"] = {"box": {"AP50": 50.0}}
    got = records.get("e1", "gt_s0")
    assert got["test"] == {"box": {"AP50": 50.0}} and got["seed"] == 0
    assert len(got["commit"]) == 40 and isinstance(got["dirty"], bool)  # the repo's HEAD
    assert got["torch_threads"] == 1 and got["wall_seconds"] >= 0 and got["cpu_seconds"] >= 0
    assert len(got["load_average_start"]) == 3 and got["finished"].endswith("UTC")


def test_the_config_hash_ignores_output_and_data_paths_but_not_settings():
    def cfg(opts, json_path="/a/train.json", out="/x"):
        return setup_cfg(common.CONFIG, opts + ["OUTPUT_DIR", out],
                         [["t", json_path, "/a/images"]])
    base = common.config_hash(cfg(["SEED", "1"]))
    assert base == common.config_hash(cfg(["SEED", "1"], "/b/train.json", "/y"))
    assert base != common.config_hash(cfg(["SEED", "2"]))
    assert base != common.config_hash(cfg(["SEED", "1", "SOLVER.BASE_LR", "0.001"]))


def _square(image_id, y, x, size=10, category_id=1, **fields):
    m = np.zeros((40, 60), bool)
    m[y:y + size, x:x + size] = True
    return mask_to_annotation(m, image_id=image_id, category_id=category_id, **fields)


def test_match_counts_count_found_objects_and_right_instances_by_class(tmp_path):
    gt = {"images": [{"id": 1, "width": 60, "height": 40, "file_name": "a.png"}],
          "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
          "annotations": [_square(1, 0, 0, id=1), _square(1, 20, 30, id=2),
                          _square(1, 20, 0, category_id=2, id=3)]}
    path = str(tmp_path / "gt.json")
    with open(path, "w") as f:
        json.dump(gt, f)
    found = [_square(1, 0, 1, score=0.9),             # object 1 (IoU 0.82)
             _square(1, 20, 30, category_id=2, score=0.9),  # right place, wrong class
             _square(1, 20, 0, category_id=2, score=0.3),   # object 3, below 0.5
             _square(1, 0, 45, score=0.8)]               # nothing there
    counts = common.match_counts(found, path)
    assert (counts["found"], counts["right"], counts["instances"]) == (2, 2, 4)
    assert counts["found_ids"] == {1, 3} and counts["recall"] == pytest.approx(0.667, abs=1e-3)
    high = common.match_counts(found, path, min_score=0.5)
    assert (high["found_ids"], high["right"], high["instances"]) == ({1}, 1, 3)


def test_shuffled_labels_keep_every_label_but_move_each_off_its_image(tmp_path):
    images = [{"id": i, "width": 60, "height": 40, "file_name": f"{i}.png"} for i in range(1, 8)]
    anns = [_square(i, 2 * i, 3 * i, id=10 * i + k) for i in range(1, 8) for k in range(i % 3)]
    src = str(tmp_path / "labels.json")
    with open(src, "w") as f:
        json.dump({"images": images, "annotations": anns,
                   "categories": [{"id": 1, "name": "a"}]}, f)
    out = label_efficient.shuffled_labels(src, str(tmp_path / "shuffled.json"), seed=3)
    moved = {a["id"]: a["image_id"] for a in load_json(out)["annotations"]}
    before = {a["id"]: a["image_id"] for a in anns}
    assert sorted(moved) == sorted(before)  # the same labels
    assert all(moved[k] != before[k] for k in before)  # none left on its own image
    # Images move as a whole: labels that shared an image still share one.
    assert len({moved[k] for k in before if before[k] == 5}) == 1
    images[0]["width"] = 61
    with open(src, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": []}, f)
    with pytest.raises(ValueError, match="one size"):
        label_efficient.shuffled_labels(src, str(tmp_path / "other.json"), seed=3)


def test_the_verdict_follows_the_paired_interval_and_its_threshold():
    assert report.verdict([4.0, 5.0, 6.0, 5.0], 0) == "shown"
    assert report.verdict([-4.0, -5.0, -6.0, -5.0], 0) == "opposite"
    assert report.verdict([4.0, -3.0, 6.0, -1.0], 0) == "not shown"
    assert report.verdict([4.0, 5.0, 6.0], 0).startswith("incomplete (3 of 4")
    assert report.verdict([0.4, 0.42, 0.41, 0.43], 0.5, side="<") == "shown"
    mean, low, high = report.interval([1.0, 2.0, 3.0, 4.0])
    # t(0.975, 3) = 3.182, sd = 1.291: half-width 2.054
    assert mean == 2.5 and low == pytest.approx(0.446, abs=1e-3) and high == pytest.approx(
        4.554, abs=1e-3)
    assert report.paired({0: 5.0, 1: 7.0, 2: 1.0}, {1: 3.0, 0: 1.0}) == ([0, 1], [4.0, 4.0])


def test_check_names_the_block_and_line_where_the_document_differs(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("text\n<!-- report:t -->\n| a |\n| 1.0 |\n<!-- /report:t -->\nmore\n")
    assert report.check(str(doc), {"t": "| a |\n| 1.0 |"}) == []
    problems = report.check(str(doc), {"t": "| a |\n| 1.1 |"})
    assert len(problems) == 1 and "block 't' line 2" in problems[0] and "1.1" in problems[0]
    assert "no block 'u'" in report.check(str(doc), {"t": "| a |\n| 1.0 |", "u": "x"})[0]
    filled = report.fill(doc.read_text(), {"t": "| b |"})
    assert filled == "text\n<!-- report:t -->\n| b |\n<!-- /report:t -->\nmore\n"


def test_the_committed_document_matches_the_committed_records():
    """What CI checks: every table of docs/EXPERIMENTS_RESULTS.md is what report.py makes from
    docs/experiments/records/ (seconds, no training, no torch)."""
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "experiments",
                                                       "report.py"), "--check"],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "the document matches" in res.stdout
    records = report.load_records(report.RECORDS)
    assert set(records) == {"e1", "e2", "e3", "e4"}
    for runs in records.values():
        for record in runs.values():
            assert len(record["commit"]) == 40 and record["cpu_seconds"] >= 0


def test_every_experiment_script_takes_the_shared_flags():
    parser = common.experiment_parser("Doc line.\nMore.", 600, "round iterations")
    args = parser.parse_args(["--root", "r", "--seeds", "3", "4", "--threads", "2"])
    assert (args.root, args.seeds, args.iters, args.threads) == ("r", [3, 4], 600, 2)
    assert args.records == common.RECORDS
    with pytest.raises(SystemExit):
        parser.parse_args(["--seeds", "one"])
