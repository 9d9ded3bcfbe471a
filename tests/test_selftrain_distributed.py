"""tools/self_train.py with two CPU processes: the same round labels as one process, a run
killed with SIGKILL resumes where it stopped, and an error stops every process with one line.

Both runs start from the same round-0 checkpoint (--weights), so round 1's labels depend only
on prediction and merging, which must not depend on how the images were sharded. Both runs use
one torch thread per process (OMP_NUM_THREADS=1): with 2 threads instead of 1, convolutions
sum in another order and scores move in the 7th digit (measured), which could flip a score
across a threshold or a rounding boundary. Round 1's training, data-parallel over 2 processes,
is not the same computation as in one process (per-process BatchNorm statistics and
augmentation streams), so its weights are not compared.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, run_tool

from detectron2.checkpoint import DetectionCheckpointer

from zip_d2.config import setup_cfg
from zip_d2.data.simulate import write_simulated_pseudo_labels
from zip_d2.data.validate import validate_coco
from zip_d2.engine import Trainer

CONFIG = "configs/self_train/mask_rcnn_R18_synthetic.yaml"
TINY = ["SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "8", "SOLVER.CHECKPOINT_PERIOD", "2",
        "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0",
        "INPUT.MIN_SIZE_TRAIN", "(80,)", "INPUT.MIN_SIZE_TEST", "80",
        # An untrained detector scores low: threshold 0 so the labels hold its predictions.
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "ZIP.SELF_TRAIN.SCORE_THRESHOLDS", "[0.0]",
        "TEST.DETECTIONS_PER_IMAGE", "5"]
ENV = {"OMP_NUM_THREADS": "1"}

pytestmark = pytest.mark.skipif(torch.cuda.is_available(),
                                reason="checks multi-process self-training on CPU processes")


@pytest.fixture(scope="module")
def inputs(synthetic_dataset, tmp_path_factory):
    """Simulated round-0 labels and a round-0 checkpoint (random init: any fixed weights do)."""
    root = tmp_path_factory.mktemp("selftrain_inputs")
    labels = str(root / "sim.json")
    write_simulated_pseudo_labels(synthetic_dataset["train"], labels, seed=0)
    torch.manual_seed(0)
    model = Trainer.build_model(setup_cfg(CONFIG, TINY))
    DetectionCheckpointer(model, save_dir=str(root)).save("round0")
    return {"labels": labels, "weights": str(root / "round0.pth"),
            "image_root": os.path.join(synthetic_dataset["root"], "train")}


def _args(inputs, out, num_processes):
    return ["--num-gpus", str(num_processes), "--dist-url", "auto", "--config-file", CONFIG,
            "--labels", inputs["labels"], "--image-root", inputs["image_root"],
            "--weights", inputs["weights"], "--output-dir", str(out), "--rounds", "1", *TINY]


def _kill_when(path, cmd, timeout=300):
    """Start ``cmd`` in its own session and SIGKILL all its processes once ``path`` exists."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, **ENV), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while not os.path.exists(path):
            assert proc.poll() is None, f"finished (rc {proc.returncode}) before {path} appeared"
            assert time.time() < deadline, f"{path} did not appear in {timeout} s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def runs(inputs, tmp_path_factory):
    """One run with 1 process; one with 2 processes killed in round 1's training, then rerun."""
    root = tmp_path_factory.mktemp("selftrain_runs")
    one = run_tool("self_train.py", *_args(inputs, root / "one", 1), env=ENV)
    assert one.returncode == 0, one.stderr[-3000:]
    two = root / "two"
    _kill_when(str(two / "round1" / "last_checkpoint"),
               [sys.executable, os.path.join(REPO, "tools", "self_train.py"),
                *_args(inputs, two, 2)])
    killed = {"tag": (two / "round1" / "last_checkpoint").read_text(),
              "predictions_mtime": os.path.getmtime(two / "round1" / "predictions.json")}
    rerun = run_tool("self_train.py", *_args(inputs, two, 2), env=ENV)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    return {"one": root / "one", "two": two, "killed": killed,
            "rerun_log": rerun.stdout + rerun.stderr}


def test_two_processes_make_byte_identical_round_labels_to_one_process(runs, inputs):
    for name in ("predictions.json", "labels.json"):
        one = (runs["one"] / "round1" / name).read_bytes()
        assert one == (runs["two"] / "round1" / name).read_bytes(), name
    data = json.loads((runs["two"] / "round1" / "labels.json").read_text())
    assert validate_coco(data, image_root=inputs["image_root"], check_segmentations=True) == []
    assert data["info"]["self_training"]["predictions_kept"] > 0


def test_a_two_process_run_killed_during_training_resumes_where_it_stopped(runs):
    killed, log, two = runs["killed"], runs["rerun_log"], runs["two"]
    assert killed["tag"] != "model_final.pth", "the kill came after round 1 had finished"
    resumed_from = int(killed["tag"][len("model_"):-len(".pth")]) + 1
    assert "round 1: labels exist, not redone" in log
    assert f"Starting training from iteration {resumed_from}" in log
    assert os.path.getmtime(two / "round1" / "predictions.json") == killed["predictions_mtime"]
    assert (two / "round1" / "last_checkpoint").read_text() == "model_final.pth"
    summary = json.loads((two / "self_train.json").read_text())
    assert summary["round_info"]["1"]["checkpoint"] == str(two / "round1" / "model_final.pth")
    assert summary["round_info"]["1"]["num_annotations"] > 0


def test_an_error_on_the_main_process_stops_both_processes_with_one_line(inputs, tmp_path):
    # The labels' images are not under this root: the main process's dataset check fails in
    # round 1, and the other process must stop too instead of waiting for it.
    empty_root = tmp_path / "no_images"
    empty_root.mkdir()
    args = _args(dict(inputs, image_root=str(empty_root)), tmp_path / "run", 2)
    res = run_tool("self_train.py", *args, env=ENV, timeout=180)
    assert res.returncode == 2, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("self_train: error:")]
    assert len(errors) == 1 and "file not found" in errors[0], res.stderr[-3000:]
    assert "Traceback" not in res.stderr


def test_two_processes_refuse_other_inputs_and_overwrite_starts_over(runs, inputs, tmp_path):
    # A finished run directory, rerun with 2 processes on other labels: refused in the launching
    # process (one line, nothing touched); with --overwrite rank 0 starts over and records them.
    out = tmp_path / "run"
    shutil.copytree(runs["one"], out)
    other = json.loads(open(inputs["labels"]).read())
    other["annotations"] = other["annotations"][:-1]
    other_labels = tmp_path / "other.json"
    other_labels.write_text(json.dumps(other))
    args = _args(dict(inputs, labels=str(other_labels)), out, 2)
    before = (out / "round1" / "labels.json").read_bytes()
    res = run_tool("self_train.py", *args, env=ENV, timeout=180)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr[-3000:]
    assert "other inputs" in res.stderr and "--overwrite" in res.stderr
    assert (out / "round1" / "labels.json").read_bytes() == before
    res = run_tool("self_train.py", "--overwrite", *args, env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "self_train.json").read_text())
    assert summary["inputs"]["labels"]["path"] == str(other_labels)
    labels = json.loads((out / "round1" / "labels.json").read_text())
    assert labels["info"]["self_training"]["parent_annotations"] == len(other["annotations"])
