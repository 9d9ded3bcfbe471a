"""End to end with the tiny random-weight preset on a synthetic image: the labeler interface
the pseudo-label job builds on."""
import json

import numpy as np
import pytest
from conftest import tiny_pseudo_cfg as _cfg

from zip_d2.pseudo import build_labeler

VOCAB = ["person", "car", "dog", "cat"]


def _image():
    img = np.zeros((128, 160, 3), np.uint8)
    img[:] = (40, 120, 40)
    img[20:90, 10:70] = (200, 30, 30)
    img[30:110, 70:140] = (30, 30, 200)
    return img


@pytest.fixture(scope="module")
def labelers():
    return {m: build_labeler(_cfg(METHOD=m)) for m in ("zip", "zip-no-sam", "sam-clip")}


def _check_detections(dets, image, names):
    H, W = image.shape[:2]
    assert len(dets) > 0
    for d in dets:
        assert set(d) == {"category", "score", "mask", "box", "clip_score", "sam_score"}
        # The score is sqrt of its two factors (zip-no-sam: SAM's factor is 1).
        assert 0.0 <= d["clip_score"] <= 1.0 and 0.0 <= d["sam_score"] <= 1.0
        assert d["score"] == pytest.approx((d["clip_score"] * d["sam_score"]) ** 0.5, rel=1e-5)
        assert d["category"] in names
        assert 0.0 <= d["score"] <= 1.0 and isinstance(d["score"], float)
        assert d["mask"].shape == (H, W) and d["mask"].dtype == bool and d["mask"].any()
        x0, y0, x1, y1 = d["box"]
        assert d["box"].shape == (4,) and 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
        ys, xs = np.nonzero(d["mask"])
        assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1


@pytest.mark.parametrize("method", ["zip", "zip-no-sam", "sam-clip"])
def test_tiny_preset_runs_end_to_end_with_valid_detections(labelers, method):
    lab = labelers[method]
    assert lab.categories == [{"id": i + 1, "name": n} for i, n in enumerate(VOCAB)]
    _check_detections(lab(_image()), _image(), VOCAB)


def test_same_seed_gives_the_same_output():
    a = build_labeler(_cfg())(_image())
    b = build_labeler(_cfg())(_image())
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x["category"] == y["category"] and x["score"] == y["score"]
        assert np.array_equal(x["mask"], y["mask"]) and np.array_equal(x["box"], y["box"])


def test_class_agnostic_mode_outputs_one_category():
    lab = build_labeler(_cfg(CLASS_AGNOSTIC=True, METHOD="zip-no-sam"))
    assert lab.categories == [{"id": 1, "name": "object"}]
    _check_detections(lab(_image()), _image(), ["object"])


def test_classes_given_per_image_restrict_the_categories(labelers):
    dets = labelers["zip-no-sam"](_image(), classes=["dog"])
    _check_detections(dets, _image(), ["dog"])
    assert labelers["zip"](_image(), classes=[]) == []
    with pytest.raises(ValueError, match="not in the vocabulary"):
        labelers["zip"](_image(), classes=["unicorn"])


def test_a_class_gets_the_same_clip_score_whether_classified_or_given(labelers):
    lab = labelers["zip-no-sam"]  # score = sqrt(s_clip): no SAM factor
    image = _image()
    everything = np.arange(len(VOCAB))
    kept, probs, _ = lab.semantic_clues([image], [everything], [False])[0]
    assert len(kept) > 0
    classified = lab(image)
    for c, p in zip(kept, probs):
        name = VOCAB[c]
        (given_kept, given_probs, _), = lab.semantic_clues([image], [np.array([c])], [True])
        assert given_kept.tolist() == [c] and given_probs[0] == p
        given = lab(image, classes=[name])
        assert len(given) > 0
        np.testing.assert_allclose([d["score"] for d in given], np.sqrt(p), rtol=1e-6)
        # The detections classification kept for this class are among the given-class ones,
        # with the same mask and score.
        by_mask = {d["mask"].tobytes(): d["score"] for d in given}
        for d in classified:
            if d["category"] == name:
                assert by_mask[d["mask"].tobytes()] == d["score"]
    # One given class is not certain: its probability over the vocabulary is below 1.
    assert probs.max() < 1.0


def test_without_classification_the_caller_must_give_classes():
    lab = build_labeler(_cfg(**{"CLIP.CLASSIFY": False, "METHOD": "zip-no-sam"}))
    with pytest.raises(ValueError, match="pass the image's classes"):
        lab(_image())
    assert all(d["category"] == "cat" for d in lab(_image(), classes=["cat"]))


def test_bad_images_are_rejected_with_a_clear_error(labelers):
    with pytest.raises(ValueError, match="uint8 RGB"):
        labelers["zip"](_image().astype(np.float32))


@pytest.mark.parametrize("method", ["zip", "zip-no-sam", "sam-clip"])
def test_describe_records_models_thresholds_and_random_weights(labelers, method):
    info = json.loads(json.dumps(labelers[method].describe()))
    assert info["method"] == method and info["random_weights"] is True
    assert (
        info["device"] == "cpu"
        and info["precision"] == "fp32"
        and info["vocabulary"] == ",".join(VOCAB)
    )
    assert info["clip"]["model"] == "zip-tiny-vit" and info["clip"]["weights"] == "random"
    assert info["score"]["nms_iou"] == 0.5
    if method != "sam-clip":
        assert info["boundary"]["num_clusters"] == 8
        assert info["discovery"] == {
            "top_clusters": 8,
            "min_inside_ratio": 0.3,
            "max_box_to_area": 3.0,
            "min_instance_cells": 4,
            "min_inscribed_radius": 0.0,
        }
    if method != "zip-no-sam":
        assert info["sam"]["model_type"] == "tiny"


def test_describe_follows_the_config_sections_each_method_reads(labelers):
    zip_info = labelers["zip"].describe()
    cfg = labelers["zip"].cfg.PSEUDO
    # Every key of every section the labeler reads is recorded, none copied by hand.
    for section in ("CLIP", "BOUNDARY", "DISCOVERY", "SCORE", "SAM"):
        assert set(zip_info[section.lower()]) - {"weights"} == {k.lower() for k in cfg[section]}
    assert "sam_clip" not in zip_info and "cache_dir" not in zip_info
    assert "sam" not in labelers["zip-no-sam"].describe()
    sam_clip = labelers["sam-clip"].describe()
    assert "boundary" not in sam_clip and "discovery" not in sam_clip
    assert sam_clip["sam_clip"]["points_per_side"] == cfg.SAM_CLIP.POINTS_PER_SIDE


def test_semantic_initialisation_option_runs_end_to_end():
    lab = build_labeler(_cfg(**{"BOUNDARY.INIT": "semantic", "METHOD": "zip-no-sam"}))
    _check_detections(lab(_image()), _image(), VOCAB)
    assert lab.describe()["boundary"]["init"] == "semantic"


def test_inscribed_radius_key_reaches_discovery():
    # Two touching squares glued by a straight 2-cell boundary strip in its own cluster.
    cm = np.zeros((30, 50), np.int64)
    cm[5:25, 5:24] = 1
    cm[5:25, 24:26] = 2
    cm[5:25, 26:45] = 1
    regions = (cm > 0)[None]
    found = {}
    for radius in (0.0, 2.0):
        lab = build_labeler(_cfg(**{"METHOD": "zip-no-sam", "DISCOVERY.MIN_INSTANCE_CELLS": 10,
                                    "DISCOVERY.MIN_INSCRIBED_RADIUS": radius}))
        assert lab.describe()["discovery"]["min_inscribed_radius"] == radius
        found[radius] = len(lab.discover(cm, regions)[0])
    assert found == {0.0: 1, 2.0: 2}


def test_point_prompts_and_mask_activation_score_run_end_to_end():
    lab = build_labeler(_cfg(**{"SAM.POINT_PROMPT": True, "SCORE.CLIP_SCORE": "mask_activation"}))
    _check_detections(lab(_image()), _image(), VOCAB)


def test_zip_no_sam_masks_are_the_discovered_grid_instances_upsampled():
    from zip_d2.pseudo.instances import grid_masks_to_image

    grid = np.zeros((1, 4, 5), bool)
    grid[0, 1:3, 2:4] = True
    up = grid_masks_to_image(grid, (8, 10))
    expected = np.zeros((8, 10), bool)
    expected[2:6, 4:8] = True
    np.testing.assert_array_equal(up[0], expected)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="PSEUDO.METHOD"):
        build_labeler(_cfg(METHOD="zipp"))


@pytest.mark.parametrize("key, value", [
    ("PRECISION", "fp8"), ("CLIP.TEMPLATES", "ensemble2"), ("BOUNDARY.INIT", "semantik"),
    ("SAM.MODEL_TYPE", "vit_x"), ("SCORE.CLIP_SCORE", "prob"), ("CLIP.MIN_PROB", 1.5),
    ("BOUNDARY.NUM_CLUSTERS", 0), ("SCORE.NMS_IOU", -0.1), ("DISCOVERY.MAX_BOX_TO_AREA", 0.5),
])
def test_config_values_outside_what_the_labelers_accept_are_one_line_errors(key, value):
    from zip_d2.pseudo import check_config

    check_config(_cfg())  # the preset itself is fine
    with pytest.raises(ValueError, match=rf"^PSEUDO\.{key.replace('.', r'[.]')} must be"):
        check_config(_cfg(**{key: value}))


def test_finish_gives_the_old_labels_from_host_arrays_and_device_tensors(labelers):
    """NMS and boxes where the masks are (numpy on the CPU, a tensor on the labeler's device)
    end in the same COCO annotations, byte for byte, as the pre-change path; masks handed over
    from a tensor arrive in Fortran order so the writer encodes them without a copy."""
    import torch
    from old_postprocess import old_select

    from zip_d2.labels.coco_output import detections_to_annotations

    lab = labelers["zip"]
    rng = np.random.default_rng(0)
    h, w, n = 37, 53, 30
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        y0, x0 = rng.integers(0, h - 1), rng.integers(0, w - 1)
        masks[i, y0:y0 + rng.integers(1, h), x0:x0 + rng.integers(1, w)] = True
    masks[5] = masks[2]          # duplicate with a tied score
    masks[7] = False             # empty
    scores = rng.choice(np.array([0.3, 0.5, 0.8], np.float32), n)
    scores[5] = scores[2]
    class_idx = rng.integers(0, len(VOCAB), n)
    category_ids = {c["name"]: c["id"] for c in lab.categories}

    keep, boxes = old_select(masks, scores, 0.5, 100, 0.0)
    old = [{"category": VOCAB[class_idx[i]], "score": float(scores[i]), "mask": masks[i].copy(),
            "box": b.astype(np.float64)} for i, b in zip(keep, boxes)]
    expected = detections_to_annotations(old, (h, w), w, h, category_ids)
    for given in (masks, torch.from_numpy(masks)):
        dets = lab._finish((h, w), given, scores, class_idx)
        assert [d["category"] for d in dets] == [d["category"] for d in old]
        for d, o in zip(dets, old):
            assert d["score"] == o["score"] and np.array_equal(d["mask"], o["mask"])
            np.testing.assert_array_equal(d["box"], o["box"])
            assert d["mask"].flags.f_contiguous == isinstance(given, torch.Tensor)
        assert detections_to_annotations(dets, (h, w), w, h, category_ids) == expected


def test_mask_activation_score_is_the_same_from_arrays_and_tensors():
    import torch

    from zip_d2.pseudo.pipeline import _mask_activation

    rng = np.random.default_rng(0)
    act = rng.random((3, 9, 11)).astype(np.float32)
    masks = rng.random((5, 9, 11)) < 0.4
    masks[2] = False
    class_of = np.array([0, 2, 1, 1, 0])
    host = _mask_activation(act, class_of, masks)
    from_tensor = _mask_activation(act, class_of, torch.from_numpy(masks))
    np.testing.assert_allclose(from_tensor, host, rtol=1e-6)
    assert host[2] == 0
    np.testing.assert_allclose(host[0], act[0][masks[0]].mean(), rtol=1e-6)
