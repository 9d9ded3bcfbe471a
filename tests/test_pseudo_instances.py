"""Discovery on hand-built cluster maps and semantic regions whose answers are known."""
import numpy as np
import pytest
from discovery_reference import discover_instances_loop
from scipy import ndimage

from zip_d2.pseudo.instances import discover_instances, grid_boxes_to_image, split_fragments

BG, OBJ, EDGE, OTHER = 0, 1, 2, 3


def _discover(cluster_map, region, **kw):
    kw.setdefault("min_instance_cells", 10)
    return discover_instances(split_fragments(cluster_map), region, **kw)


def _two_touching_objects():
    """Two same-class objects side by side; the mid-layer puts their outlines (and the shared
    edge) in their own cluster, as the paper observes for CLIP's layer3."""
    cm = np.full((30, 50), BG)
    region = np.zeros((30, 50), bool)
    for x0, x1 in ((5, 25), (25, 45)):  # touching at column 25
        cm[5:25, x0:x1] = EDGE
        cm[6:24, x0 + 1:x1 - 1] = OBJ
        region[5:25, x0:x1] = True
    return cm, region


def test_two_touching_objects_separated_by_a_boundary_cluster_come_out_as_two_instances():
    cm, region = _two_touching_objects()
    assert ndimage.label(region)[1] == 1  # the activation alone merges them
    inst = _discover(cm, region)
    assert len(inst) == 2
    masks = inst.masks()
    left, right = np.zeros_like(region), np.zeros_like(region)
    left[6:24, 6:24] = True
    right[6:24, 26:44] = True
    assert {m.tobytes() for m in masks} == {left.tobytes(), right.tobytes()}
    np.testing.assert_array_equal(np.sort(inst.boxes, axis=0), [[6, 6, 24, 24], [26, 6, 44, 24]])


def test_thin_boundary_fragment_is_removed_but_a_compact_one_is_kept():
    cm = np.full((40, 40), BG)
    region = np.zeros((40, 40), bool)
    region[2:38, 2:38] = True
    # An L-shaped one-cell-wide fragment: 39 cells in a 20x20 box, elongation ~10.
    cm[5, 5:25] = EDGE
    cm[5:25, 5] = EDGE
    cm[28:36, 28:36] = OBJ
    inst = _discover(cm, region, min_instance_cells=1)
    covered = inst.labels > 0
    assert not covered[cm == EDGE].any()
    assert covered[cm == OBJ].all()


def test_fragment_mostly_outside_the_activation_is_rejected():
    cm = np.full((30, 60), BG)
    cm[5:15, 5:15] = OBJ      # 20 % inside the region below
    cm[5:15, 35:45] = OTHER   # 40 % inside
    region = np.zeros((30, 60), bool)
    region[5:7, 5:15] = True
    region[5:9, 35:45] = True
    inst = _discover(cm, region)
    covered = inst.labels > 0
    assert not covered[cm == OBJ].any()
    assert covered[cm == OTHER].all() and len(inst) == 1


def test_instances_smaller_than_min_cells_are_dropped():
    cm = np.full((30, 60), BG)
    cm[2:12, 2:12] = OBJ      # 100 cells
    cm[20:27, 40:47] = OBJ    # 49 cells
    region = cm == OBJ
    assert len(_discover(cm, region, min_instance_cells=50)) == 1
    assert sorted(_discover(cm, region, min_instance_cells=49).areas.tolist()) == [49, 100]


def test_only_top_ranked_clusters_are_used_and_outside_takes_a_slot():
    cm = np.full((20, 40), BG)
    cm[2:10, 2:10] = OBJ      # 64 cells inside
    cm[12:16, 20:24] = OTHER  # 16 cells inside
    region = (cm == OBJ) | (cm == OTHER)
    # Slots: "outside" (720 cells), then OBJ; OTHER is third and falls off.
    inst = _discover(cm, region, top_clusters=2, min_instance_cells=1)
    assert inst.areas.tolist() == [64]
    assert len(_discover(cm, region, top_clusters=3, min_instance_cells=1)) == 2


def test_ranking_ties_go_to_the_cluster_seen_first_in_raster_order():
    cm = np.full((10, 30), BG)
    cm[6:9, 2:8] = OBJ       # 18 cells, lower cluster id, first seen at row 6
    cm[1:4, 20:26] = OTHER   # 18 cells, higher cluster id, first seen at row 1
    region = (cm == OBJ) | (cm == OTHER)
    inst = _discover(cm, region, top_clusters=2, min_instance_cells=1)
    assert inst.labels[1:4, 20:26].all() and not inst.labels[6:9, 2:8].any()


def test_fragments_are_4_connected_runs_of_one_cluster():
    cm = np.array([[1, 1, 0, 1],
                   [0, 1, 0, 1],
                   [1, 0, 0, 2]])
    fr = split_fragments(cm)
    # {1,1,1 top-left}, {0 at (1,0)}, {0 column+(2,1)(2,2)}, {1,1 right}, {1 at (2,0)}, {2}
    assert fr.count == 6
    assert sorted(fr.size.tolist()) == [1, 1, 1, 2, 3, 4]
    assert (
        fr.labels[0, 0] == fr.labels[1, 1] and fr.labels[2, 0] != fr.labels[1, 1]
    )  # no diagonal link
    i = fr.labels[0, 3]
    assert fr.cluster[i] == 1 and fr.box_area[i] == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_discovery_matches_the_per_fragment_loop(seed):
    rng = np.random.default_rng(seed)
    cm = rng.integers(0, 12, size=(17, 22)).repeat(6, 0).repeat(6, 1)[:96, :128]
    cm[rng.random(cm.shape) < 0.05] = 12  # speckle makes thin and odd-shaped fragments
    region = np.zeros(cm.shape, bool)
    region[10:80, 15:100] = True
    kw = dict(top_clusters=8, min_inside_ratio=0.3, max_box_to_area=3.0, min_instance_cells=20)
    fast = discover_instances(split_fragments(cm), region, **kw).masks()
    slow = discover_instances_loop(cm, region, **kw)
    assert len(slow) > 0
    assert sorted(m.tobytes() for m in fast) == sorted(m.tobytes() for m in slow)


def test_grid_boxes_scale_to_image_pixels_and_clip():
    out = grid_boxes_to_image(np.array([[0, 0, 10, 5], [8, 4, 12, 9]]), (8, 12), (64, 96))
    np.testing.assert_allclose(out, [[0, 0, 80, 40], [64, 32, 96, 64]])
