"""tools/train_net.py --num-gpus 2 on a CPU-only machine: two data-parallel CPU processes
(gloo), evaluation sharded across them and gathered, and only rank 0 writing files."""
import glob
import json
import os
import socket

import pytest
import torch
from conftest import load_tool, run_tool

CONFIG = "configs/synthetic/mask_rcnn_R18_synthetic.yaml"
# detectron2 writes metrics.json every 20 iterations, each loss the median of the last 20: 40
# iterations give two records over disjoint windows (iterations 0-19 and 20-39).
ITERS = 40
FAST = ["INPUT.MIN_SIZE_TRAIN", "(80,)", "INPUT.MIN_SIZE_TEST", "80", "SOLVER.IMS_PER_BATCH", "4",
        "SOLVER.WARMUP_ITERS", "5", "SOLVER.STEPS", "()", "SOLVER.MAX_ITER", str(ITERS),
        "SOLVER.CHECKPOINT_PERIOD", "1000", "TEST.EVAL_PERIOD", "0",
        "DATALOADER.NUM_WORKERS", "0", "ZIP.DATASETS.CHECK_IMAGE_SIZES", "False",
        # Every detection kept, so every val image has predictions to gather.
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
        "ZIP.WANDB.ENABLED", "True", "ZIP.WANDB.MODE", "offline"]

pytestmark = pytest.mark.skipif(torch.cuda.is_available(),
                                reason="checks multi-process training on CPU processes")


def registrations(ds):
    return ["--register-dataset", "synthetic_train", ds["train"], os.path.join(ds["root"], "train"),
            "--register-dataset", "synthetic_val", ds["val"], os.path.join(ds["root"], "val")]


@pytest.fixture(scope="module")
def two_processes(synthetic_dataset, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("train_2proc"))
    res = run_tool("train_net.py", "--num-gpus", "2", "--dist-url", "auto", "--config-file",
                   CONFIG, *registrations(synthetic_dataset), *FAST, "OUTPUT_DIR", out,
                   env={"WANDB_SILENT": "true"})
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res.stdout + res.stderr


def test_two_cpu_processes_train_and_the_loss_falls(two_processes):
    out, log = two_processes
    assert "World size: 2" in log
    # Each process takes half the cores, unless the environment fixes the thread count.
    threads = int(os.environ.get("OMP_NUM_THREADS", 0)) or max(
        1, len(os.sched_getaffinity(0)) // 2)
    for rank_log in ("log.txt", "log.txt.rank1"):
        with open(os.path.join(out, rank_log)) as f:
            assert f"of 2 on this machine: {threads} torch thread(s)" in f.read(), rank_log
    with open(os.path.join(out, "metrics.json")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    losses = [r for r in records if "total_loss" in r]
    assert [r["iteration"] for r in losses] == [19, ITERS - 1], losses
    # Losses are averaged over both processes by detectron2 before rank 0 writes them.
    # The RPN's objectness loss (fixed anchor targets) falls fastest from scratch, and the mask
    # loss, on foreground RoIs only, has to fall. The total does not: as the RPN learns, more
    # sampled RoIs are foreground and the box regression loss (summed over the foreground,
    # divided by all sampled RoIs) rises, about doubling here; whether it outweighs the other
    # losses' fall within a few dozen iterations depends on the last bits of the CPU's kernels.
    first, last = losses
    assert last["loss_rpn_cls"] < 0.6 * first["loss_rpn_cls"], losses
    assert last["loss_mask"] < first["loss_mask"], losses


def test_only_rank_0_writes_checkpoints_metrics_tensorboard_and_wandb(two_processes):
    out, _ = two_processes
    assert sorted(glob.glob(os.path.join(out, "*.pth"))) == [os.path.join(out, "model_final.pth")]
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read() == "model_final.pth"
    ckpt = torch.load(os.path.join(out, "model_final.pth"), map_location="cpu", weights_only=False)
    assert ckpt["iteration"] == ITERS - 1
    # Plain model keys: the checkpoint holds the model, not its DDP wrapper ("module." prefix).
    assert not any(k.startswith("module.") for k in ckpt["model"])
    with open(os.path.join(out, "metrics.json")) as f:
        iterations = [json.loads(line)["iteration"] for line in f if line.strip()]
    assert len(iterations) == len(set(iterations)), iterations  # one writer
    assert len(glob.glob(os.path.join(out, "events.out.tfevents.*"))) == 1
    assert len(glob.glob(os.path.join(out, "wandb", "offline-run-*"))) == 1


def test_evaluation_shards_the_images_and_reports_ap_once(two_processes, synthetic_dataset):
    out, log = two_processes
    # 8 val images: rank 0 infers on its 4, and the gathered results cover all 8.
    assert "Start inference on 4 batches" in log
    with open(os.path.join(out, "inference", "synthetic_val", "coco_instances_results.json")) as f:
        image_ids = {r["image_id"] for r in json.load(f)}
    with open(synthetic_dataset["val"]) as f:
        assert image_ids == {img["id"] for img in json.load(f)["images"]}
    assert log.count("Evaluation results for bbox") == 1
    assert log.count("copypaste: Task: segm") == 1
    with open(os.path.join(out, "metrics.json")) as f:
        assert sum("bbox/AP" in json.loads(line) for line in f if line.strip()) == 1


def test_a_launch_the_machine_cannot_run_is_a_one_line_error(synthetic_dataset, tmp_path, capsys):
    train_net = load_tool("train_net")
    argv = ["--config-file", CONFIG, *registrations(synthetic_dataset), *FAST,
            "OUTPUT_DIR", str(tmp_path / "out")]
    assert train_net.cli(["--num-gpus", "2"] + argv + ["MODEL.DEVICE", "cuda"]) == 2
    assert capsys.readouterr().err == (
        "train_net: error: --num-gpus 2 with MODEL.DEVICE cuda but 0 GPU(s) are visible\n")
    assert train_net.cli(["--num-gpus", "0"] + argv) == 2
    assert "--num-gpus and --num-machines must be >= 1" in capsys.readouterr().err
    assert train_net.cli(["--num-gpus", "2"] + argv + ["SOLVER.IMS_PER_BATCH", "3"]) == 2
    assert "IMS_PER_BATCH 3 (the total batch) must be a multiple of the 2 processes" in (
        capsys.readouterr().err)
    # Another run holds the port: say so instead of failing inside both workers.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        url = f"tcp://127.0.0.1:{busy.getsockname()[1]}"
        assert train_net.cli(["--num-gpus", "2", "--dist-url", url] + argv) == 2
    assert "the port is in use" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
