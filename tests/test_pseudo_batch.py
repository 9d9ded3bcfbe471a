"""``ZipLabeler.label_batch``: the heavy models run on the whole batch, and the detections are
those of one call per image (tiny random-weight preset, fp32 on CPU)."""

import numpy as np
import pytest
import torch
from conftest import tiny_pseudo_cfg as _cfg

from zip_d2.pseudo import build_labeler, clues, clusters


def _two_objects(h, w):
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (40, 120, 40)
    img[h // 6:h * 3 // 4, w // 16:w * 7 // 16] = (200, 30, 30)
    img[h // 4:h * 7 // 8, w * 7 // 16:w * 7 // 8] = (30, 30, 200)
    return img


def _blocks(h, w, seed):
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(30, 220, 3)
    for _ in range(4):
        y, x = rng.integers(0, h - 20), rng.integers(0, w - 20)
        img[y : y + rng.integers(15, h // 2), x : x + rng.integers(15, w // 2)] = rng.integers(
            0, 255, 3
        )
    return img


# Two sizes, so the boundary trunk sees one group of two images and one of one (and the ViT and
# SAM inputs, both resized to one size, see all three).
IMAGES = [_two_objects(128, 160), _two_objects(96, 128), _blocks(128, 160, 3)]


def _assert_same_detections(batched, single):
    assert len(batched) == len(single)
    for x, y in zip(batched, single):
        assert x["category"] == y["category"]
        assert abs(x["score"] - y["score"]) <= 1e-5
        assert np.array_equal(x["mask"], y["mask"])
        np.testing.assert_allclose(x["box"], y["box"], atol=1e-4)


# NMS_IOU 1.0 keeps every SAM mask, so the comparison covers all prompts, not just the survivor.
# The second case switches every per-image option on at once (one labeler build instead of three).
CASES = {
    "zip": {"SCORE.NMS_IOU": 1.0},
    "zip-points-mask-activation-semantic-init": {
        "SCORE.NMS_IOU": 1.0, "SAM.POINT_PROMPT": True, "SCORE.CLIP_SCORE": "mask_activation",
        "BOUNDARY.INIT": "semantic"},
    "zip-no-sam": {"METHOD": "zip-no-sam"},
}


@pytest.fixture(scope="module")
def labelers():
    built = {}

    def get(case):
        if case not in built:
            built[case] = build_labeler(_cfg(**CASES[case]))
        return built[case]
    return get


@pytest.mark.parametrize("case", list(CASES))
def test_label_batch_of_mixed_sizes_equals_one_call_per_image(labelers, case):
    lab = labelers(case)
    batched = lab.label_batch(IMAGES)
    single = [lab(img) for img in IMAGES]
    assert len(batched) == len(IMAGES)
    assert (
        sum(len(d) for d in single) >= 4
    )  # enough detections for the comparison to mean something
    for b, s, img in zip(batched, single, IMAGES):
        assert all(d["mask"].shape == img.shape[:2] for d in b)
        _assert_same_detections(b, s)


def test_label_batch_runs_each_model_once_per_batch_not_per_image(labelers, monkeypatch):
    lab = labelers("zip")
    vit, trunk, sam = [], [], []

    def record(fn, calls):
        def wrapped(model, x, *args, **kwargs):
            calls.append(tuple(x.shape))
            return fn(model, x, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(clues, "surgery_tokens", record(clues.surgery_tokens, vit))
    monkeypatch.setattr(clusters, "layer3_features", record(clusters.layer3_features, trunk))
    hook = lab.refiner.predictor.model.image_encoder.register_forward_hook(
        lambda module, inputs, output: sam.append(tuple(inputs[0].shape)))
    try:
        dets = lab.label_batch(IMAGES)
    finally:
        hook.remove()
    assert all(len(d) for d in dets)  # every image reached SAM
    size, small = lab.cfg.PSEUDO.CLIP.INPUT_SIZE, lab.cfg.PSEUDO.CLIP.CLASSIFY_SIZE
    assert sorted(vit) == sorted([(3, 3, size, size), (3, 3, small, small)])
    assert sorted(s[0] for s in trunk) == [1, 2]
    assert len(sam) == 1 and sam[0][0] == 3


def test_label_batch_takes_classes_per_image_and_checks_their_count(labelers):
    lab = labelers("zip-no-sam")
    classes = [["dog"], [], None]
    batched = lab.label_batch(IMAGES, classes)
    assert batched[1] == [] and batched[0] and all(d["category"] == "dog" for d in batched[0])
    for b, img, c in zip(batched, IMAGES, classes):
        _assert_same_detections(b, lab(img, classes=c))
    assert lab.label_batch([]) == []
    with pytest.raises(ValueError, match="2 entries for 3 images"):
        lab.label_batch(IMAGES, [None, None])
    with pytest.raises(ValueError, match="uint8 RGB"):
        lab.label_batch([IMAGES[0], IMAGES[1].astype(np.float32)])


def test_sam_refiner_batch_embeddings_match_one_image_at_a_time(labelers):
    refiner = labelers("zip").refiner
    boxes = np.array([[10, 10, 60, 50], [40, 20, 120, 90]], np.float32)
    refiner.set_images(IMAGES[:2])
    batched = [refiner.refine(boxes, index=i) for i in (1, 0)]
    for (m, iou), img in zip(batched, [IMAGES[1], IMAGES[0]]):
        refiner.set_image(img)
        m1, iou1 = refiner.refine(boxes)
        assert m.shape == (len(boxes),) + img.shape[:2]
        assert np.array_equal(m, m1)
        np.testing.assert_allclose(iou, iou1, atol=1e-5)
    with pytest.raises(IndexError):
        refiner.refine(boxes, index=1)  # set_image left a batch of one
    assert torch.is_tensor(refiner.predictor.features)
