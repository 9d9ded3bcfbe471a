"""Training tools check every weight source in the launching process, before any worker or
round starts: MODEL.WEIGHTS (file, URL, detectron2:// model-zoo name) and the CLIP weights of
open-vocabulary heads that embed class names. One line, exit status 2, nothing launched."""
import os

import pytest
import torch
from conftest import load_tool

from zip_d2 import models
from zip_d2.config import SetupError, get_cfg
from zip_d2.data.simulate import write_simulated_pseudo_labels
from zip_d2.engine.setup import check_weights, required_weights
from zip_d2.text import TextEmbeddings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTHETIC = "configs/synthetic/mask_rcnn_R18_synthetic.yaml"
SYNTHETIC_OV = "configs/open_vocab/mask_rcnn_R18_ov_synthetic.yaml"
PROXY_VARS = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")


@pytest.fixture
def no_network(tmp_path, monkeypatch):
    """Every download host refuses (proxies at a closed local port), caches are empty."""
    import socket

    import huggingface_hub.constants

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    for var in PROXY_VARS:
        monkeypatch.setenv(var, f"http://127.0.0.1:{sock.getsockname()[1]}")
    monkeypatch.setenv("no_proxy", "")
    for var in ("ZIP_D2_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "fvcore"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(models, "_PROBED", {})
    yield tmp_path
    sock.close()


def _no_launch(*args, **kwargs):
    raise AssertionError("no worker may start when weights are missing")


def _train_net_error(argv, monkeypatch, capsys):
    tool = load_tool("train_net")
    monkeypatch.setattr("zip_d2.engine.train_net.launch", _no_launch)
    rc = tool.cli([str(a) for a in argv])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == "", captured.out[-2000:]
    err = captured.err.strip().splitlines()
    assert err[0].startswith("train_net: error: missing weights"), err
    assert len(err) == 2 and err[1].startswith("  "), err  # one line for the one missing model
    return "\n".join(err)


def _registered(ds, prefix):
    return ["--register-dataset", f"{prefix}_train", ds["train"], os.path.join(ds["root"], "train"),
            "--register-dataset", f"{prefix}_val", ds["val"], os.path.join(ds["root"], "val"),
            "DATASETS.TRAIN", f"('{prefix}_train',)", "DATASETS.TEST", f"('{prefix}_val',)"]


def test_missing_model_weights_file_stops_train_net_before_launch(
        synthetic_dataset, tmp_path, monkeypatch, capsys):
    missing = tmp_path / "round2" / "model_final.pth"
    line = _train_net_error(["--config-file", SYNTHETIC, *_registered(synthetic_dataset, "pf1"),
                             "MODEL.WEIGHTS", missing, "OUTPUT_DIR", tmp_path / "out"],
                            monkeypatch, capsys)
    assert f"MODEL.WEIGHTS names the file '{missing}', which does not exist" in line


def test_model_zoo_weights_without_network_stop_train_net_before_launch(
        synthetic_dataset, no_network, monkeypatch, capsys):
    line = _train_net_error(["--config-file", SYNTHETIC, *_registered(synthetic_dataset, "pf2"),
                             "MODEL.WEIGHTS", "detectron2://ImageNetPretrained/MSRA/R-50.pkl",
                             "OUTPUT_DIR", no_network / "out"], monkeypatch, capsys)
    assert "dl.fbaipublicfiles.com unreachable" in line
    assert ("detector: set MODEL.WEIGHTS to a local copy of https://dl.fbaipublicfiles.com/"
            "detectron2/ImageNetPretrained/MSRA/R-50.pkl") in line
    assert str(no_network / "fvcore") in line  # where detectron2 would look for it


def test_open_vocabulary_clip_weights_missing_stop_train_net_before_launch(
        synthetic_dataset, no_network, monkeypatch, capsys):
    line = _train_net_error(
        ["--config-file", SYNTHETIC_OV, *_registered(synthetic_dataset, "pf3"),
         "MODEL.ROI_BOX_HEAD.OPEN_VOCAB.RANDOM_WEIGHTS", "False",
         "MODEL.ROI_BOX_HEAD.OPEN_VOCAB.CLIP_MODEL", "ViT-B-16",
         "MODEL.ROI_BOX_HEAD.OPEN_VOCAB.CLIP_PRETRAINED", "openai",
         "OUTPUT_DIR", no_network / "out"], monkeypatch, capsys)
    assert "CLIP ViT-B/16: set MODEL.ROI_BOX_HEAD.OPEN_VOCAB.CLIP_PRETRAINED" in line


def _ov_cfg(tmp_path, **ov):
    cfg = get_cfg()
    cfg.merge_from_file(SYNTHETIC_OV)
    cfg.DATASETS.TRAIN = ()
    cfg.DATASETS.TEST = ()
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.RANDOM_WEIGHTS = False
    for k, v in ov.items():
        cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB[k] = v
    return cfg


def test_clip_weights_are_needed_only_when_some_embeddings_are_computed(tmp_path):
    path = str(tmp_path / "emb.pth")
    TextEmbeddings(torch.randn(4, 32), ["circle", "square", "triangle", "hexagon"],
                   "zip-tiny-vit", "constructed").save(path)
    assert required_weights(_ov_cfg(tmp_path, EMBEDDINGS=path)) == []
    swapped = required_weights(_ov_cfg(tmp_path, EMBEDDINGS=path, TEST_VOCABULARY="a,b"))
    assert [s.key for s in swapped] == ["MODEL.ROI_BOX_HEAD.OPEN_VOCAB.CLIP_PRETRAINED"]
    computed = _ov_cfg(tmp_path, VOCABULARY="circle,square,triangle,hexagon")
    assert [s.what for s in required_weights(computed)] == ["CLIP zip-tiny-vit"]
    # A config error the heads would meet is a one-line setup error too.
    with pytest.raises(SetupError, match="NUM_CLASSES"):
        check_weights(_ov_cfg(tmp_path, VOCABULARY="a,b,c"))


def test_resume_from_a_last_checkpoint_needs_no_model_weights(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(SYNTHETIC)
    cfg.MODEL.WEIGHTS = str(tmp_path / "gone.pth")
    cfg.OUTPUT_DIR = str(tmp_path)
    assert [s.key for s in required_weights(cfg, resume=True)] == ["MODEL.WEIGHTS"]
    (tmp_path / "last_checkpoint").write_text("model_0000019.pth")
    assert required_weights(cfg, resume=True) == []
    assert [s.key for s in required_weights(cfg, resume=False)] == ["MODEL.WEIGHTS"]


def test_self_train_stops_before_round_0_when_its_weights_are_missing(
        synthetic_dataset, no_network, capsys):
    labels = str(no_network / "sim.json")
    write_simulated_pseudo_labels(synthetic_dataset["train"], labels, seed=0)
    out = no_network / "run"
    rc = load_tool("self_train").main([
        "--config-file", "configs/self_train/mask_rcnn_R18_synthetic.yaml", "--labels", labels,
        "--image-root", os.path.join(synthetic_dataset["root"], "train"), "--output-dir",
        str(out), "--rounds", "1", "MODEL.WEIGHTS", "detectron2://ImageNetPretrained/MSRA/R-50.pkl"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 2, err
    assert err[0].startswith("self_train: error: missing weights") and "MODEL.WEIGHTS" in err[1]
    assert not (out / "round0").exists()


def test_self_train_from_a_given_checkpoint_does_not_need_round_0_weights(
        synthetic_dataset, no_network):
    from zip_d2.selftrain import SelfTrainingRun

    labels = str(no_network / "sim.json")
    write_simulated_pseudo_labels(synthetic_dataset["train"], labels, seed=0)
    given = no_network / "round0.pth"
    torch.save({"model": {}}, given)  # a checkpoint without recorded classes: matched by position
    run = SelfTrainingRun("configs/self_train/mask_rcnn_R18_synthetic.yaml", labels,
                          os.path.join(synthetic_dataset["root"], "train"),
                          str(no_network / "run"), rounds=1, weights=str(given),
                          opts=["MODEL.WEIGHTS", "detectron2://ImageNetPretrained/MSRA/R-50.pkl"])
    run.preflight()  # the ImageNet weights would only initialise round 0, not trained here


def test_a_missing_dataset_is_reported_as_such_not_as_a_vocabulary_problem(
        synthetic_dataset, tmp_path, monkeypatch, capsys):
    tool = load_tool("train_net")
    monkeypatch.setattr("zip_d2.engine.train_net.launch", _no_launch)
    missing = tmp_path / "gone.json"
    rc = tool.cli(["--config-file", SYNTHETIC_OV, "--register-dataset", "pf4_train", str(missing),
                   os.path.join(synthetic_dataset["root"], "train"),
                   "DATASETS.TRAIN", "('pf4_train',)", "DATASETS.TEST", "()",
                   "MODEL.ROI_BOX_HEAD.OPEN_VOCAB.RANDOM_WEIGHTS", "False",
                   "OUTPUT_DIR", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(missing) in err[0], err
