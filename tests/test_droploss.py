"""DropLoss: sampled RoIs that overlap no pseudo-box (IoU < 0.01) leave the box-head loss."""
import pytest
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import zip_d2.modeling  # noqa: F401  (registers the DropLoss heads)
from zip_d2.config import get_cfg
from zip_d2.text import TextEmbeddings

STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32}


def _heads(enabled, name="DropLossROIHeads", embeddings_file=""):
    cfg = get_cfg()
    cfg.merge_from_file("configs/synthetic/mask_rcnn_R18_synthetic.yaml")
    cfg.MODEL.MASK_ON = False
    cfg.MODEL.ROI_HEADS.NAME = name
    if embeddings_file:
        cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = True
        cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.EMBEDDINGS = embeddings_file
        cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.CLIP_MODEL = "constructed"
    cfg.MODEL.ROI_HEADS.DROPLOSS.ENABLED = enabled
    # Only the proposals given below are sampled (no ground-truth boxes appended).
    cfg.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT = False
    torch.manual_seed(0)
    return build_roi_heads(cfg, {k: ShapeSpec(channels=64, stride=s) for k, s in STRIDES.items()})


def _inputs(proposal_boxes):
    gen = torch.Generator().manual_seed(0)
    features = {k: torch.randn(1, 64, 128 // s, 128 // s, generator=gen)
                for k, s in STRIDES.items()}
    proposals = Instances((128, 128))
    proposals.proposal_boxes = Boxes(torch.tensor(proposal_boxes, dtype=torch.float32))
    proposals.objectness_logits = torch.zeros(len(proposal_boxes))
    target = Instances((128, 128))
    target.gt_boxes = Boxes(torch.tensor([[10.0, 10.0, 40.0, 40.0]]))
    target.gt_classes = torch.tensor([1])
    return features, [proposals], [target]


def test_only_rois_touching_a_pseudo_box_are_kept():
    heads = _heads(enabled=True)
    _, proposals, targets = _inputs([[80.0, 80.0, 120.0, 120.0],   # IoU 0: dropped
                                     [30.0, 30.0, 60.0, 60.0],     # IoU ~0.07: kept background
                                     [11.0, 11.0, 41.0, 41.0]])    # IoU ~0.94: kept foreground
    with EventStorage():
        sampled = heads.label_and_sample_proposals(proposals, targets)[0]
    keep = {tuple(b.tolist()): k.item()
            for b, k in zip(sampled.proposal_boxes.tensor, sampled.droploss_keep)}
    assert keep == {(80.0, 80.0, 120.0, 120.0): False, (30.0, 30.0, 60.0, 60.0): True,
                    (11.0, 11.0, 41.0, 41.0): True}


@pytest.mark.parametrize("name", ["DropLossROIHeads", "DropLossOpenVocabROIHeads"])
def test_rois_far_from_every_pseudo_box_contribute_no_loss(name, tmp_path):
    emb = ""
    if name == "DropLossOpenVocabROIHeads":
        # Constructed text embeddings: the open-vocabulary head needs some, not their meaning.
        emb = str(tmp_path / "emb.pth")
        TextEmbeddings(torch.nn.functional.normalize(torch.randn(4, 16), dim=1),
                       ["circle", "square", "triangle", "hexagon"], "constructed", "none").save(emb)
    far = [[70.0 + i, 70.0, 110.0 + i, 110.0] for i in range(8)]
    with EventStorage():
        dropped = _heads(True, name, emb).train()(None, *_inputs(far))[1]
        standard = _heads(False, name, emb).train()(None, *_inputs(far))[1]
    assert dropped["loss_cls"].item() == 0.0 and dropped["loss_box_reg"].item() == 0.0
    # Control: without DropLoss the same RoIs are trained as background.
    assert standard["loss_cls"].item() > 0.1


def test_droploss_loss_equals_standard_loss_on_the_kept_rois_only():
    far, near, fg = [80.0, 80.0, 120.0, 120.0], [30.0, 30.0, 60.0, 60.0], [11.0, 11.0, 41.0, 41.0]
    with EventStorage():
        on = _heads(enabled=True).train()(None, *_inputs([far, near, fg]))[1]
        kept_only = _heads(enabled=False).train()(None, *_inputs([near, fg]))[1]
        all_rois = _heads(enabled=False).train()(None, *_inputs([far, near, fg]))[1]
    for key in ("loss_cls", "loss_box_reg"):
        assert abs(on[key].item() - kept_only[key].item()) < 1e-5, key
    # Control: the far RoI does change the standard loss, so the equality above is not trivial.
    assert abs(all_rois["loss_cls"].item() - on["loss_cls"].item()) > 1e-4
