"""CenterNet-style proposal generator: CenterNet2's first stage, written for zip_d2.

One class-agnostic "objectness" centre heatmap and one box-size map per FPN level:

- heatmap target: per object, an elliptical Gaussian at its box centre (radius a fraction of its
  width/height), 1 at the cell holding the centre; objects go to the levels whose size range
  (``SOI``) holds their longer side. Loss: focal loss on the peaks, penalty-reduced focal loss
  elsewhere (CornerNet/CenterNet), normalised by the number of peaks;
- box target: distances (left, top, right, bottom) from a cell centre to the box sides, at cells
  inside the box, weighted by the Gaussian (central cells count most). Loss: GIoU;
- proposals: top-scoring cells per level, decoded boxes, class-agnostic NMS; the proposal's
  ``objectness_logits`` is the heatmap logit, so ``sigmoid`` of it is a calibrated score that
  CenterNet2's second stage multiplies into its class scores.

Select with ``MODEL.PROPOSAL_GENERATOR.NAME: CenterNetProposalGenerator`` and an FPN that has
``MODEL.CENTERNET.IN_FEATURES`` (e.g. ``build_retinanet_resnet_fpn_backbone`` for p3-p7).
"""
import math
from typing import Dict, List, Optional, Tuple

import torch
from fvcore.nn import giou_loss
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, batched_nms, get_norm
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY
from detectron2.structures import Boxes, ImageList, Instances

__all__ = ["CenterNetHead", "CenterNetProposalGenerator", "centernet_targets", "heatmap_focal_loss"]


class CenterNetHead(nn.Module):
    """A conv tower shared by all levels, then a 1-channel heatmap and a 4-channel box map.

    forward(list of (N, C, Hl, Wl)) -> (list of (N, 1, Hl, Wl) logits,
    list of (N, 4, Hl, Wl) non-negative ltrb distances in units of the level's stride).
    """

    def __init__(self, in_channels: int, num_levels: int, num_convs: int = 4, norm: str = "GN"):
        super().__init__()
        tower = []
        for _ in range(num_convs):
            tower.append(nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=not norm))
            if norm:
                tower.append(get_norm(norm, in_channels))
            tower.append(nn.ReLU())
        self.tower = nn.Sequential(*tower)
        self.heatmap = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.box = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(num_levels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0.0)
        # Start every cell at a 1% object probability so the many negatives do not swamp the
        # first iterations (RetinaNet's prior).
        nn.init.constant_(self.heatmap.bias, -math.log((1 - 0.01) / 0.01))
        # Start boxes at two strides from the centre per side, not at zero size.
        nn.init.constant_(self.box.bias, 2.0)

    def forward(self, features: List[torch.Tensor]):
        heatmaps, boxes = [], []
        for level, x in enumerate(features):
            t = self.tower(x)
            heatmaps.append(self.heatmap(t))
            boxes.append(F.relu(self.box(t) * self.scales[level]))
        return heatmaps, boxes


def _locations(shapes: List[Tuple[int, int]], strides: List[int], device):
    """Cell centres of all levels, flattened level by level in (y, x) raster order.

    Returns (L, 2) float XY in input pixels, (L,) stride per cell, (L,) level index per cell.
    """
    xy, stride_of, level_of = [], [], []
    for level, ((h, w), s) in enumerate(zip(shapes, strides)):
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * s
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        xy.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1))
        stride_of.append(torch.full((h * w,), float(s), device=device))
        level_of.append(torch.full((h * w,), level, device=device, dtype=torch.long))
    return torch.cat(xy), torch.cat(stride_of), torch.cat(level_of)


@torch.no_grad()
def centernet_targets(
    gt_boxes: torch.Tensor,
    locations: torch.Tensor,
    strides: torch.Tensor,
    levels: torch.Tensor,
    soi: torch.Tensor,
    sigma: float,
):
    """Heatmap and box targets of one image.

    Args:
        gt_boxes: (G, 4) float XYXY in input pixels.
        locations, strides, levels: from :func:`_locations`, (L, 2), (L,), (L,).
        soi: (num_levels, 2) [low, high] of the longer box side assigned to each level.
        sigma: Gaussian std as a fraction of the box width (x) and height (y).

    Returns:
        heatmap: (L,) float in [0, 1]; exactly 1 at each object's centre cell on its levels.
        box_targets: (L, 4) float XYXY of the object each cell regresses (valid where weight > 0).
        box_weights: (L,) float, the Gaussian value of that object at the cell, 0 outside boxes.
    """
    num_loc = locations.shape[0]
    if gt_boxes.numel() == 0:
        zeros = locations.new_zeros(num_loc)
        return zeros, locations.new_zeros(num_loc, 4), zeros
    wh = (gt_boxes[:, 2:] - gt_boxes[:, :2]).clamp(min=1.0)  # (G, 2)
    centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    longer = wh.max(dim=1).values
    assigned = (longer[None, :] >= soi[:, :1]) & (longer[None, :] <= soi[:, 1:])  # (levels, G)
    on_level = assigned[levels]  # (L, G)

    offsets = (locations[:, None, :] - centres[None, :, :]) / (sigma * wh[None, :, :])
    gauss = torch.exp(-0.5 * (offsets**2).sum(dim=2)) * on_level  # (L, G)

    # The centre's own cell is the peak, whatever the Gaussian gives at the cell's centre.
    peak_xy = torch.floor(centres[None, :, :] / strides[:, None, None])  # (L, G, 2) cell index
    own_cell = (torch.floor(locations / strides[:, None])[:, None, :] == peak_xy).all(dim=2)
    gauss = torch.where(own_cell & on_level, torch.ones_like(gauss), gauss)

    inside = (
        (locations[:, None, 0] > gt_boxes[None, :, 0])
        & (locations[:, None, 0] < gt_boxes[None, :, 2])
        & (locations[:, None, 1] > gt_boxes[None, :, 1])
        & (locations[:, None, 1] < gt_boxes[None, :, 3])
    )
    heatmap = gauss.max(dim=1).values
    # A cell inside several boxes regresses the one whose centre it is closest to (in Gaussian
    # terms); own-centre cells are always inside their box.
    reg_score = torch.where(inside, gauss, torch.zeros_like(gauss))
    box_weights, owner = reg_score.max(dim=1)
    return heatmap, gt_boxes[owner], box_weights


def heatmap_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float, beta: float
) -> Tuple[torch.Tensor, int]:
    """Penalty-reduced focal loss (CornerNet), summed; returns (loss sum, number of peaks).

    logits, target: (L,) — target 1 at peaks, Gaussian in [0, 1) elsewhere.
    peaks: -alpha (1 - p)^gamma log p; others: -(1 - alpha) (1 - target)^beta p^gamma log(1 - p).
    """
    pos = target >= 1.0
    p = logits.sigmoid()
    pos_loss = -alpha * (1 - p[pos]) ** gamma * F.logsigmoid(logits[pos])
    neg = ~pos
    neg_loss = (
        -(1 - alpha) * (1 - target[neg]) ** beta * p[neg] ** gamma * F.logsigmoid(-logits[neg])
    )
    return pos_loss.sum() + neg_loss.sum(), int(pos.sum())


@PROPOSAL_GENERATOR_REGISTRY.register()
class CenterNetProposalGenerator(nn.Module):
    """Centre-heatmap proposals with focal + GIoU losses; see the module docstring."""

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        strides: List[int],
        in_channels: int,
        num_convs: int = 4,
        norm: str = "GN",
        soi: List[List[float]],
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        focal_beta: float = 4.0,
        gaussian_sigma: float = 0.1,
        hm_weight: float = 1.0,
        reg_weight: float = 2.0,
        pre_nms_topk: Tuple[int, int] = (4000, 1000),
        post_nms_topk: Tuple[int, int] = (2000, 256),
        nms_thresh: float = 0.9,
        score_thresh: float = 0.0001,
    ):
        """
        Args:
            in_features: FPN levels used, e.g. ["p3", ..., "p7"]; strides: their strides.
            soi: per level [low, high] of the longer box side of the objects it detects.
            pre_nms_topk, post_nms_topk: (training, test) proposals kept per level before NMS
                and per image after NMS.
            Other arguments: see ``_add_centernet_config`` in ``zip_d2/config.py``.
        """
        super().__init__()
        if len(soi) != len(in_features) or len(strides) != len(in_features):
            raise ValueError(
                f"CENTERNET.SOI has {len(soi)} ranges for {len(in_features)} levels {in_features}."
            )
        self.in_features = list(in_features)
        self.strides = list(strides)
        self.head = CenterNetHead(in_channels, len(in_features), num_convs, norm)
        self.register_buffer("soi", torch.tensor(soi, dtype=torch.float32), persistent=False)
        self.focal_alpha, self.focal_gamma, self.focal_beta = focal_alpha, focal_gamma, focal_beta
        self.gaussian_sigma = gaussian_sigma
        self.hm_weight, self.reg_weight = hm_weight, reg_weight
        self.pre_nms_topk = {True: pre_nms_topk[0], False: pre_nms_topk[1]}
        self.post_nms_topk = {True: post_nms_topk[0], False: post_nms_topk[1]}
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        c = cfg.MODEL.CENTERNET
        missing = [f for f in c.IN_FEATURES if f not in input_shape]
        if missing:
            raise ValueError(
                f"CENTERNET.IN_FEATURES {missing} are not backbone outputs {sorted(input_shape)}; "
                "for p6/p7 use MODEL.BACKBONE.NAME build_retinanet_resnet_fpn_backbone."
            )
        channels = {input_shape[f].channels for f in c.IN_FEATURES}
        if len(channels) != 1:
            raise ValueError(f"CenterNet levels must share one channel count, got {channels}.")
        return {
            "in_features": c.IN_FEATURES,
            "strides": [input_shape[f].stride for f in c.IN_FEATURES],
            "in_channels": channels.pop(),
            "num_convs": c.NUM_CONVS,
            "norm": c.NORM,
            "soi": c.SOI,
            "focal_alpha": c.FOCAL_ALPHA,
            "focal_gamma": c.FOCAL_GAMMA,
            "focal_beta": c.FOCAL_BETA,
            "gaussian_sigma": c.GAUSSIAN_SIGMA,
            "hm_weight": c.HM_WEIGHT,
            "reg_weight": c.REG_WEIGHT,
            "pre_nms_topk": (c.PRE_NMS_TOPK_TRAIN, c.PRE_NMS_TOPK_TEST),
            "post_nms_topk": (c.POST_NMS_TOPK_TRAIN, c.POST_NMS_TOPK_TEST),
            "nms_thresh": c.NMS_THRESH,
            "score_thresh": c.SCORE_THRESH,
        }

    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        gt_instances: Optional[List[Instances]] = None,
    ):
        """Returns (list of N Instances with proposal_boxes and objectness_logits, loss dict)."""
        feats = [features[f] for f in self.in_features]
        heatmaps, box_maps = self.head(feats)
        shapes = [tuple(x.shape[-2:]) for x in feats]
        locations, strides, levels = _locations(shapes, self.strides, feats[0].device)
        # (N, L) logits and (N, L, 4) ltrb pixel distances, levels concatenated.
        hm_flat = torch.cat([h.flatten(1) for h in heatmaps], dim=1)
        ltrb = torch.cat([b.flatten(2) for b in box_maps], dim=2).transpose(1, 2)
        ltrb = ltrb * strides[None, :, None]
        pred_boxes = torch.cat(
            [locations[None] - ltrb[..., :2], locations[None] + ltrb[..., 2:]], dim=2
        )

        losses = {}
        if self.training:
            assert gt_instances is not None, "CenterNet needs gt_instances in training"
            losses = self.losses(hm_flat, pred_boxes, gt_instances, locations, strides, levels)
        proposals = self.predict_proposals(
            hm_flat.detach(), pred_boxes.detach(), shapes, images.image_sizes
        )
        return proposals, losses

    def losses(self, hm_flat, pred_boxes, gt_instances, locations, strides, levels):
        hm_sum, num_peaks = hm_flat.new_zeros(()), 0
        reg_sum, reg_norm = hm_flat.new_zeros(()), hm_flat.new_zeros(())
        for i, inst in enumerate(gt_instances):
            heatmap, box_targets, box_weights = centernet_targets(
                inst.gt_boxes.tensor, locations, strides, levels, self.soi, self.gaussian_sigma
            )
            loss, peaks = heatmap_focal_loss(
                hm_flat[i], heatmap, self.focal_alpha, self.focal_gamma, self.focal_beta
            )
            hm_sum, num_peaks = hm_sum + loss, num_peaks + peaks
            fg = box_weights > 0
            if fg.any():
                giou = giou_loss(pred_boxes[i][fg], box_targets[fg], reduction="none")
                reg_sum = reg_sum + (giou * box_weights[fg]).sum()
                reg_norm = reg_norm + box_weights[fg].sum()
        return {
            "loss_centernet_hm": self.hm_weight * hm_sum / max(num_peaks, 1),
            "loss_centernet_reg": self.reg_weight * reg_sum / reg_norm.clamp(min=1e-6),
        }

    @torch.no_grad()
    def predict_proposals(self, hm_flat, pred_boxes, shapes, image_sizes):
        level_sizes = [h * w for h, w in shapes]
        topk = self.pre_nms_topk[self.training]
        post_topk = self.post_nms_topk[self.training]
        results = []
        for i, image_size in enumerate(image_sizes):
            boxes_all, logits_all = [], []
            per_level = zip(hm_flat[i].split(level_sizes), pred_boxes[i].split(level_sizes))
            for logits, boxes in per_level:
                k = min(topk, logits.numel())
                top_logits, idx = logits.topk(k)
                boxes_all.append(boxes[idx])
                logits_all.append(top_logits)
            logits = torch.cat(logits_all)
            boxes = Boxes(torch.cat(boxes_all))
            boxes.clip(image_size)
            keep = boxes.nonempty() & (logits.sigmoid() > self.score_thresh)
            boxes, logits = boxes[keep], logits[keep]
            one_class = torch.zeros_like(logits, dtype=torch.long)
            keep = batched_nms(boxes.tensor, logits, one_class, self.nms_thresh)
            keep = keep[:post_topk]
            proposals = Instances(image_size)
            proposals.proposal_boxes = boxes[keep]
            proposals.objectness_logits = logits[keep]
            results.append(proposals)
        return results
