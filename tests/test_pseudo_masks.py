"""SAM refinement plumbing, Zip's score, and cross-class mask NMS."""
import numpy as np
import pytest
import torch
from old_postprocess import old_select

from zip_d2.models import create_sam
from zip_d2.pseudo import masks as masks_module
from zip_d2.pseudo.masks import (
    SamRefiner,
    combine_scores,
    mask_iou_matrix,
    mask_nms,
    masks_to_boxes,
    select_masks,
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


# -- Known answers through a constructed SAM ------------------------------------------------------
# SAM's networks are replaced by stubs whose outputs are known, while SamPredictor's own
# resizing, padding and mask post-processing (and SamRefiner's batching) run unchanged.
STUB_SIDE = 64  # the stub's square input side (SAM's is 1024)


class _StubImageEncoder(torch.nn.Module):
    """Embedding = the preprocessed top-left pixel (B, 3, 1, 1): it tells the images apart."""

    img_size = STUB_SIDE

    def forward(self, x):
        return x[:, :, :1, :1]


class _StubPromptEncoder(torch.nn.Module):
    """Passes the prompts through, in SAM's input frame: sparse (N, 1, 6) = box XYXY and
    point XY (NaN without a point)."""

    def forward(self, points, boxes, masks):
        n = boxes.shape[0]
        pt = points[0][:, 0] if points is not None else torch.full((n, 2), float("nan"))
        return torch.cat([boxes, pt], dim=1)[:, None], torch.zeros(n, 1, 1, 1)

    def get_dense_pe(self):
        return torch.zeros(1, 1, 1, 1)


class _StubMaskDecoder(torch.nn.Module):
    """Three candidates per prompt, painted at SAM's input resolution (logit +10 in, -10 out):
    0 the box, 1 its left half, 2 its top half; each also covers the 8x8 square around the
    point when there is one. Predicted IoU: 0.9 for the left half of a wide box (w > 1.5 h),
    the top half of a tall one (h > 1.5 w), the whole box otherwise, 0.6 for the others;
    plus the image embedding's first value, so the score shows which image was used.
    Without multimask output only candidate 0 comes back (as in SAM)."""

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings,
                dense_prompt_embeddings, multimask_output):
        x0, y0, x1, y1, px, py = sparse_prompt_embeddings[:, 0].unbind(dim=1)
        n = len(x0)
        centres = torch.arange(STUB_SIDE) + 0.5

        def rect(ya, yb, xa, xb):  # (N, S, S); NaN bounds compare False: an empty rectangle
            rows = (centres[None] >= ya[:, None]) & (centres[None] < yb[:, None])
            cols = (centres[None] >= xa[:, None]) & (centres[None] < xb[:, None])
            return rows[:, :, None] & cols[:, None, :]

        cands = torch.stack([rect(y0, y1, x0, x1), rect(y0, y1, x0, (x0 + x1) / 2),
                             rect(y0, (y0 + y1) / 2, x0, x1)], dim=1)
        cands |= rect(py - 4, py + 4, px - 4, px + 4)[:, None]
        w, h = x1 - x0, y1 - y0
        best = torch.where(w > 1.5 * h, 1, torch.where(h > 1.5 * w, 2, 0))
        iou = torch.full((n, 3), 0.6)
        iou[torch.arange(n), best] = 0.9
        iou = iou + image_embeddings[0, 0, 0, 0]
        logits = torch.where(cands, 10.0, -10.0)
        return (logits, iou) if multimask_output else (logits[:, :1], iou[:, :1])


def _stub_refiner(**kw):
    from segment_anything.modeling import Sam

    sam = Sam(_StubImageEncoder(), _StubPromptEncoder(), _StubMaskDecoder())
    return SamRefiner(sam.eval(), **kw)


def _embedding_of(grey):
    """The stub's image embedding for a flat image of this grey level (SAM's red-channel norm)."""
    return (grey - 123.675) / 58.395


# A wide image (30x48: SAM scales it by 4/3 to 40x64, padded to 64x64) and a tall one (32x16:
# scaled by 2 to 64x32). Coordinates on multiples of 3 (wide) land on whole input pixels.
WIDE = np.full((30, 48, 3), 10, np.uint8)
TALL = np.full((32, 16, 3), 200, np.uint8)
WIDE_BOXES = np.array([[6, 3, 30, 27],    # square-ish: the box itself scores highest
                       [3, 6, 45, 15],    # wide: its left half
                       [36, 0, 42, 24]],  # tall: its top half
                      np.float32)


def test_refiner_keeps_the_multimask_output_sam_scores_highest():
    refiner = _stub_refiner(batch_size=2)  # 3 prompts: two decoder calls
    refiner.set_image(WIDE)
    masks, iou = refiner.refine(WIDE_BOXES)
    want = np.stack([_box_mask(30, 48, 6, 3, 30, 27), _box_mask(30, 48, 3, 6, 24, 15),
                     _box_mask(30, 48, 36, 0, 42, 12)])
    np.testing.assert_array_equal(masks, want)
    np.testing.assert_allclose(iou, [0.9 + _embedding_of(10)] * 3, rtol=1e-6)
    # Single-mask mode: SAM's one output, whatever it scores.
    single = _stub_refiner(multimask=False)
    single.set_image(WIDE)
    masks, iou = single.refine(WIDE_BOXES)
    boxes = np.stack([_box_mask(30, 48, *b) for b in WIDE_BOXES.astype(int)])
    np.testing.assert_array_equal(masks, boxes)
    np.testing.assert_allclose(iou, np.array([0.9, 0.6, 0.6]) + _embedding_of(10), rtol=1e-6)


def test_refiner_maps_boxes_and_points_to_sams_frame_and_back_on_non_square_images():
    for image, boxes, points, scale in (
            (WIDE, np.array([[6, 3, 30, 27]], np.float32), np.array([[39, 21]], np.float32), 4 / 3),
            (TALL, np.array([[2, 4, 12, 16]], np.float32), np.array([[6, 26]], np.float32), 2)):
        H, W = image.shape[:2]
        refiner = _stub_refiner()
        refiner.set_image(image)
        masks, _ = refiner.refine(boxes)
        np.testing.assert_array_equal(masks[0], _box_mask(H, W, *boxes[0].astype(int)))
        # The point's 8x8 input-frame square is 8/scale image pixels wide, centred on it.
        masks, _ = refiner.refine(boxes, points=points)
        r = int(4 / scale)
        (x, y), = points.astype(int)
        want = _box_mask(H, W, *boxes[0].astype(int)) | _box_mask(H, W, x - r, y - r, x + r, y + r)
        np.testing.assert_array_equal(masks[0], want)


def test_refiner_batch_of_images_keeps_each_images_embedding_and_size():
    refiner = _stub_refiner()
    refiner.set_images([WIDE, TALL])
    tall_box = np.array([[2, 4, 12, 16]], np.float32)
    masks_t, iou_t = refiner.refine(tall_box, index=1)
    masks_w, iou_w = refiner.refine(WIDE_BOXES, index=0)
    assert masks_t.shape == (1, 32, 16) and masks_w.shape == (3, 30, 48)
    np.testing.assert_array_equal(masks_t[0], _box_mask(32, 16, 2, 4, 12, 16))
    np.testing.assert_allclose(iou_t, [0.9 + _embedding_of(200)], rtol=1e-6)
    np.testing.assert_allclose(iou_w, [0.9 + _embedding_of(10)] * 3, rtol=1e-6)
    # The same answers as each image set on its own.
    for image, boxes, got in ((TALL, tall_box, (masks_t, iou_t)),
                              (WIDE, WIDE_BOXES, (masks_w, iou_w))):
        alone = _stub_refiner()
        alone.set_image(image)
        want = alone.refine(boxes)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    with pytest.raises(IndexError):
        refiner.refine(tall_box, index=2)


def _random_masks(rng, n, h, w):
    """Random blobs, rectangles, near-duplicates, exact duplicates, single pixels, full and
    empty masks; scores drawn from a few values so that ties are common."""
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros((n, h, w), bool)
    for i in range(n):
        kind = rng.integers(0, 7)
        if kind == 0:  # ellipse
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            ry, rx = rng.uniform(0.5, h / 2 + 0.5), rng.uniform(0.5, w / 2 + 0.5)
            out[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        elif kind == 1:  # rectangle touching the border
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            out[i, y0:, x0:] = True
        elif kind == 2 and i:  # near-duplicate of an earlier mask
            out[i] = out[rng.integers(0, i)]
            out[i, rng.integers(0, h), :] ^= True
        elif kind == 3 and i:  # exact duplicate
            out[i] = out[rng.integers(0, i)]
        elif kind == 4:  # single pixel
            out[i, rng.integers(0, h), rng.integers(0, w)] = True
        elif kind == 5:
            out[i] = rng.random() < 0.2 or rng.random((h, w)) < 0.3
        # else: empty
    scores = rng.choice(np.array([0.0, 0.2, 0.5, 0.5, 0.7, 0.9], np.float32), n)
    return out, scores


@pytest.mark.parametrize("h,w", [(23, 31), (31, 23), (1, 17), (16, 16)])
def test_nms_and_boxes_give_the_old_labels_on_cpu_arrays_and_tensors(h, w):
    """Same kept indices, order and boxes as the pre-change Fortran-copy path, with ties,
    duplicates and empty masks, for numpy (run-length) and torch (matrix product) inputs."""
    rng = np.random.default_rng(h * 100 + w)
    for trial in range(25):
        n = int(rng.integers(1, 40))  # the old path never saw 0
        masks, scores = _random_masks(rng, n, h, w)
        thr = float(rng.choice([0.0, 0.3, 0.5, 0.9]))
        max_keep = int(rng.choice([1, 5, 100]))
        min_score = float(rng.choice([0.0, 0.5]))
        ref_keep, ref_boxes = old_select(masks, scores, thr, max_keep, min_score)
        for given in (masks, torch.from_numpy(masks)):
            keep, boxes = select_masks(given, scores, thr, max_keep, min_score)
            assert keep.tolist() == ref_keep.tolist(), (trial, type(given))
            assert boxes.dtype == np.float32
            np.testing.assert_array_equal(boxes, ref_boxes)


def test_iou_and_boxes_agree_between_numpy_and_torch_including_empty_masks(monkeypatch):
    rng = np.random.default_rng(1)
    masks, _ = _random_masks(rng, 30, 19, 27)
    masks[3] = False
    masks[4] = False
    # Force the torch path to sum intersections over many pixel chunks.
    monkeypatch.setattr(masks_module, "_IOU_CHUNK_ELEMENTS", 30 * 50)
    iou = mask_iou_matrix(masks)
    np.testing.assert_array_equal(mask_iou_matrix(torch.from_numpy(masks)), iou)
    assert iou[3, 4] == 0 and iou[3, 3] == 0
    np.testing.assert_array_equal(masks_to_boxes(torch.from_numpy(masks)), masks_to_boxes(masks))


def test_select_masks_keeps_empty_masks_only_when_nothing_is_dropped():
    a = _box_mask(8, 8, 0, 0, 4, 4)
    masks = np.stack([np.zeros_like(a), a])
    assert mask_nms(masks, np.array([0.9, 0.5])).tolist() == [0, 1]
    keep, boxes = select_masks(masks, np.array([0.9, 0.5]), 0.5, 100, min_score=0.0)
    assert keep.tolist() == [1] and boxes.tolist() == [[0, 0, 4, 4]]
    keep, boxes = select_masks(masks[:0], np.zeros(0), 0.5, 100, min_score=0.0)
    assert keep.shape == (0,) and boxes.shape == (0, 4)
    with pytest.raises(ValueError, match="masks for"):
        select_masks(masks, np.array([0.9]))
