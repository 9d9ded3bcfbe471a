"""The experiment scripts' shared pieces: flags, result records, and the compute they report."""
import json
import os
import sys

import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "tools", "experiments"))

import common  # noqa: E402
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


def test_compute_sums_every_run_folder_of_an_experiment(tmp_path):
    for run in ("runs/e2/a/selftrain/round1", "runs/e2/a/control/round0", "runs/e4/b"):
        os.makedirs(tmp_path / run)
        _metrics(str(tmp_path / run / "metrics.json"), [{"iteration": 9, "time": 3.0}])
    assert report.compute(str(tmp_path)) == {"e1": 0, "e2": 60, "e3": 0, "e4": 30}


def test_a_recorded_run_is_finished_and_its_values_summarised(tmp_path):
    root = str(tmp_path)
    assert not common.finished(root, "e1", "gt_s0")
    common.record(root, "e1", "gt_s0", {"val": {"box": {"AP50": 50.0}}})
    assert common.finished(root, "e1", "gt_s0")
    assert common.mean_spread([50.0, 54.0]) == (52.0, 2.0)
    assert report.cell([50.0, 54.0]) == "52.0 ± 2.0 (50.0, 54.0)"


def test_every_experiment_script_takes_the_shared_flags():
    parser = common.experiment_parser("Doc line.\nMore.", 600, "round iterations")
    args = parser.parse_args(["--root", "r", "--seeds", "3", "4", "--threads", "2"])
    assert (args.root, args.seeds, args.iters, args.threads) == ("r", [3, 4], 600, 2)
    with pytest.raises(SystemExit):
        parser.parse_args(["--seeds", "one"])
