"""The SLURM jobs on a real single-node SLURM (tests/slurm_cluster.py starts it): a labelling
array with one task requeued mid-way, two-task CPU training requeued and resumed from its
checkpoint, self-training in one allocation, a failing task's one-line report; also the
refusals that need no cluster.

Each test prints its CI log line (job ids, the requeue, the outcome) to the terminal.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, run_tool
from slurm_cluster import slurm_cluster  # noqa: F401  (the session fixture)

from zip_d2 import slurm

TINY = os.path.join(REPO, "configs", "pseudo", "tiny_random.yaml")
# Bit-identical labels in every process: one thread, one image per labeler call (as
# tests/test_labels_job.py); the jobs inherit this environment through sbatch.
DETERMINISTIC = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TRAIN_CONFIG = os.path.join(REPO, "configs", "synthetic", "mask_rcnn_R18_synthetic.yaml")
TRAIN_FAST = ["INPUT.MIN_SIZE_TRAIN", "(80,)", "INPUT.MIN_SIZE_TEST", "80",
              "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()",
              "TEST.EVAL_PERIOD", "0", "DATALOADER.NUM_WORKERS", "0",
              "ZIP.DATASETS.CHECK_IMAGE_SIZES", "False"]
TIMEOUT_S = 300


@pytest.fixture
def env(monkeypatch):
    for key, value in DETERMINISTIC.items():
        monkeypatch.setenv(key, value)


def say(capsys, line):
    with capsys.disabled():
        print(f"\n[slurm] {line}", flush=True)


def wait_for(predicate, what, job, timeout=TIMEOUT_S):
    """Poll ``predicate`` while ``job`` runs; fail with its report if it ends first."""
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"{what} did not happen in {timeout} s"
        assert not job.done(), f"{what} did not happen: {slurm.report_lines([job])}"
        time.sleep(0.05)


def registrations(ds):
    return ["--register-dataset", "synthetic_train", ds["train"], os.path.join(ds["root"], "train"),
            "--register-dataset", "synthetic_val", ds["val"], os.path.join(ds["root"], "val")]


@pytest.mark.usefixtures("slurm_cluster")
def test_label_array_with_a_task_requeued_mid_way_gives_the_one_process_labels(
        env, tmp_path, capsys):
    # 40 images (the demo set 8 times): 10 per task, so that task 0 is stopped after its first
    # image with several still to do, even on a fast machine.
    images = tmp_path / "images"
    images.mkdir()
    for copy in range(8):
        for path in sorted(glob.glob(os.path.join(REPO, "datasets", "demo", "images", "*"))):
            shutil.copy(path, images / f"c{copy}_{os.path.basename(path)}")
    job_args = ["--images", str(images), "--config", TINY, "--batch-size", "1", "--workers", "1"]
    reference = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "tools", "generate_pseudo_labels.py"), *job_args,
         "--out", str(tmp_path / "one.json"), "--no-progress"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    out = tmp_path / "labels.json"
    opts = slurm.SlurmOptions(folder=str(tmp_path / "submitit"), tasks=4, time_min=10)
    start = time.time()
    submitted = slurm.submit_label(opts, [*job_args, "--out", str(out)])
    array, merge = submitted["array"], submitted["merge"]
    say(capsys, " | ".join(slurm.job_lines("label array", array)
                           + slurm.job_lines("merge job", [merge])))
    shard0 = out.parent / "labels.json.shards" / "rank00000-of-00004.jsonl"
    wait_for(lambda: shard0.exists() and shard0.stat().st_size > 0, "task 0's first image",
             array[0])
    array[0]._interrupt(timeout=True)  # the time-limit signal, as SLURM sends it
    slurm.wait([*array, merge], timeout_s=TIMEOUT_S)
    elapsed = time.time() - start
    report = slurm.report_lines([*array, merge])
    assert all(" DONE; " in line for line in report), report

    with open(array[0].paths.stdout) as f:
        log = f.read()
    assert f"Requeued job {array[0].job_id}" in log
    # Task 0 ran twice: some images in the first run, the rest after the requeue, none twice.
    with open(shard0) as f:
        records = [json.loads(line) for line in f]
    assert len({r["run"] for r in records}) == 2, records
    all_records = [json.loads(line) for path in glob.glob(str(shard0.parent / "rank*.jsonl"))
                   for line in open(path)]
    names = [r["file_name"] for r in all_records]
    assert len(names) == len(set(names)) == 40

    assert reference.wait(timeout=TIMEOUT_S) == 0, reference.stderr.read()[-2000:]
    with open(tmp_path / "one.json") as f:
        one = json.load(f)
    with open(out) as f:
        merged = json.load(f)
    assert merged["images"] == one["images"]
    assert merged["annotations"] == one["annotations"]
    assert merged["categories"] == one["categories"]
    say(capsys, f"label array {array[0].job_id.split('_')[0]}: task {array[0].job_id} requeued "
                f"after its first image, resumed: {len(records)} images in 2 runs, none twice; "
                f"merged labels identical to one process ({len(merged['images'])} images, "
                f"{len(merged['annotations'])} annotations); submit to merged {elapsed:.1f} s")


@pytest.mark.usefixtures("slurm_cluster")
@pytest.mark.skipif(torch.cuda.is_available(), reason="trains CPU processes")
def test_two_task_cpu_training_checkpoints_is_requeued_and_resumes(
        synthetic_dataset, env, tmp_path, capsys):
    iters, period = 12, 3
    out = tmp_path / "train"
    # Two SLURM tasks on the one node stand for two nodes: machine rank = SLURM task rank.
    opts = slurm.SlurmOptions(folder=str(tmp_path / "submitit"), tasks_per_node=2, time_min=10)
    job = slurm.submit_train(opts, [
        "--config-file", TRAIN_CONFIG, *registrations(synthetic_dataset), *TRAIN_FAST,
        "SOLVER.MAX_ITER", str(iters), "SOLVER.CHECKPOINT_PERIOD", str(period),
        "OUTPUT_DIR", str(out)])
    say(capsys, slurm.job_lines("train job", [job])[0])
    wait_for(lambda: (out / "last_checkpoint").exists(), "the first checkpoint", job)
    job._interrupt(timeout=True)
    slurm.wait([job], timeout_s=TIMEOUT_S)
    report = slurm.report_lines([job])
    assert len(report) == 2 and all(" DONE; " in line for line in report), report

    with open(job.task(0).paths.stdout) as f:
        log = f.read()
    assert f"Requeued job {job.job_id}" in log
    assert "--num-machines 2 --machine-rank 0 --dist-url tcp://" in log
    with open(out / "log.txt") as f:
        train_log = f.read()
    starts = [int(line.rsplit(" ", 1)[1]) for line in train_log.splitlines()
              if "Starting training from iteration" in line]
    # The first run starts at 0; the requeued one from the last checkpoint, not from 0.
    assert starts[0] == 0 and len(starts) == 2 and starts[1] > 0 and starts[1] % period == 0, \
        starts
    ckpt = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["iteration"] == iters - 1
    say(capsys, f"train job {job.job_id}: 2 tasks x 1 CPU process, requeued, resumed from "
                f"iteration {starts[1]}, model_final at iteration {iters - 1}")


@pytest.mark.usefixtures("slurm_cluster")
@pytest.mark.skipif(torch.cuda.is_available(), reason="trains CPU processes")
def test_self_training_two_rounds_in_one_allocation(synthetic_dataset, env,
                                                    tmp_path, capsys):
    from detectron2.checkpoint import DetectionCheckpointer

    from zip_d2.config import setup_cfg
    from zip_d2.data.simulate import write_simulated_pseudo_labels
    from zip_d2.engine import Trainer

    config = os.path.join(REPO, "configs", "self_train", "mask_rcnn_R18_synthetic.yaml")
    tiny = [*TRAIN_FAST, "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "ZIP.SELF_TRAIN.SCORE_THRESHOLDS",
            "[0.0, 0.0]", "TEST.DETECTIONS_PER_IMAGE", "5"]
    labels = str(tmp_path / "sim.json")
    write_simulated_pseudo_labels(synthetic_dataset["train"], labels, seed=0)
    torch.manual_seed(0)
    model = Trainer.build_model(setup_cfg(config, tiny))
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("round0")
    run_dir = tmp_path / "run"
    opts = slurm.SlurmOptions(folder=str(tmp_path / "submitit"), time_min=10)
    job = slurm.submit_self_train(opts, [
        "--config-file", config, "--labels", labels,
        "--image-root", os.path.join(synthetic_dataset["root"], "train"),
        "--weights", str(tmp_path / "round0.pth"), "--output-dir", str(run_dir),
        "--rounds", "2", *tiny])
    say(capsys, slurm.job_lines("self-train job", [job])[0])
    slurm.wait([job], timeout_s=TIMEOUT_S)
    report = slurm.report_lines([job])
    assert all(" DONE; " in line for line in report), report
    for k in (1, 2):
        assert (run_dir / f"round{k}" / "labels.json").exists()
        assert (run_dir / f"round{k}" / "model_final.pth").exists()
    say(capsys, f"self-train job {job.job_id}: rounds 1 and 2 in one allocation, DONE")


@pytest.mark.usefixtures("slurm_cluster")
def test_a_failing_task_is_reported_in_one_line_naming_its_log(tmp_path,
                                                               capsys):
    folder = tmp_path / "submitit"
    res = run_tool("submit_slurm.py", "train", "--folder", folder, "--time", "5", "--wait",
                   "--", "--config-file", str(tmp_path / "missing.yaml"))
    assert res.returncode == 1, res.stdout + res.stderr
    submitted, reported = res.stdout.strip().splitlines()
    job_id = submitted.split()[3].rstrip(";")
    assert submitted.startswith(f"submitted train job {job_id}; log ")
    assert f"scancel {job_id}" in submitted and f"sacct -j {job_id}" in submitted
    log = os.path.join(folder, f"{job_id}_0_log.out")
    assert reported.startswith(f"job {job_id} FAILED: train_net.py exited with status 2: ")
    assert "missing.yaml" in reported and reported.endswith(f"; log {log}")
    with open(log) as f:
        assert "missing.yaml" in f.read()  # the tool's own error is in the log it names
    say(capsys, reported)


@pytest.mark.parametrize("job,flag", [("label", "--shard"), ("label", "--overwrite"),
                                      ("train", "--num-gpus"), ("self-train", "--dist-url")])
def test_flags_the_allocation_sets_are_refused_in_one_line(job, flag, tmp_path):
    res = run_tool("submit_slurm.py", job, "--folder", tmp_path, "--", "--out", "x.json", flag,
                   "1")
    assert res.returncode == 2
    assert res.stderr.startswith(f"submit_slurm: error: {flag} in the tool's arguments: ")
    assert len(res.stderr.strip().splitlines()) == 1
    assert not os.listdir(tmp_path)  # nothing submitted


def test_without_sbatch_nothing_is_submitted_and_the_message_says_where_to_run(tmp_path):
    res = run_tool("submit_slurm.py", "train", "--folder", tmp_path / "submitit", "--",
                   "--config-file", "x.yaml", env={"PATH": str(tmp_path)})
    assert res.returncode == 2
    assert res.stderr.startswith("submit_slurm: error: sbatch not found: submit from a SLURM "
                                 "login node")
    assert not (tmp_path / "submitit").exists()
