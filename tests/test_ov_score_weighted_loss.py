"""Scored pseudo-labels: ``score`` reaches Instances, and can weight the classification loss."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from detectron2.data import transforms as T
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.events import EventStorage

from zip_d2.data.mapper import ScoredDatasetMapper
from zip_d2.modeling import OpenVocabOutputLayers
from zip_d2.text import TextEmbeddings


def test_mapper_keeps_each_annotation_score_aligned_after_empty_boxes_are_dropped(tmp_path):
    import cv2

    image_path = str(tmp_path / "img.png")
    cv2.imwrite(image_path, np.zeros((32, 48, 3), np.uint8))
    annotations = [
        {"bbox": [2, 2, 10, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "score": 0.9},
        # Zero-width: detectron2 filters it out, its score must go with it.
        {"bbox": [20, 5, 0, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1, "score": 0.1},
        {"bbox": [30, 4, 12, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 2, "score": 0.4},
        {"bbox": [5, 20, 8, 8], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1},  # unscored
    ]
    mapper = ScoredDatasetMapper(
        is_train=True, augmentations=[T.NoOpTransform()], image_format="BGR"
    )
    out = mapper({"file_name": image_path, "height": 32, "width": 48, "annotations": annotations})
    inst = out["instances"]
    assert inst.gt_classes.tolist() == [0, 2, 1]
    torch.testing.assert_close(inst.gt_scores, torch.tensor([0.9, 0.4, 1.0]))


def _predictor(weighted):
    gen = torch.Generator().manual_seed(0)
    emb = TextEmbeddings(torch.randn(3, 8, generator=gen), ["a", "b", "c"], "m", "constructed")
    return OpenVocabOutputLayers(
        ShapeSpec(channels=16),
        box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)),
        train_embeddings=emb,
        clip_model="m",
        score_weighted_loss=weighted,
    )


def _proposals(gt_classes, gt_scores=None):
    n = len(gt_classes)
    inst = Instances((64, 64))
    boxes = torch.tensor([[4.0, 4.0, 30.0, 30.0]]).repeat(n, 1)
    inst.proposal_boxes = Boxes(boxes)
    inst.gt_boxes = Boxes(boxes + 1)
    inst.gt_classes = torch.tensor(gt_classes)
    if gt_scores is not None:
        inst.gt_scores = torch.tensor(gt_scores)
    return [inst]


def test_score_weighted_loss_weights_foreground_by_score_and_background_by_one():
    torch.manual_seed(0)
    predictor = _predictor(weighted=True)
    x = torch.randn(4, 16)
    classes = [0, 2, 3, 3]  # two foreground RoIs, two background (label 3 = C)
    scores = [0.5, 0.25, 0.0, 0.0]  # background RoIs' matched scores must be ignored
    with EventStorage():
        logits, deltas = predictor(x)
        loss = predictor.losses((logits, deltas), _proposals(classes, scores))["loss_cls"]
        unweighted = _predictor(weighted=False)
        unweighted.load_state_dict(predictor.state_dict())
        plain = unweighted.losses(unweighted(x), _proposals(classes, scores))["loss_cls"]
    per_roi = F.cross_entropy(logits, torch.tensor(classes), reduction="none")
    expected = (per_roi * torch.tensor([0.5, 0.25, 1.0, 1.0])).sum() / 4
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(plain, per_roi.mean())
    assert loss < plain


def test_score_weighted_loss_with_unit_scores_equals_standard_loss():
    torch.manual_seed(0)
    predictor = _predictor(weighted=True)
    x = torch.randn(5, 16)
    with EventStorage():
        preds = predictor(x)
        weighted = predictor.losses(preds, _proposals([0, 1, 2, 3, 1], [1.0] * 5))
        predictor.score_weighted_loss = False
        plain = predictor.losses(preds, _proposals([0, 1, 2, 3, 1], [1.0] * 5))
    torch.testing.assert_close(weighted["loss_cls"], plain["loss_cls"])
    torch.testing.assert_close(weighted["loss_box_reg"], plain["loss_box_reg"])


def test_score_weighted_loss_without_scores_is_an_error():
    predictor = _predictor(weighted=True)
    with EventStorage(), pytest.raises(ValueError, match="ScoredDatasetMapper"):
        predictor.losses(predictor(torch.randn(2, 16)), _proposals([0, 3]))
