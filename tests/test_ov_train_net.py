"""Both open-vocabulary detectors train and evaluate through tools/train_net.py on synthetic
data, and tools/demo.py runs the trained model with a vocabulary from the command line."""
import glob
import json
import os

import pytest
from conftest import load_tool, run_tool

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
    return load_tool("demo").main([str(a) for a in argv])


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


# -- tools/demo.py in Detic's and detectron2's dialect -----------------------------------------

def _demo_args(trained, *extra, weights=True):
    out, _ = trained["mask_rcnn"]
    args = ["--config-file", CONFIGS["mask_rcnn"], "--confidence-threshold", "0.0", "--cpu"]
    if weights:
        args += ["--weights", os.path.join(out, "model_final.pth")]
    return args + list(extra)


def _val_images(synthetic_dataset, n=2):
    return sorted(glob.glob(os.path.join(synthetic_dataset["root"], "val", "*.png")))[:n]


def test_demo_detic_custom_vocabulary_equals_the_comma_list(trained, synthetic_dataset, capsys):
    image = _val_images(synthetic_dataset, 1)
    assert demo_main(_demo_args(trained, "--vocabulary", "custom", "--custom_vocabulary",
                                "circle,square,star", "--input", *image,
                                "--opts", "INPUT.MIN_SIZE_TEST", "80")) == 0
    custom = capsys.readouterr().out
    assert demo_main(_demo_args(trained, "--vocabulary", "circle,square,star", "--input", *image,
                                "--opts", "INPUT.MIN_SIZE_TEST", "80")) == 0
    assert capsys.readouterr().out == custom and "detections" in custom


def test_demo_custom_vocabulary_of_one_word_is_a_one_class_list():
    from zip_d2.engine.demo import vocabulary_spec
    from zip_d2.text import load_vocabulary

    assert [c["name"] for c in load_vocabulary(vocabulary_spec("custom", "zebra"))] == ["zebra"]
    assert vocabulary_spec(None, "zebra,horse") == "zebra,horse"
    # A mistyped file name is a missing file, never a class named after it.
    with pytest.raises(ValueError, match="does not exist"):
        load_vocabulary(vocabulary_spec("custom", "work/clases.txt"))


def test_demo_embeds_its_vocabulary_once(trained, monkeypatch):
    from detectron2.modeling import build_model

    from zip_d2.engine.demo import demo_cfg
    from zip_d2.modeling import vocabulary

    computed = []
    real = vocabulary.embeddings_for_names
    monkeypatch.setattr(vocabulary, "embeddings_for_names",
                        lambda cfg, names: computed.append(list(names)) or real(cfg, names))
    out, _ = trained["mask_rcnn"]
    cfg, names = demo_cfg(CONFIGS["mask_rcnn"], weights=os.path.join(out, "model_final.pth"),
                          vocabulary="zebra,horse", device="cpu")
    predictor = build_model(cfg).roi_heads.box_predictor
    assert names == ["zebra", "horse"] and predictor.test_class_names == names
    assert computed == [names]


@pytest.mark.parametrize("vocab, message", [
    (["--vocabulary", "custom"], "--vocabulary custom needs --custom_vocabulary"),
    (["--vocabulary", "coco", "--custom_vocabulary", "a,b"], "--custom_vocabulary goes with"),
], ids=["custom-without-list", "list-beside-coco"])
def test_demo_vocabulary_custom_without_its_list_is_an_error(trained, synthetic_dataset, tmp_path,
                                                             capsys, vocab, message):
    rc = demo_main(_demo_args(trained, *vocab, "--input", *_val_images(synthetic_dataset),
                              "--output", tmp_path / "o"))
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_demo_takes_model_weights_from_opts_and_needs_some_weights(trained, synthetic_dataset,
                                                                   capsys):
    out, _ = trained["mask_rcnn"]
    image = _val_images(synthetic_dataset, 1)
    rc = demo_main(_demo_args(trained, "--vocabulary", "circle,square", "--input", *image,
                              "--opts", "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"),
                              "INPUT.MIN_SIZE_TEST", "80", weights=False))
    assert rc == 0 and "detections" in capsys.readouterr().out
    rc = demo_main(_demo_args(trained, "--vocabulary", "circle,square", "--input", *image,
                              weights=False))
    assert rc == 2 and "no trained weights" in capsys.readouterr().err
    rc = demo_main(_demo_args(trained, "--vocabulary", "circle,square", "--input", *image,
                              "--opts", "MODEL.WEIGHTS", os.path.join(out, "missing.pth"),
                              weights=False))
    err = capsys.readouterr().err
    # A head line, then one line per missing model (here only the detector's weights).
    assert rc == 2 and "MODEL.WEIGHTS names the file" in err and err.count("\n") == 2


def test_demo_device_is_the_gpu_when_present_unless_cpu_is_asked(trained, monkeypatch):
    import torch

    from zip_d2.engine.demo import demo_cfg

    out, _ = trained["mask_rcnn"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    weights = os.path.join(out, "model_final.pth")
    gpu, _ = demo_cfg(CONFIGS["mask_rcnn"], weights=weights, vocabulary="a,b")
    cpu, _ = demo_cfg(CONFIGS["mask_rcnn"], weights=weights, vocabulary="a,b", device="cpu")
    assert (gpu.MODEL.DEVICE, cpu.MODEL.DEVICE) == ("cuda", "cpu")


def test_demo_input_globs_and_output_folder_file_or_none(trained, synthetic_dataset, tmp_path,
                                                         capsys):
    val = os.path.join(synthetic_dataset["root"], "val")
    every = sorted(os.path.basename(p) for p in glob.glob(os.path.join(val, "*.png")))
    opts = ["--opts", "INPUT.MIN_SIZE_TEST", "80"]
    # A quoted glob, into a folder that does not exist yet.
    assert demo_main(_demo_args(trained, "--vocabulary", "circle,square", "--input",
                                os.path.join(val, "*.png"), "--output", tmp_path / "dir",
                                *opts)) == 0
    assert sorted(os.listdir(tmp_path / "dir")) == every
    # One input, a file name.
    single = tmp_path / "one.jpg"
    assert demo_main(_demo_args(trained, "--vocabulary", "circle,", "--input",
                                os.path.join(val, every[0]), "--output", single, *opts)) == 0
    assert single.is_file()
    # No --output: detections printed, nothing written.
    capsys.readouterr()
    before = set(os.listdir(tmp_path))
    assert demo_main(_demo_args(trained, "--vocabulary", "circle,", "--input",
                                os.path.join(val, every[0]), *opts)) == 0
    assert set(os.listdir(tmp_path)) == before and "detections" in capsys.readouterr().out
    # Refused: a file for several inputs, a glob that matches nothing, an override in --input,
    # and an output that is an input.
    for bad, message in [
            (["--input", os.path.join(val, "*.png"), "--output", tmp_path / "x.png"],
             "one image file"),
            (["--input", os.path.join(val, "*.jpeg")], "no image"),
            (["--input", os.path.join(val, every[0]), "INPUT.MIN_SIZE_TEST", "80"],
             "looks like a config key"),
            (["--input", os.path.join(val, every[0]), "--output", os.path.join(val, every[0])],
             "is an input of this command")]:
        assert demo_main(_demo_args(trained, "--vocabulary", "circle,", *bad)) == 2, bad
        assert message in capsys.readouterr().err


def test_demo_runs_every_frame_of_a_video_and_writes_a_video(trained, synthetic_dataset,
                                                             tmp_path, capsys):
    import cv2

    frames = [cv2.imread(p) for p in _val_images(synthetic_dataset, 3)]
    height, width = frames[0].shape[:2]
    video = str(tmp_path / "shapes.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 4, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    rc = demo_main(_demo_args(trained, "--vocabulary", "circle,square,triangle", "--input", video,
                              "--output", tmp_path / "out", "--opts", "INPUT.MIN_SIZE_TEST", "80"))
    assert rc == 0
    assert "shapes.avi -> " in capsys.readouterr().out
    written = cv2.VideoCapture(str(tmp_path / "out" / "shapes.mp4"))
    assert written.get(cv2.CAP_PROP_FPS) == 4
    got = []
    while True:
        ok, frame = written.read()
        if not ok:
            break
        got.append(frame)
    # Drawn as the pseudo-label overlays are: enlarged for display, a legend below.
    from zip_d2.labels.visualize import display_factor

    assert len(got) == 3 and len({f.shape for f in got}) == 1
    assert got[0].shape[1] == width * display_factor(height, width) and got[0].shape[0] > height
