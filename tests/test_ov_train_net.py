"""Both open-vocabulary detectors train and evaluate through tools/train_net.py on synthetic
data, and tools/demo.py runs the trained model with a vocabulary from the command line."""
import glob
import importlib.util
import json
import os

import pytest
from conftest import REPO, run_tool

CONFIGS = {
    "mask_rcnn": "configs/open_vocab/mask_rcnn_R18_ov_synthetic.yaml",
    "centernet2": "configs/open_vocab/centernet2_R18_ov_synthetic.yaml",
}
# A few iterations at 80 px: this checks the wiring end to end, not accuracy.
FAST = ["INPUT.MIN_SIZE_TRAIN", "(80,)", "INPUT.MIN_SIZE_TEST", "80", "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "()",
        "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "1000", "TEST.EVAL_PERIOD", "0",
        "DATALOADER.NUM_WORKERS", "0", "ZIP.DATASETS.CHECK_IMAGE_SIZES", "False",
        # Keep every detection so a barely trained model still gives COCOeval something to score.
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]


def demo_main(argv):
    """tools/demo.py's main(), run in this process (saves an interpreter start per call)."""
    spec = importlib.util.spec_from_file_location("demo", os.path.join(REPO, "tools", "demo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(a) for a in argv])


def registrations(ds):
    return ["--register-dataset", "synthetic_train", ds["train"], os.path.join(ds["root"], "train"),
            "--register-dataset", "synthetic_val", ds["val"], os.path.join(ds["root"], "val")]


@pytest.fixture(scope="module")
def trained(synthetic_dataset, tmp_path_factory):
    """{detector name: (output dir, CompletedProcess)}, each trained once for the module."""
    runs = {}
    for name, config in CONFIGS.items():
        out = str(tmp_path_factory.mktemp(f"ov_{name}"))
        res = run_tool("train_net.py", "--config-file", config,
                       *registrations(synthetic_dataset), *FAST, "OUTPUT_DIR", out)
        assert res.returncode == 0, res.stderr[-3000:]
        runs[name] = (out, res)
    return runs


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_detector_trains_and_evaluates_box_and_mask_ap(trained, name):
    out, res = trained[name]
    log = res.stdout + res.stderr
    assert "Evaluation results for bbox" in log and "Evaluation results for segm" in log
    assert os.path.exists(os.path.join(out, "model_final.pth"))
    with open(os.path.join(out, "metrics.json")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    losses = [r for r in records if "total_loss" in r]
    expected = {"mask_rcnn": "loss_cls", "centernet2": "loss_centernet_hm"}[name]
    assert losses and expected in losses[-1]
    # The evaluation scored the synthetic classes through the text-embedding classifier.
    ap = [r["bbox/AP"] for r in records if "bbox/AP" in r]
    assert ap and ap[-1] == ap[-1], "bbox AP is NaN: the model made no predictions"


def test_demo_runs_the_trained_model_with_a_command_line_vocabulary(
    trained, synthetic_dataset, tmp_path, capsys
):
    name = "mask_rcnn"
    out, _ = trained[name]
    val_images = sorted(glob.glob(os.path.join(synthetic_dataset["root"], "val", "*.png")))[:2]
    overlays = tmp_path / "overlays"
    # Six classes, two of them never trained on: the vocabulary needs no retraining.
    rc = demo_main(["--config-file", CONFIGS[name],
                    "--weights", os.path.join(out, "model_final.pth"),
                    "--vocabulary", "circle,square,triangle,hexagon,star,cross",
                    "--input", *val_images, "--output", overlays, "--confidence-threshold", "0.0",
                    "INPUT.MIN_SIZE_TEST", "80"])
    assert rc == 0
    written = sorted(os.listdir(overlays))
    assert written == sorted(os.path.basename(p) for p in val_images)
    assert capsys.readouterr().out.count("demo: ") == len(val_images)


def test_demo_refuses_embeddings_from_another_clip_model(
    trained, synthetic_dataset, tmp_path, capsys
):
    name = "mask_rcnn"
    out, _ = trained[name]
    import torch

    from zip_d2.text import TextEmbeddings

    path = str(tmp_path / "other.pth")
    TextEmbeddings(torch.randn(2, 32), ["a", "b"], "ViT-B-32", "openai").save(path)
    rc = demo_main(["--config-file", CONFIGS[name],
                    "--weights", os.path.join(out, "model_final.pth"), "--embeddings", path,
                    "--input", os.path.join(synthetic_dataset["root"], "val"),
                    "--output", tmp_path / "o"])
    assert rc == 2
    assert "ViT-B-32" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
