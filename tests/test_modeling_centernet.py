"""zip_d2's CenterNet proposal generator: targets, focal loss, training signal and proposals."""
import math

import numpy as np
import pytest
import torch

from detectron2.modeling import build_backbone, build_proposal_generator
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import EventStorage

import zip_d2.modeling  # noqa: F401
from zip_d2.config import get_cfg
from zip_d2.data.synthetic import SceneParams, render_scene
from zip_d2.modeling.centernet import _locations, centernet_targets, heatmap_focal_loss

CENTERNET2_OV = "configs/open_vocab/centernet2_R18_ov_synthetic.yaml"


def test_targets_peak_at_each_centre_cell_on_the_levels_its_size_selects():
    # Level 0: 8x8 cells of stride 8 (objects up to 32 px); level 1: 4x4 of stride 16 (24 px up).
    locations, strides, levels = _locations([(8, 8), (4, 4)], [8, 16], "cpu")
    soi = torch.tensor([[0.0, 32.0], [24.0, 1e5]])
    small = [8.0, 8.0, 24.0, 24.0]  # 16 px: level 0 only; centre (16, 16) -> cell (2, 2)
    large = [0.0, 0.0, 60.0, 44.0]  # 60 px: level 1 only; centre (30, 22) -> cell (1, 1)
    heatmap, box_targets, weights = centernet_targets(
        torch.tensor([small, large]), locations, strides, levels, soi, sigma=0.1
    )
    level0, level1 = heatmap[:64].view(8, 8), heatmap[64:].view(4, 4)
    assert level0[2, 2] == 1.0 and (level0 >= 1.0).sum() == 1
    assert level1[1, 1] == 1.0 and (level1 >= 1.0).sum() == 1
    # The Gaussian falls off away from the peak but is not a single spike.
    assert 0 < level0[2, 3] < 1 and level0[2, 3] > level0[2, 4]
    # Each peak regresses its own box; cells outside every box regress nothing.
    assert torch.equal(box_targets[2 * 8 + 2], torch.tensor(small))
    assert torch.equal(box_targets[64 + 1 * 4 + 1], torch.tensor(large))
    assert weights[:64].view(8, 8)[6, 6] == 0


def test_image_without_objects_has_all_zero_targets():
    locations, strides, levels = _locations([(4, 4)], [8], "cpu")
    heatmap, _, weights = centernet_targets(
        torch.zeros(0, 4), locations, strides, levels, torch.tensor([[0.0, 1e5]]), 0.1
    )
    assert heatmap.sum() == 0 and weights.sum() == 0


def test_focal_loss_values_for_a_peak_and_a_penalty_reduced_negative():
    logits = torch.tensor([0.0, 0.0, 0.0])
    target = torch.tensor([1.0, 0.5, 0.0])
    loss, peaks = heatmap_focal_loss(logits, target, alpha=0.25, gamma=2.0, beta=4.0)
    pos = 0.25 * 0.5**2 * math.log(2)
    near = 0.75 * (1 - 0.5) ** 4 * 0.5**2 * math.log(2)
    far = 0.75 * 0.5**2 * math.log(2)
    assert peaks == 1
    assert loss.item() == pytest.approx(pos + near + far, rel=1e-5)


def _synthetic_batch(n, seed=0):
    rng = np.random.default_rng(seed)
    images, gts = [], []
    for _ in range(n):
        image, objects = render_scene(rng, SceneParams())
        images.append(torch.from_numpy(image.transpose(2, 0, 1).copy()).float())
        inst = Instances(image.shape[:2])
        boxes = []
        for o in objects:
            ys, xs = np.nonzero(o["mask"])
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        gts.append(inst)
    return images, gts


def _backbone_and_centernet():
    cfg = get_cfg()
    cfg.merge_from_file(CENTERNET2_OV)
    torch.manual_seed(0)
    backbone = build_backbone(cfg)
    return cfg, backbone, build_proposal_generator(cfg, backbone.output_shape())


def test_centernet_losses_are_finite_and_fall_over_a_few_steps_on_a_synthetic_batch():
    cfg, backbone, centernet = _backbone_and_centernet()
    images, gts = _synthetic_batch(4)
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(3, 1, 1)
    batch = ImageList.from_tensors([(im - mean) / std for im in images], 32)
    params = list(backbone.parameters()) + list(centernet.parameters())
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    history = []
    backbone.train()
    centernet.train()
    with EventStorage():
        for _ in range(10):
            _, losses = centernet(batch, backbone(batch.tensor), gts)
            assert set(losses) == {"loss_centernet_hm", "loss_centernet_reg"}
            assert all(torch.isfinite(v) for v in losses.values()), losses
            history.append({k: v.item() for k, v in losses.items()})
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
    for key in ("loss_centernet_hm", "loss_centernet_reg"):
        first = np.mean([h[key] for h in history[:2]])
        last = np.mean([h[key] for h in history[-2:]])
        assert last < first, f"{key} did not fall: {[round(h[key], 3) for h in history]}"


def test_proposals_are_inside_the_image_scored_and_capped():
    cfg, backbone, centernet = _backbone_and_centernet()
    images, _ = _synthetic_batch(2, seed=1)
    batch = ImageList.from_tensors(images, 32)
    backbone.eval()
    centernet.eval()
    with torch.no_grad():
        proposals, losses = centernet(batch, backbone(batch.tensor))
    assert losses == {}
    for p, (h, w) in zip(proposals, batch.image_sizes):
        assert 0 < len(p) <= cfg.MODEL.CENTERNET.POST_NMS_TOPK_TEST
        b = p.proposal_boxes.tensor
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        # NMS output order: best proposal first.
        assert torch.all(p.objectness_logits[:-1] >= p.objectness_logits[1:])
