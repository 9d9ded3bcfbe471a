"""Discovery-made pseudo-labels (constructed features + the real discovery step) and their tool."""
import json

import numpy as np
import pytest
from conftest import run_tool

from zip_d2.data.coco_json import load_json
from zip_d2.data.rle import segmentation_to_mask
from zip_d2.data.validate import validate_coco
from zip_d2.pseudo.discovery_labels import (
    DISCOVERY_LABEL,
    DiscoveryLabelParams,
    discover_image,
    discovery_pseudo_labels,
    grid_labels,
)
from zip_d2.pseudo.instances import grid_masks_to_image


def test_grid_labels_take_the_majority_label_and_report_each_labels_cover():
    m = np.zeros((4, 6), np.int32)
    m[0:2, 0:2] = 1           # fills cell (0, 0)
    m[0:2, 2] = 2             # half of cell (0, 1): tie with background -> lower label (0)
    m[2:4, 4:6] = 2
    m[3, 5] = 1               # cell (1, 2): 3 of 4 pixels label 2
    grid, cover = grid_labels(m, (2, 3))
    np.testing.assert_array_equal(grid, [[1, 0, 0], [0, 0, 2]])
    assert cover.shape == (3, 2, 3)
    np.testing.assert_allclose(cover.sum(axis=0), 1.0)
    assert cover[2, 0, 1] == 0.5 and cover[2, 1, 2] == 0.75 and cover[1, 1, 2] == 0.25
    # The inverse mapping: upsampling the grid back covers whole 2x2 blocks.
    up = grid_masks_to_image((grid == 2)[None], (4, 6))[0]
    assert up.sum() == 4 and up[2:4, 4:6].all()


def _two_touching_squares():
    m = np.zeros((48, 72), np.int32)
    m[12:36, 10:34] = 1
    m[12:36, 34:58] = 2  # same class, touching along a straight edge
    return m, np.array([0, 1, 1])


def _share_inside(mask, objects):
    """Fraction of each object's pixels that lie inside ``mask``."""
    return [float((mask & (objects == i)).sum() / (objects == i).sum()) for i in (1, 2)]


def test_paper_rule_merges_touching_squares_and_the_thinness_rule_separates_them():
    objects, classes = _two_touching_squares()
    params = dict(stride=2, min_instance_cells=10)
    rng = np.random.default_rng(2)
    masks, cats, scores = discover_image(objects, classes, DiscoveryLabelParams(**params), rng)
    # Paper rule: the boundary strip (box about its own area) is kept and glues both squares.
    assert len(masks) == 1 and cats.tolist() == [1]
    assert min(_share_inside(masks[0], objects)) > 0.5
    rng = np.random.default_rng(2)
    masks, cats, scores = discover_image(
        objects, classes, DiscoveryLabelParams(**params, min_inscribed_radius=2.0), rng)
    assert len(masks) == 2 and cats.tolist() == [1, 1]
    owners = set()
    for mask in masks:  # each mask lies (almost) entirely on one square, a different one each
        on = [(mask & (objects == i)).sum() / mask.sum() for i in (1, 2)]
        assert max(on) > 0.9
        owners.add(int(np.argmax(on)))
    assert owners == {0, 1}
    # Masks are whole grid cells (2x2 pixel blocks), and scores are activations in [0, 1].
    for mask in masks:
        np.testing.assert_array_equal(mask[::2, ::2].repeat(2, 0).repeat(2, 1), mask)
    assert np.all((scores > 0) & (scores <= 1)) and np.all(np.diff(scores) <= 0)


def test_an_image_without_objects_gets_no_labels():
    masks, cats, scores = discover_image(np.zeros((32, 40), np.int32), np.array([0]),
                                         DiscoveryLabelParams(), np.random.default_rng(0))
    assert masks.shape == (0, 32, 40) and cats.shape == (0,) and scores.shape == (0,)


def test_labels_of_an_image_do_not_depend_on_the_other_images(synthetic_dataset):
    gt = load_json(synthetic_dataset["train"])
    params = DiscoveryLabelParams(min_inscribed_radius=2.0, min_instance_cells=10)
    full = discovery_pseudo_labels(gt, params, seed=3, source="x.json")
    assert full["info"]["description"].startswith(DISCOVERY_LABEL)
    assert full["info"]["discovery_made"] and full["info"]["features"] == "constructed"
    assert full["info"]["discovery"]["params"]["min_inscribed_radius"] == 2.0
    assert full["info"]["discovery"]["seed"] == 3
    assert validate_coco(full, check_segmentations=True) == []
    assert full["categories"] == gt["categories"] and full["images"] == gt["images"]
    assert len(full["annotations"]) > 0
    assert all(0 < a["score"] <= 1 for a in full["annotations"])
    # The same image alone gets the same labels (features are seeded by seed and image id).
    last = gt["images"][-1]
    alone = discovery_pseudo_labels(
        {**gt, "images": [last],
         "annotations": [a for a in gt["annotations"] if a["image_id"] == last["id"]]},
        params, seed=3)

    def masks(data):
        return [(a["category_id"], a["score"], segmentation_to_mask(a["segmentation"],
                                                                    last["height"],
                                                                    last["width"]).tobytes())
                for a in data["annotations"] if a["image_id"] == last["id"]]
    assert masks(alone) == masks(full) and masks(full)
    other_seed = discovery_pseudo_labels(gt, params, seed=4)
    assert json.dumps(other_seed["annotations"]) != json.dumps(full["annotations"])


def test_tool_writes_labelled_json_and_rejects_bad_input_in_one_line(synthetic_dataset, tmp_path):
    out = tmp_path / "labels.json"
    res = run_tool("make_discovery_labels.py", "--gt", synthetic_dataset["val"], "--out", out,
                   "--min-inscribed-radius", "2", "--min-instance-cells", "10", "--seed", "1",
                   timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert DISCOVERY_LABEL in res.stdout and "thinness rule" in res.stdout
    data = load_json(str(out))
    assert data["info"]["discovery"]["rule"].startswith("thinness rule")
    assert data["info"]["discovery"]["seed"] == 1
    missing = run_tool("make_discovery_labels.py", "--gt", tmp_path / "none.json", "--out", out,
                       timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("make_discovery_labels: error:")
    assert load_json(str(out)) == data  # the failed run left the earlier output alone


def test_impossible_settings_are_refused_before_any_work(synthetic_dataset, tmp_path):
    for bad in ({"stride": 0}, {"min_inscribed_radius": -1.0}, {"num_clusters": 1},
                {"kmeans_iters": 0}, {"feature_dim": 0}, {"nms_iou": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DiscoveryLabelParams(**bad)
    res = run_tool("make_discovery_labels.py", "--gt", synthetic_dataset["val"], "--out",
                   tmp_path / "x.json", "--stride", "0", timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == ("make_discovery_labels.py: error: stride "
                                                   "must be >= 1, got 0")
    assert not (tmp_path / "x.json").exists()


def test_a_noisy_namer_names_by_the_nearest_embedding_within_its_vocabulary():
    from zip_d2.pseudo.discovery_labels import NoisyNamer
    emb = {1: np.array([1.0, 0, 0]), 2: np.array([0, 1.0, 0]), 3: np.array([0.6, 0.8, 0])}
    classes = np.array([1, 2, 3, 3, 1])
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(NoisyNamer(emb, 0.0)(classes, rng), classes)
    # Without class 3 in the vocabulary, its objects take the nearest other name (2).
    np.testing.assert_array_equal(NoisyNamer(emb, 0.0, (1, 2))(classes, rng), [1, 2, 2, 2, 1])
    many = np.repeat([1, 2, 3], 300)
    named = NoisyNamer(emb, 0.5)(many, np.random.default_rng(1))
    wrong = named != many
    assert 0.05 < wrong.mean() < 0.6 and set(named) <= {1, 2, 3}
    assert (named == NoisyNamer(emb, 0.5)(many, np.random.default_rng(1))).all()


def test_named_labels_record_the_confusion_of_every_object(synthetic_dataset):
    from zip_d2.pseudo.discovery_labels import NoisyNamer
    gt = load_json(synthetic_dataset["val"])
    ids = [c["id"] for c in gt["categories"]]
    namer = NoisyNamer({i: np.eye(len(ids))[k] for k, i in enumerate(ids)}, 0.6)
    data = discovery_pseudo_labels(gt, seed=0, namer=namer)
    confusion = data["info"]["naming"]["confusion"]
    names = {c["name"] for c in gt["categories"]}
    assert set(confusion) <= names and all(set(row) <= names for row in confusion.values())
    objects = sum(1 for a in gt["annotations"] if not a.get("iscrowd", 0))
    assert sum(sum(row.values()) for row in confusion.values()) == objects
    assert sum(row.get(true, 0) for true, row in confusion.items()) < objects  # some misnamed
    assert "noisy classifier" in data["info"]["description"]
    assert not validate_coco(data, check_segmentations=True)
