"""Common first-hour mistakes get one line that says what to do, never a traceback."""
import os

import pytest
from conftest import REPO, load_tool

from zip_d2.config import SetupError, setup_cfg
from zip_d2.data.coco_json import DatasetError, load_json
from zip_d2.models import (
    MissingWeightsError,
    checkpoint_weight_source,
    clip_weight_source,
    require_weights,
    unreadable_weights,
)

SYNTHETIC = os.path.join(REPO, "configs", "synthetic", "mask_rcnn_R18_synthetic.yaml")
SYNTHETIC_OV = os.path.join(REPO, "configs", "open_vocab", "mask_rcnn_R18_ov_synthetic.yaml")


def _train_net(argv, monkeypatch, capsys):
    tool = load_tool("train_net")

    def no_launch(*args, **kwargs):
        raise AssertionError("no worker may start")

    monkeypatch.setattr("zip_d2.engine.train_net.launch", no_launch)
    rc = tool.cli([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def test_a_mistyped_key_names_the_nearest_existing_keys():
    with pytest.raises(SetupError) as e:
        setup_cfg(SYNTHETIC, ["SOLVER.MAX_ITERS", "5"])
    assert "Non-existent key: SOLVER.MAX_ITERS" in str(e.value)
    assert "did you mean SOLVER.MAX_ITER" in str(e.value)
    with pytest.raises(SetupError) as e:
        setup_cfg(SYNTHETIC, ["MODEL.ROI_HEAD.NUM_CLASSES", "3"])
    assert "did you mean MODEL.ROI_HEADS.NUM_CLASSES" in str(e.value)


@pytest.mark.parametrize("opts", [["SOLVER.MAX_ITER", "5", "--eval-only"],
                                  ["SOLVER.MAX_ITER", "--resume"]])
def test_a_tool_flag_after_the_overrides_is_named_with_where_it_belongs(opts):
    with pytest.raises(SetupError) as e:
        setup_cfg(SYNTHETIC, opts)
    assert str(e.value).startswith(f"{opts[-1]} comes after the KEY VALUE config overrides")
    assert "move it before them" in str(e.value)


def test_generate_pseudo_labels_says_to_move_a_flag_placed_after_the_overrides(capsys):
    with pytest.raises(SystemExit) as e:
        load_tool("generate_pseudo_labels").parse_args(
            ["--images", "x", "--out", "y.json", "PSEUDO.SEED", "1", "--overwrite"])
    assert e.value.code == 2
    assert "--overwrite comes after the KEY VALUE config overrides" in capsys.readouterr().err


def test_train_net_without_a_config_file_asks_for_one(monkeypatch, capsys):
    rc, err = _train_net([], monkeypatch, capsys)
    assert rc == 2 and len(err) == 1 and "give --config-file" in err[0], err


def test_an_unknown_test_vocabulary_stops_train_net_before_any_work(monkeypatch, capsys,
                                                                     synthetic_dataset):
    rc, err = _train_net(
        ["--config-file", SYNTHETIC_OV,
         "--register-dataset", "nc_train", synthetic_dataset["train"],
         os.path.join(synthetic_dataset["root"], "train"),
         "DATASETS.TRAIN", "('nc_train',)", "DATASETS.TEST", "()",
         "MODEL.ROI_BOX_HEAD.OPEN_VOCAB.TEST_VOCABULARY", "zebra"], monkeypatch, capsys)
    assert rc == 2 and len(err) == 1, err
    assert "MODEL.ROI_BOX_HEAD.OPEN_VOCAB.TEST_VOCABULARY" in err[0] and "zebra" in err[0]


def test_an_unset_detectron2_datasets_is_named_when_a_path_became_slash_coco(monkeypatch):
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    path = "/coco/annotations/instances_train2017.json"
    with pytest.raises(DatasetError) as e:
        load_json(path)
    assert "$DETECTRON2_DATASETS is not set" in str(e.value)
    assert "export DETECTRON2_DATASETS=" in str(e.value)
    monkeypatch.setenv("DETECTRON2_DATASETS", "/data")
    with pytest.raises(DatasetError) as e:
        load_json(path)
    assert "DETECTRON2_DATASETS" not in str(e.value)


def test_empty_truncated_and_corrupt_weight_files_are_named_in_one_line_each(tmp_path):
    import torch

    good = tmp_path / "good.pth"
    torch.save({"model": {"w": torch.zeros(1000)}}, good)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:1500])
    corrupt = tmp_path / "clip.safetensors"
    corrupt.write_bytes(b"abc")
    assert unreadable_weights(str(good)) == ""
    assert unreadable_weights(str(empty)) == "it is empty"
    assert "BadZipFile" in unreadable_weights(str(truncated))
    assert "header too small" in unreadable_weights(str(corrupt))
    with pytest.raises(MissingWeightsError) as e:
        require_weights([checkpoint_weight_source(str(good)),
                         checkpoint_weight_source(str(empty)),
                         checkpoint_weight_source(str(truncated)),
                         clip_weight_source("ViT-B-16", str(corrupt),
                                            key="PSEUDO.CLIP.PRETRAINED")])
    lines = str(e.value).splitlines()
    assert len(lines) == 4, lines  # a head line, one line per bad file; the good one passes
    for line, path in zip(lines[1:], (empty, truncated, corrupt)):
        assert f"file {path} is not a usable checkpoint" in line


def test_train_net_names_a_truncated_model_weights_file(tmp_path, monkeypatch, capsys,
                                                        synthetic_dataset):
    bad = tmp_path / "model_final.pth"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    rc, err = _train_net(
        ["--config-file", SYNTHETIC, "--eval-only",
         "--register-dataset", "nc_val", synthetic_dataset["val"],
         os.path.join(synthetic_dataset["root"], "val"), "DATASETS.TEST", "('nc_val',)",
         "MODEL.WEIGHTS", bad, "OUTPUT_DIR", tmp_path / "out"], monkeypatch, capsys)
    assert rc == 2 and len(err) == 2, err
    assert f"MODEL.WEIGHTS file {bad} is not a usable checkpoint" in err[1]


def test_help_imports_no_torch_on_any_tool():
    import glob
    import subprocess
    import sys

    tools = sorted(p for pattern in ("*.py", os.path.join("bench", "*.py"))
                   for p in glob.glob(os.path.join(REPO, "tools", pattern)))
    assert len(tools) >= 24
    # One interpreter runs every tool's --help in turn; once torch is in sys.modules it stays,
    # so the first tool that imports it is the one named.
    code = """
import io, runpy, sys, contextlib
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as e:
            code = e.code
    print(path, code, "usage:" in out.getvalue(), "torch" in sys.modules,
          "detectron2" in sys.modules, file=sys.stderr)
"""
    proc = subprocess.run([sys.executable, "-c", code, *tools], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    rows = [line.split() for line in proc.stderr.splitlines() if line.startswith(REPO)]
    assert [r[0] for r in rows] == tools, proc.stderr[-2000:]
    for path, rc, usage, torch_loaded, d2_loaded in rows:
        assert (rc, usage) == ("0", "True"), path
        assert (torch_loaded, d2_loaded) == ("False", "False"), f"{path} --help imports torch"


def test_a_python_without_zip_d2_gets_told_to_activate_the_venv():
    import subprocess
    import sys

    # -I -S: no site-packages, no PYTHONPATH: the situation of the system's Python.
    proc = subprocess.run([sys.executable, "-I", "-S", "tools/make_synthetic_dataset.py",
                           "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "No module named" in proc.stderr and "source .venv/bin/activate" in proc.stderr
    # zip_d2 on PYTHONPATH but not its packages (torch, detectron2): the same one line.
    proc = subprocess.run([sys.executable, "-S", "tools/train_net.py", "--help"], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1, proc.stderr
    assert "No module named 'torch'" in proc.stderr and "source .venv/bin/activate" in proc.stderr


def test_building_sam_or_clip_from_an_unusable_file_names_the_file(tmp_path):
    from zip_d2.models import create_clip, create_sam

    empty = tmp_path / "sam_vit_b.pth"
    empty.write_bytes(b"")
    with pytest.raises(MissingWeightsError, match=f"file {empty} is not a usable checkpoint"):
        create_sam("vit_b", checkpoint=str(empty))
    corrupt = tmp_path / "clip.safetensors"
    corrupt.write_bytes(b"abc")
    with pytest.raises(MissingWeightsError, match="header too small"):
        create_clip("ViT-B-16", str(corrupt))
