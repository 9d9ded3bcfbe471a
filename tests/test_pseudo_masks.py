"""SAM refinement plumbing, Zip's score, and cross-class mask NMS."""
import numpy as np
import torch

from zip_d2.models import create_sam
from zip_d2.pseudo.masks import (
    SamRefiner,
    combine_scores,
    mask_iou_matrix,
    mask_nms,
    masks_to_boxes,
)


def _box_mask(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_score_is_sqrt_of_clip_times_sam_clipped_to_unit_interval():
    s = combine_scores([0.25, 1.0, 0.5, 0.9], [1.0, 0.49, -0.2, 1.3])
    np.testing.assert_allclose(s, [0.5, 0.7, 0.0, np.sqrt(0.9)], rtol=1e-6)


def test_mask_nms_removes_duplicates_across_classes_keeping_the_best():
    a = _box_mask(20, 20, 0, 0, 10, 10)
    a2 = _box_mask(20, 20, 0, 0, 10, 9)   # IoU 0.9 with a
    b = _box_mask(20, 20, 10, 10, 20, 20)
    masks = np.stack([a2, a, b])
    keep = mask_nms(masks, np.array([0.6, 0.8, 0.3]), iou_threshold=0.5)
    assert keep.tolist() == [1, 2]
    assert mask_nms(masks, np.array([0.6, 0.8, 0.3]), 0.5, max_keep=1).tolist() == [1]
    np.testing.assert_allclose(mask_iou_matrix(np.stack([a, a2]))[0, 1], 0.9)


def test_boxes_from_masks_are_tight_xyxy():
    m = _box_mask(10, 12, 3, 2, 7, 9)
    np.testing.assert_array_equal(
        masks_to_boxes(np.stack([m, np.zeros_like(m)])), [[3, 2, 7, 9], [0, 0, 0, 0]]
    )


def test_refiner_batches_box_and_point_prompts_through_one_embedding():
    torch.manual_seed(0)
    refiner = SamRefiner(create_sam("tiny", random_weights=True), multimask=True, batch_size=2)
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    refiner.set_image(image)
    boxes = np.array([[0, 0, 20, 20], [10, 5, 50, 35], [30, 10, 59, 39]], np.float32)
    masks, iou = refiner.refine(boxes)
    assert masks.shape == (3, 40, 60) and masks.dtype == bool and iou.shape == (3,)
    # Batching must not change the answer.
    one = SamRefiner(refiner.predictor.model, batch_size=8)
    one.set_image(image)
    masks1, iou1 = one.refine(boxes)
    np.testing.assert_array_equal(masks, masks1)
    np.testing.assert_allclose(iou, iou1, rtol=1e-5, atol=1e-6)
    pm, piou = refiner.refine(boxes, points=np.array([[10, 10], [30, 20], [45, 25]], np.float32))
    assert pm.shape == (3, 40, 60) and piou.shape == (3,)
    assert refiner.refine(np.zeros((0, 4)))[0].shape == (0, 40, 60)
