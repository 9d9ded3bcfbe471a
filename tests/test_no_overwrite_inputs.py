"""No tool writes over a file it reads, with or without --overwrite: each refuses in one line
(exit 2) and leaves its inputs as they were. One helper decides, for every tool."""
import json
import os

import numpy as np
import pytest
from conftest import REPO, load_tool
from PIL import Image

TINY = os.path.join(REPO, "configs", "pseudo", "tiny_random.yaml")
SYNTHETIC = os.path.join(REPO, "configs", "synthetic", "mask_rcnn_R18_synthetic.yaml")


def _refused(capsys, rc, fragment="is an input of this command"):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and fragment in lines[0], err


def _images(root, names):
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(
            os.path.join(root, name))
    return {name: open(os.path.join(root, name), "rb").read() for name in names}


def _coco(path, names):
    data = {"images": [{"id": i + 1, "file_name": n, "width": 32, "height": 24}
                       for i, n in enumerate(names)],
            "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    with open(path, "w") as f:
        json.dump(data, f)
    return open(path, "rb").read()


# --- the helper ------------------------------------------------------------------------------

def test_the_helper_compares_files_by_identity_not_by_name(tmp_path):
    from zip_d2.data.paths import OverwriteError, refuse_overwriting_inputs

    src = tmp_path / "labels.json"
    src.write_text("{}")
    os.link(src, tmp_path / "hard.json")
    os.symlink(src, tmp_path / "soft.json")
    for out in ("labels.json", "hard.json", "soft.json", "./sub/../labels.json"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(OverwriteError, match="--out .* is an input of this command") as e:
            refuse_overwriting_inputs({"--out": str(tmp_path / out)}, {"--gt": str(src)})
        assert "\n" not in str(e.value)
    # A new file, or another file in the input's folder, is fine.
    refuse_overwriting_inputs({"--out": str(tmp_path / "new.json")}, {"--gt": str(src)})
    (tmp_path / "other.json").write_text("{}")
    refuse_overwriting_inputs({"--out": str(tmp_path / "other.json")}, {"--gt": str(src)})


def test_the_helper_refuses_an_owned_output_folder_that_holds_an_input(tmp_path):
    from zip_d2.data.paths import OverwriteError, refuse_overwriting_inputs

    (tmp_path / "run" / "round1").mkdir(parents=True)
    labels = tmp_path / "run" / "round1" / "labels.json"
    labels.write_text("{}")
    with pytest.raises(OverwriteError, match="holds an input"):
        refuse_overwriting_inputs((), {"--labels": str(labels)},
                                  output_dirs={"--output-dir": str(tmp_path / "run")})
    refuse_overwriting_inputs((), {"--labels": str(labels)},
                              output_dirs={"--output-dir": str(tmp_path / "run2")})


# --- every tool ------------------------------------------------------------------------------

def test_generate_refuses_an_out_that_is_one_of_its_images_even_with_overwrite(tmp_path, capsys):
    root = str(tmp_path / "images")
    before = _images(root, ["a.png", "x.png"])
    main = load_tool("generate_pseudo_labels").main
    for extra in ([], ["--overwrite"]):
        rc = main(["--images", root, "--out", os.path.join(root, "x.png"), "--config", TINY,
                   "--no-progress", "--workers", "0", *extra])
        _refused(capsys, rc, "--out")
    assert open(os.path.join(root, "x.png"), "rb").read() == before["x.png"]
    assert not os.path.exists(os.path.join(root, "x.png.shards"))


def test_visualizer_refuses_an_out_dir_whose_overlay_names_are_its_frames(tmp_path, capsys):
    frames = ["00000001.jpg", "00000002.jpg"]  # video frames: the overlay names of ids 1, 2
    root = str(tmp_path / "frames")
    before = _images(root, frames)
    labels = str(tmp_path / "labels.json")
    _coco(labels, frames)
    rc = load_tool("visualize_pseudo_labels").main([labels, "--image-root", root, "--out-dir",
                                                    root])
    _refused(capsys, rc, "--out-dir")
    assert {n: open(os.path.join(root, n), "rb").read() for n in frames} == before
    assert sorted(os.listdir(root)) == frames
    # Another folder is fine.
    assert load_tool("visualize_pseudo_labels").main(
        [labels, "--image-root", root, "--out-dir", str(tmp_path / "vis")]) == 0


def test_eval_refuses_a_json_out_that_is_its_pred_or_gt(tmp_path, capsys):
    pred, gt = str(tmp_path / "pred.json"), str(tmp_path / "gt.json")
    before = {pred: _coco(pred, ["a.png"]), gt: _coco(gt, ["a.png"])}
    main = load_tool("eval_pseudo_labels").main
    for target in (pred, gt):
        _refused(capsys, main(["--pred", pred, "--gt", gt, "--json-out", target]), "--json-out")
    assert {p: open(p, "rb").read() for p in before} == before


def test_merge_refuses_an_out_that_is_one_of_its_shards(tmp_path, capsys):
    from test_labels_job_safety import _folder, _job

    from zip_d2.labels import shards

    out = str(tmp_path / "labels.json")
    _job(out, _folder(str(tmp_path / "images"), [0, 1]))
    shard = shards.shard_path(out + ".shards", 0, 1)
    before = open(shard, "rb").read()
    rc = load_tool("merge_pseudo_labels").main(["--out", shard, "--shards", out + ".shards",
                                                "--overwrite", "--no-validate"])
    _refused(capsys, rc, "--out")
    assert open(shard, "rb").read() == before


def test_label_subset_refuses_a_subset_file_that_is_its_source(tmp_path, capsys):
    source = str(tmp_path / "instances.json")
    before = _coco(source, ["a.png", "b.png"])
    out_dir = tmp_path / "subsets"
    out_dir.mkdir()
    os.symlink(source, out_dir / "instances_50pct_seed1.json")
    rc = load_tool("make_label_subset").main(["--coco-json", source, "--out-dir", str(out_dir),
                                              "--percents", "50"])
    _refused(capsys, rc, "--out-dir")
    assert open(source, "rb").read() == before and os.path.islink(
        out_dir / "instances_50pct_seed1.json")


@pytest.mark.parametrize("tool", ["simulate_pseudo_labels", "make_discovery_labels"])
def test_label_makers_refuse_an_out_that_is_their_gt(tmp_path, capsys, tool):
    gt = str(tmp_path / "gt.json")
    before = _coco(gt, ["a.png"])
    _refused(capsys, load_tool(tool).main(["--gt", gt, "--out", gt]), "--out")
    assert open(gt, "rb").read() == before


def test_ov_coco_splits_refuse_an_output_that_is_their_source(tmp_path, capsys):
    ann = tmp_path / "coco" / "annotations"
    ann.mkdir(parents=True)
    source = str(ann / "instances_val2017.json")
    before = _coco(source, ["a.jpg"])
    os.symlink(source, ann / "instances_val2017_ov_all.json")
    rc = load_tool("make_ov_coco_splits").main(["--root", str(tmp_path), "--splits", "val2017"])
    _refused(capsys, rc, "output")
    assert open(source, "rb").read() == before


def test_text_embeddings_refuse_an_out_that_is_the_vocabulary_file(tmp_path, capsys):
    vocabulary = tmp_path / "classes.txt"
    vocabulary.write_text("dog\ncat\n")
    rc = load_tool("dump_clip_text_embeddings").main(
        ["--vocabulary", str(vocabulary), "--out", str(vocabulary), "--random-weights"])
    _refused(capsys, rc, "--out")
    assert vocabulary.read_text() == "dog\ncat\n"


def test_demo_refuses_an_output_that_is_a_hard_link_to_its_input(tmp_path):
    from zip_d2.config import SetupError
    from zip_d2.engine.demo import DemoInputs, output_paths

    image = str(tmp_path / "a.png")
    _images(str(tmp_path), ["a.png"])
    os.link(image, tmp_path / "drawn.png")  # drawing into it would change the input's bytes
    with pytest.raises(SetupError, match="--output .* is an input of this command"):
        output_paths(str(tmp_path / "drawn.png"), DemoInputs(images=[image]))


def test_train_net_refuses_an_output_dir_whose_files_are_its_annotations(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    _images(str(tmp_path / "images"), ["a.png"])
    labels = str(out / "metrics.json")  # what training writes there
    before = _coco(labels, ["a.png"])
    rc = load_tool("train_net").cli(
        ["--config-file", SYNTHETIC, "--register-dataset", "d", labels, str(tmp_path / "images"),
         "DATASETS.TRAIN", "('d',)", "DATASETS.TEST", "()", "OUTPUT_DIR", str(out),
         "MODEL.DEVICE", "cpu"])
    _refused(capsys, rc, "OUTPUT_DIR")
    assert open(labels, "rb").read() == before


def test_self_train_refuses_labels_a_round_would_write_over(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "round1").mkdir(parents=True)
    _images(str(tmp_path / "images"), ["a.png"])
    labels = str(out / "round1" / "labels.json")  # round 1 writes its labels here
    before = _coco(labels, ["a.png"])
    rc = load_tool("self_train").main(
        ["--config-file", os.path.join(REPO, "configs", "self_train",
                                       "mask_rcnn_R18_synthetic.yaml"),
         "--labels", labels, "--image-root", str(tmp_path / "images"), "--output-dir", str(out),
         "--rounds", "1", "--overwrite"])
    # (Refused before too, as a folder --overwrite deletes; now as the file round 1 writes.)
    _refused(capsys, rc, f"--output-dir {labels} is an input of this command")
    assert open(labels, "rb").read() == before
