"""DropLoss (CutLER): RoIs that overlap no pseudo-label contribute no box-head loss.

Pseudo-labels of round 0 miss many objects. Standard training calls every RoI that matches no
annotation "background" and so teaches the detector to suppress exactly the objects the labeller
missed. DropLoss removes from the box-head loss (classification and regression) every sampled
RoI whose best box IoU with all of the image's annotations is below
``MODEL.ROI_HEADS.DROPLOSS.IOU_THRESH`` (0.01): such a RoI is not known to be background, it is
only unlabelled. RoIs that touch an annotation (hard negatives near objects, and all positives)
keep their loss. The mask head, which trains on foreground RoIs only, is unaffected.

Registered heads (select with ``MODEL.ROI_HEADS.NAME``; ``MODEL.ROI_HEADS.DROPLOSS.ENABLED``
switches the drop on, off they behave exactly as their parent):

- ``DropLossROIHeads``: detectron2's StandardROIHeads (Mask R-CNN);
- ``DropLossOpenVocabROIHeads``: zip_d2's OpenVocabROIHeads (CLIP-text classifier).
"""
import torch

from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import pairwise_iou
from detectron2.utils.events import get_event_storage

from .roi_heads import OpenVocabROIHeads

__all__ = ["DropLossMixin", "DropLossROIHeads", "DropLossOpenVocabROIHeads", "DROPLOSS_HEADS"]


class DropLossMixin:
    """Adds DropLoss to a StandardROIHeads subclass (put it first in the bases)."""

    @configurable
    def __init__(self, *, droploss_enabled: bool = False, droploss_iou_thresh: float = 0.01,
                 **kwargs):
        super().__init__(**kwargs)
        self.droploss_enabled = droploss_enabled
        self.droploss_iou_thresh = droploss_iou_thresh

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["droploss_enabled"] = cfg.MODEL.ROI_HEADS.DROPLOSS.ENABLED
        ret["droploss_iou_thresh"] = cfg.MODEL.ROI_HEADS.DROPLOSS.IOU_THRESH
        if ret["droploss_enabled"] and cfg.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES:
            raise ValueError("DropLoss does not support MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES.")
        return ret

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals, targets):
        proposals = super().label_and_sample_proposals(proposals, targets)
        if not self.droploss_enabled:
            return proposals
        for p, t in zip(proposals, targets):
            if len(t) == 0 or len(p) == 0:
                # No pseudo-label in the image: nothing there is known to be background.
                p.droploss_keep = torch.zeros(len(p), dtype=torch.bool, device=p.gt_classes.device)
                continue
            best_iou = pairwise_iou(t.gt_boxes, p.proposal_boxes).max(dim=0).values
            p.droploss_keep = best_iou >= self.droploss_iou_thresh
        return proposals

    def _forward_box(self, features, proposals):
        if not (self.training and self.droploss_enabled):
            return super()._forward_box(features, proposals)
        features = [features[f] for f in self.box_in_features]
        box_features = self.box_pooler(features, [x.proposal_boxes for x in proposals])
        scores, deltas = self.box_predictor(self.box_head(box_features))
        keep = cat([p.droploss_keep for p in proposals], dim=0)
        get_event_storage().put_scalar("droploss/kept_fraction",
                                       keep.float().mean().item() if keep.numel() else 0.0)
        # The predictor's own losses (softmax CE, score weighting, box regression) on the kept
        # RoIs only, so any predictor (closed-set or open-vocabulary) gets DropLoss unchanged.
        kept = [p[p.droploss_keep] for p in proposals]
        return self.box_predictor.losses((scores[keep], deltas[keep]), kept)


@ROI_HEADS_REGISTRY.register()
class DropLossROIHeads(DropLossMixin, StandardROIHeads):
    """StandardROIHeads with DropLoss (see the module docstring)."""


@ROI_HEADS_REGISTRY.register()
class DropLossOpenVocabROIHeads(DropLossMixin, OpenVocabROIHeads):
    """OpenVocabROIHeads with DropLoss (see the module docstring)."""


# RoI-head name -> its DropLoss variant; used to switch DropLoss on for a round-0 config.
DROPLOSS_HEADS = {
    "StandardROIHeads": "DropLossROIHeads",
    "OpenVocabROIHeads": "DropLossOpenVocabROIHeads",
    "DropLossROIHeads": "DropLossROIHeads",
    "DropLossOpenVocabROIHeads": "DropLossOpenVocabROIHeads",
}
