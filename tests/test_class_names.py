"""A model's classes meet a dataset's by name, not by index: evaluation, self-training
predictions and the demo (zip_d2.engine.class_names)."""
import json
import os

import numpy as np
import pytest
import torch
from conftest import load_tool
from pycocotools import mask as mask_util
from torch import nn

from detectron2.structures import Boxes, BoxMode, Instances

from zip_d2.config import SetupError, setup_cfg
from zip_d2.data.register import register_coco_json
from zip_d2.data.rle import segmentation_to_rle
from zip_d2.engine import Trainer
from zip_d2.engine.class_names import CHECKPOINT_KEY, checkpoint_class_names, match_names
from zip_d2.engine.demo import demo_cfg

CONFIG = "configs/synthetic/mask_rcnn_R18_synthetic.yaml"
SMALL = ["INPUT.MIN_SIZE_TEST", "80", "DATALOADER.NUM_WORKERS", "0"]


def _write(data, path):
    with open(path, "w") as f:
        json.dump(data, f)
    return str(path)


def _with_category_ids(val_json, new_id, out):
    """A copy of ``val_json`` whose category ids are ``new_id[old]`` (names kept), the
    category list in the new id order."""
    with open(val_json) as f:
        data = json.load(f)
    for c in data["categories"]:
        c["id"] = new_id[c["id"]]
    data["categories"].sort(key=lambda c: c["id"])
    for a in data["annotations"]:
        a["category_id"] = new_id[a["category_id"]]
    return _write(data, out)


class GroundTruthModel(nn.Module):
    """A stand-in detector: for each image, its ground truth from ``gt_json`` as detections,
    with class indices in the order of ``gt_json``'s categories (the "training" order). Scores
    fall with the annotation's position so that the ranking is not a tie."""

    def __init__(self, gt_json):
        super().__init__()
        with open(gt_json) as f:
            data = json.load(f)
        index = {c["id"]: i for i, c in enumerate(sorted(data["categories"],
                                                          key=lambda c: c["id"]))}
        by_name = {img["file_name"]: img["id"] for img in data["images"]}
        self.anns = {name: [a for a in data["annotations"] if a["image_id"] == image_id]
                     for name, image_id in by_name.items()}
        self.index = index

    def forward(self, inputs):
        outputs = []
        for inp in inputs:
            h, w = inp["height"], inp["width"]
            anns = self.anns[os.path.basename(inp["file_name"])]
            out = Instances((h, w))
            out.pred_boxes = Boxes(torch.tensor(
                [BoxMode.convert(a["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for a in anns],
                dtype=torch.float32).reshape(-1, 4))
            out.scores = torch.linspace(1.0, 0.5, len(anns))
            out.pred_classes = torch.tensor([self.index[a["category_id"]] for a in anns],
                                            dtype=torch.long)
            masks = [mask_util.decode(segmentation_to_rle(a["segmentation"], h, w)) for a in anns]
            out.pred_masks = torch.tensor(np.array(masks), dtype=torch.bool).reshape(-1, h, w)
            outputs.append({"instances": out})
        return outputs


@pytest.fixture(scope="module")
def val_files(synthetic_dataset, tmp_path_factory):
    """The synthetic val set registered as is, with permuted category ids, and with a class
    more; and its training set (whose class order the stand-in model predicts in)."""
    tmp = tmp_path_factory.mktemp("class_names")
    val, root = synthetic_dataset["val"], os.path.join(synthetic_dataset["root"], "val")
    permuted = _with_category_ids(val, {1: 3, 2: 1, 3: 4, 4: 2}, tmp / "val_permuted.json")
    with open(val) as f:
        data = json.load(f)
    data["categories"].append({"id": 5, "name": "star", "supercategory": "shape"})
    extra = _write(data, tmp / "val_star.json")
    register_coco_json("cn_train", synthetic_dataset["train"],
                       os.path.join(synthetic_dataset["root"], "train"))
    for name, path in (("cn_val", val), ("cn_val_permuted", permuted), ("cn_val_star", extra)):
        register_coco_json(name, path, root)
    return {"val": val, "permuted": permuted, "star": extra, "root": root, "tmp": tmp}


def _cfg(tests, tmp, train=("cn_train",)):
    return setup_cfg(CONFIG, SMALL + ["DATASETS.TRAIN", str(tuple(train)),
                                      "DATASETS.TEST", str(tuple(tests)),
                                      "OUTPUT_DIR", str(tmp / "out")])


def test_permuted_category_ids_with_the_same_names_give_the_same_ap(val_files):
    cfg = _cfg(("cn_val", "cn_val_permuted"), val_files["tmp"])
    results = Trainer.test(cfg, GroundTruthModel(val_files["val"]))
    for task in ("bbox", "segm"):
        same, permuted = results["cn_val"][task], results["cn_val_permuted"][task]
        # The stand-in predicts the ground truth itself: a perfect score on both files.
        assert same["AP"] == pytest.approx(100.0) and same["AP50"] == pytest.approx(100.0)
        assert permuted == pytest.approx(same, nan_ok=True), task


def test_the_model_classes_can_come_from_its_checkpoint_instead_of_the_training_set(val_files):
    cfg = _cfg(("cn_val_permuted",), val_files["tmp"], train=())
    with open(val_files["val"]) as f:
        names = [c["name"] for c in sorted(json.load(f)["categories"], key=lambda c: c["id"])]
    results = Trainer.test(cfg, GroundTruthModel(val_files["val"]), class_names=names)
    assert results["bbox"]["AP"] == pytest.approx(100.0)


def test_a_test_set_class_the_model_never_learned_is_refused_in_one_line(val_files):
    cfg = _cfg(("cn_val_star",), val_files["tmp"])
    with pytest.raises(SetupError) as e:
        Trainer.test(cfg, GroundTruthModel(val_files["val"]))
    message = str(e.value)
    assert "\n" not in message and "['star']" in message and "cn_val_star" in message
    assert "circle" in message  # the model's list, to compare


def test_model_classes_missing_from_the_dataset_are_dropped_not_renamed():
    # Model: a, b, c; dataset: c, a. Class b has nowhere to go.
    assert match_names(["a", "b", "c"], ["c", "a"], "model", "data") == [1, -1, 0]
    with pytest.raises(SetupError, match=r"\['d'\]"):
        match_names(["a", "b", "c"], ["c", "d"], "model", "data")
    with pytest.raises(SetupError, match="more than once"):
        match_names(["a", "a"], ["a"], "model", "data")
    # Weights without recorded names: by position, and only with as many classes.
    assert match_names(None, ["x", "y"], "w.pkl", "data", num_classes=2) == [0, 1]
    with pytest.raises(SetupError, match="records no class names"):
        match_names(None, ["x", "y", "z"], "w.pkl", "data", num_classes=2)


def _train_net_cli(argv, monkeypatch):
    tool = load_tool("train_net")

    def no_launch(*args, **kwargs):
        raise AssertionError("refused before any worker starts")

    monkeypatch.setattr("zip_d2.engine.train_net.launch", no_launch)
    return tool.cli([str(a) for a in argv])


def _checkpoint(path, names):
    """A checkpoint as zip_d2's trainer writes it: weights and the recorded class names."""
    from detectron2.modeling import build_model

    cfg = setup_cfg(CONFIG, ["MODEL.ROI_HEADS.NUM_CLASSES", str(len(names))])
    torch.save({"model": build_model(cfg).state_dict(), CHECKPOINT_KEY: list(names),
                "iteration": 0}, path)
    return str(path)


def test_eval_only_refuses_a_val_file_with_a_class_the_checkpoint_lacks(
        val_files, synthetic_dataset, monkeypatch, capsys, tmp_path):
    # A model trained without "circle" (3 classes) meets the 4-class val file.
    weights = _checkpoint(tmp_path / "no_circle.pth", ["square", "triangle", "hexagon"])
    rc = _train_net_cli(["--config-file", CONFIG, "--eval-only",
                         "--register-dataset", "cn_val", val_files["val"], val_files["root"],
                         "DATASETS.TEST", "('cn_val',)", "MODEL.ROI_HEADS.NUM_CLASSES", "3",
                         "MODEL.WEIGHTS", weights, "OUTPUT_DIR", tmp_path / "eval"], monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("train_net: error: dataset 'cn_val'") and "['circle']" in err[0]
    assert weights in err[0]
    assert not (tmp_path / "eval").exists()


def test_eval_only_refuses_num_classes_other_than_the_checkpoint_records(
        val_files, monkeypatch, capsys, tmp_path):
    weights = _checkpoint(tmp_path / "four.pth", ["circle", "square", "triangle", "hexagon"])
    rc = _train_net_cli(["--config-file", CONFIG, "--eval-only",
                         "--register-dataset", "cn_val", val_files["val"], val_files["root"],
                         "DATASETS.TEST", "('cn_val',)", "MODEL.ROI_HEADS.NUM_CLASSES", "5",
                         "MODEL.WEIGHTS", weights, "OUTPUT_DIR", tmp_path / "eval"], monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "MODEL.ROI_HEADS.NUM_CLASSES 4" in err[0], err


def test_training_refuses_a_test_set_with_a_class_it_will_not_learn(
        val_files, synthetic_dataset, monkeypatch, capsys, tmp_path):
    rc = _train_net_cli(["--config-file", CONFIG,
                         "--register-dataset", "cn_train", synthetic_dataset["train"],
                         os.path.join(synthetic_dataset["root"], "train"),
                         "--register-dataset", "cn_val_star", val_files["star"],
                         val_files["root"], "DATASETS.TRAIN", "('cn_train',)",
                         "DATASETS.TEST", "('cn_val_star',)", "OUTPUT_DIR", tmp_path / "t"],
                        monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "['star']" in err[0], err
    assert not (tmp_path / "t").exists()


def test_demo_of_a_closed_set_model_shows_its_recorded_classes_and_refuses_others(tmp_path):
    weights = _checkpoint(tmp_path / "m.pth", ["circle", "square", "triangle", "hexagon"])
    cfg, names = demo_cfg(CONFIG, weights=weights, device="cpu")
    assert names == ["circle", "square", "triangle", "hexagon"]
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 4
    # A vocabulary chooses among the model's classes by name, in any order.
    _, names = demo_cfg(CONFIG, weights=weights, vocabulary="hexagon,circle", device="cpu")
    assert names == ["hexagon", "circle"]
    with pytest.raises(SetupError, match=r"\['star'\]"):
        demo_cfg(CONFIG, weights=weights, vocabulary="circle,star", device="cpu")
    assert checkpoint_class_names(weights) == ["circle", "square", "triangle", "hexagon"]


def test_a_box_only_test_set_of_a_mask_model_is_scored_on_boxes(val_files):
    with open(val_files["val"]) as f:
        data = json.load(f)
    for ann in data["annotations"]:
        del ann["segmentation"]
    register_coco_json("cn_val_boxes", _write(data, val_files["tmp"] / "val_boxes.json"),
                       val_files["root"])
    cfg = _cfg(("cn_val_boxes",), val_files["tmp"])
    assert cfg.MODEL.MASK_ON
    results = Trainer.test(cfg, GroundTruthModel(val_files["val"]))
    assert set(results) == {"bbox"} and results["bbox"]["AP"] == pytest.approx(100.0)
