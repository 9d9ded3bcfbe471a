"""Training refuses, in one line with exit status 2 and before any worker starts, what
detectron2 would otherwise crash on mid-run (or train wrongly at exit 0): more categories than
NUM_CLASSES, a mask model on box-only labels, --resume after the architecture or the classes
changed, a step at MAX_ITER, a truncated image; and self_train the same for its labels, a file
as --output-dir, and a refused run leaves nothing that blocks the corrected command."""
import hashlib
import json
import os
import shutil

import pytest
import torch
from conftest import load_tool

from zip_d2.config import setup_cfg
from zip_d2.data.simulate import write_simulated_pseudo_labels
from zip_d2.engine.class_names import CHECKPOINT_KEY

CONFIG = "configs/synthetic/mask_rcnn_R18_synthetic.yaml"
SELF_TRAIN = "configs/self_train/mask_rcnn_R18_synthetic.yaml"
NAMES = ["circle", "square", "triangle", "hexagon"]


def _no_launch(*args, **kwargs):
    raise AssertionError("refused before any worker starts")


def _refused(tool_name, argv, monkeypatch, capsys):
    """The tool's one-line error (asserting exit status 2, nothing launched)."""
    tool = load_tool(tool_name)
    library = {"train_net": "zip_d2.engine.train_net", "self_train": "zip_d2.selftrain.launch"}
    monkeypatch.setattr(f"{library[tool_name]}.launch", _no_launch)
    entry = tool.cli if tool_name == "train_net" else tool.main
    rc = entry([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"{tool_name}: error: "), err
    return err[0]


def _train_args(train_json, image_root, out, *opts):
    # Registrations last for the process: one name per pair of files.
    name = "tr_" + hashlib.sha1(f"{train_json} {image_root}".encode()).hexdigest()[:8]
    return ["--config-file", CONFIG, "--register-dataset", name, train_json, image_root,
            "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()", "SOLVER.STEPS", "()",
            "OUTPUT_DIR", out, *opts]


@pytest.fixture
def train_set(synthetic_dataset):
    return synthetic_dataset["train"], os.path.join(synthetic_dataset["root"], "train")


def _edited(train_json, tmp_path, edit):
    with open(train_json) as f:
        data = json.load(f)
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_more_categories_than_num_classes_is_refused(train_set, tmp_path, monkeypatch, capsys):
    err = _refused("train_net", _train_args(*train_set, tmp_path / "out",
                                            "MODEL.ROI_HEADS.NUM_CLASSES", "3"),
                   monkeypatch, capsys)
    assert "4 classes" in err and "MODEL.ROI_HEADS.NUM_CLASSES 4" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("how", ["null", "absent"])
def test_a_mask_model_refuses_annotations_without_masks(train_set, tmp_path, monkeypatch,
                                                        capsys, how):
    def strip(data):
        for ann in data["annotations"][:3]:
            if how == "null":
                ann["segmentation"] = None
            else:
                del ann["segmentation"]

    labels = _edited(train_set[0], tmp_path, strip)
    err = _refused("train_net", _train_args(labels, train_set[1], tmp_path / "out"),
                   monkeypatch, capsys)
    assert labels in err and "segmentation" in err and "MODEL.MASK_ON False" in err


def test_a_step_at_max_iter_is_refused(train_set, tmp_path, monkeypatch, capsys):
    err = _refused("train_net", _train_args(*train_set, tmp_path / "out", "SOLVER.MAX_ITER", "40",
                                            "SOLVER.STEPS", "(40,)"), monkeypatch, capsys)
    assert "SOLVER.STEPS" in err and "SOLVER.MAX_ITER 40" in err


def test_a_truncated_image_is_refused_before_training(train_set, tmp_path, monkeypatch, capsys):
    root = tmp_path / "images"
    shutil.copytree(train_set[1], root)
    with open(train_set[0]) as f:
        victim = root / json.load(f)["images"][2]["file_name"]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # the header (and so the size) is intact
    err = _refused("train_net", _train_args(train_set[0], root, tmp_path / "out"),
                   monkeypatch, capsys)
    assert str(victim) in err and "truncated" in err


def _resumable(out, cfg_opts, names=NAMES, iteration=9):
    """OUTPUT_DIR ``out`` as a run of ``cfg_opts`` left it after ``iteration``: a checkpoint
    of that model recording ``names``, tagged as the last one."""
    from detectron2.modeling import build_model

    os.makedirs(out, exist_ok=True)
    model = build_model(setup_cfg(CONFIG, list(cfg_opts)))
    name = f"model_{iteration:07d}.pth"
    torch.save({"model": model.state_dict(), CHECKPOINT_KEY: list(names),
                "iteration": iteration}, os.path.join(out, name))
    with open(os.path.join(out, "last_checkpoint"), "w") as f:
        f.write(name)


def test_resume_after_changing_the_architecture_is_refused(train_set, tmp_path, monkeypatch,
                                                           capsys):
    out = tmp_path / "out"
    _resumable(out, ["MODEL.FPN.OUT_CHANNELS", "32"])
    err = _refused("train_net", ["--resume"] + _train_args(*train_set, out), monkeypatch, capsys)
    assert "--resume" in err and "another architecture" in err and "model_0000009.pth" in err


def test_resume_after_changing_the_classes_is_refused(train_set, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    _resumable(out, [], names=["circle", "square", "triangle", "star"])
    err = _refused("train_net", ["--resume"] + _train_args(*train_set, out), monkeypatch, capsys)
    assert "--resume" in err and "star" in err and "new OUTPUT_DIR" in err


def test_resume_after_changing_num_classes_is_refused(train_set, tmp_path, monkeypatch, capsys):
    # A checkpoint that records no class names (an older zip_d2): the shapes tell.
    out = tmp_path / "out"
    _resumable(out, ["MODEL.ROI_HEADS.NUM_CLASSES", "5"], names=NAMES)
    checkpoint = torch.load(out / "model_0000009.pth", weights_only=False)
    del checkpoint[CHECKPOINT_KEY]
    torch.save(checkpoint, out / "model_0000009.pth")
    err = _refused("train_net", ["--resume"] + _train_args(*train_set, out), monkeypatch, capsys)
    assert "another architecture or NUM_CLASSES" in err and "box_predictor" in err


def _self_train_args(labels, image_root, out, *more):
    return ["--config-file", SELF_TRAIN, "--labels", labels, "--image-root", image_root,
            "--output-dir", out, "--rounds", "1", *more]


def test_self_train_refuses_labels_whose_classes_differ_from_the_config_and_leaves_nothing(
        train_set, tmp_path, monkeypatch, capsys):
    # Class-agnostic pseudo-labels (one class "object") with the 4-class config.
    def agnostic(data):
        data["categories"] = [{"id": 1, "name": "object"}]
        for ann in data["annotations"]:
            ann["category_id"] = 1

    labels = _edited(train_set[0], tmp_path, agnostic)
    out = tmp_path / "run"
    err = _refused("self_train", _self_train_args(labels, train_set[1], out), monkeypatch, capsys)
    assert "MODEL.ROI_HEADS.NUM_CLASSES 1" in err
    assert not out.exists()


def test_self_train_refuses_a_checkpoint_trained_on_other_classes(train_set, tmp_path,
                                                                  monkeypatch, capsys):
    labels = str(tmp_path / "sim.json")
    write_simulated_pseudo_labels(train_set[0], labels, seed=0)
    _resumable(tmp_path / "given", [], names=["circle", "square", "triangle", "star"])
    weights = tmp_path / "given" / "model_0000009.pth"
    err = _refused("self_train", _self_train_args(labels, train_set[1], tmp_path / "run",
                                                  "--weights", weights), monkeypatch, capsys)
    assert "['hexagon']" in err and str(weights) in err
    assert not (tmp_path / "run").exists()


def test_self_train_output_dir_that_is_a_file_is_refused(train_set, tmp_path, monkeypatch,
                                                         capsys):
    labels = str(tmp_path / "sim.json")
    write_simulated_pseudo_labels(train_set[0], labels, seed=0)
    occupied = tmp_path / "notes.txt"
    occupied.write_text("mine")
    err = _refused("self_train", _self_train_args(labels, train_set[1], occupied),
                   monkeypatch, capsys)
    assert str(occupied) in err and "is a file" in err
    assert occupied.read_text() == "mine"


def test_a_refused_self_train_run_does_not_block_the_corrected_command(train_set, tmp_path):
    from zip_d2.selftrain import SelfTrainingRun

    labels = str(tmp_path / "sim.json")
    write_simulated_pseudo_labels(train_set[0], labels, seed=0)
    out = tmp_path / "run"
    # What a run refused inside its workers leaves: its record and round 0's log, no work.
    os.makedirs(out / "round0")
    (out / "round0" / "log.txt").write_text("refused\n")
    wrong = SelfTrainingRun(SELF_TRAIN, labels, train_set[1], str(out), rounds=1,
                            opts=["SOLVER.MAX_ITER", "240"])
    wrong._start_summary()
    assert (out / "self_train.json").is_file()
    # The corrected command (other overrides) is accepted without --overwrite ...
    SelfTrainingRun(SELF_TRAIN, labels, train_set[1], str(out), rounds=1,
                    opts=["SOLVER.MAX_ITER", "200"])
    # ... but a run that did work still binds its directory.
    (out / "round0" / "model_0000049.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="other inputs"):
        SelfTrainingRun(SELF_TRAIN, labels, train_set[1], str(out), rounds=1,
                        opts=["SOLVER.MAX_ITER", "200"])
