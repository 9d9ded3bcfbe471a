"""tools/train_net.py end to end on synthetic data: learning, resume, evaluation, W&B."""
import glob
import json
import os

import pytest
from conftest import run_tool

CONFIG = "configs/synthetic/mask_rcnn_R18_synthetic.yaml"
# Small enough for CI: 96x80 images, batch 4, a few dozen iterations.
FAST = ["INPUT.MIN_SIZE_TRAIN", "(80,)", "INPUT.MIN_SIZE_TEST", "80", "SOLVER.IMS_PER_BATCH", "4",
        "SOLVER.WARMUP_ITERS", "5", "SOLVER.STEPS", "()",
        "DATALOADER.NUM_WORKERS", "0", "ZIP.DATASETS.CHECK_IMAGE_SIZES", "False"]


def registrations(ds):
    return ["--register-dataset", "synthetic_train", ds["train"], os.path.join(ds["root"], "train"),
            "--register-dataset", "synthetic_val", ds["val"], os.path.join(ds["root"], "val")]


def metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def trained(synthetic_dataset, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("train"))
    res = run_tool("train_net.py", "--config-file", CONFIG, *registrations(synthetic_dataset),
                   *FAST, "SOLVER.MAX_ITER", "40", "SOLVER.CHECKPOINT_PERIOD", "20",
                   "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", out)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def test_training_lowers_the_loss_and_writes_checkpoints(trained):
    out, _ = trained
    logged = [m for m in metrics(out) if "total_loss" in m]
    assert len(logged) >= 2
    # The RPN's objectness loss falls fastest from scratch. The box losses can rise at first as
    # more proposals become foreground (half the sampled RoIs may be), so the total is not a
    # signal this early; the mask loss, computed on foreground RoIs only, has to fall.
    assert logged[-1]["loss_rpn_cls"] < 0.5 * logged[0]["loss_rpn_cls"], logged
    assert logged[-1]["loss_mask"] < logged[0]["loss_mask"], logged
    assert os.path.exists(os.path.join(out, "model_final.pth"))
    assert os.path.exists(os.path.join(out, "model_0000019.pth"))


def test_training_evaluates_box_and_mask_ap_at_the_end(trained):
    _, res = trained
    assert "Evaluation results for bbox" in res.stderr + res.stdout
    assert "Evaluation results for segm" in res.stderr + res.stdout


def test_resume_continues_from_the_last_checkpoint_iteration(trained, synthetic_dataset):
    out, _ = trained
    res = run_tool("train_net.py", "--config-file", CONFIG, "--resume",
                   *registrations(synthetic_dataset), *FAST, "SOLVER.MAX_ITER", "50",
                   "SOLVER.CHECKPOINT_PERIOD", "20", "TEST.EVAL_PERIOD", "0",
                   "ZIP.WANDB.ENABLED", "True", "ZIP.WANDB.MODE", "offline", "OUTPUT_DIR", out,
                   env={"WANDB_SILENT": "true"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Starting training from iteration 40" in res.stdout + res.stderr
    iters = [m["iteration"] for m in metrics(out) if "total_loss" in m]
    assert max(iters) == 49
    assert min(i for i in iters if i >= 40) > 40 - 1  # no iteration before 40 was rerun
    # W&B offline: a local run directory, no account or network needed.
    assert glob.glob(os.path.join(out, "wandb", "offline-run-*", "*.wandb"))


def test_eval_only_reports_class_aware_and_class_agnostic_ap(trained, synthetic_dataset):
    out, _ = trained
    res = run_tool("train_net.py", "--config-file", CONFIG, "--eval-only",
                   *registrations(synthetic_dataset), *FAST,
                   "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"),
                   "ZIP.EVAL.CLASS_AGNOSTIC", "True", "OUTPUT_DIR", out + "_eval")
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stderr + res.stdout
    for task in ("bbox", "segm", "bbox_agnostic", "segm_agnostic"):
        assert f"copypaste: Task: {task}" in log, task


def test_checkpoints_record_the_classes_and_eval_only_matches_them_by_name(
        trained, synthetic_dataset, tmp_path):
    from zip_d2.engine.class_names import checkpoint_class_names

    out, _ = trained
    with open(synthetic_dataset["train"]) as f:
        names = [c["name"] for c in sorted(json.load(f)["categories"], key=lambda c: c["id"])]
    assert checkpoint_class_names(os.path.join(out, "model_final.pth")) == names
    # The val file again, its category ids permuted (names kept): the same numbers.
    with open(synthetic_dataset["val"]) as f:
        data = json.load(f)
    new_id = {1: 3, 2: 1, 3: 4, 4: 2}
    for c in data["categories"]:
        c["id"] = new_id[c["id"]]
    for a in data["annotations"]:
        a["category_id"] = new_id[a["category_id"]]
    permuted = tmp_path / "val_permuted.json"
    permuted.write_text(json.dumps(data))
    res = run_tool("train_net.py", "--config-file", CONFIG, "--eval-only",
                   *registrations(synthetic_dataset), "--register-dataset", "synthetic_val_perm",
                   permuted, os.path.join(synthetic_dataset["root"], "val"), *FAST,
                   "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"),
                   "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                   "DATASETS.TEST", "('synthetic_val', 'synthetic_val_perm')",
                   "OUTPUT_DIR", tmp_path / "eval")
    assert res.returncode == 0, res.stderr[-3000:]
    record = metrics(tmp_path / "eval")[-1]
    for key in ("bbox/AP", "bbox/AP50", "segm/AP", "bbox/AP-circle", "bbox/AP-hexagon"):
        same, permuted = record[f"synthetic_val/{key}"], record[f"synthetic_val_perm/{key}"]
        assert permuted == pytest.approx(same, nan_ok=True), key
