"""Discovery on hand-built cluster maps and semantic regions whose answers are known."""
import numpy as np
import pytest
from scipy import ndimage

from zip_d2.benchmarks.discovery_reference import discover_instances_loop
from zip_d2.pseudo.instances import (
    DiscoveryParams,
    discover_instances,
    grid_boxes_to_image,
    split_fragments,
)

BG, OBJ, EDGE, OTHER = 0, 1, 2, 3


def _discover(cluster_map, region, **kw):
    kw.setdefault("min_instance_cells", 10)
    return discover_instances(split_fragments(cluster_map), region, DiscoveryParams(**kw))


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
    fast = discover_instances(split_fragments(cm), region, DiscoveryParams(**kw)).masks()
    slow = discover_instances_loop(cm, region, **kw)
    assert len(slow) > 0
    assert sorted(m.tobytes() for m in fast) == sorted(m.tobytes() for m in slow)


def test_grid_boxes_scale_to_image_pixels_and_clip():
    out = grid_boxes_to_image(np.array([[0, 0, 10, 5], [8, 4, 12, 9]]), (8, 12), (64, 96))
    np.testing.assert_allclose(out, [[0, 0, 80, 40], [64, 32, 96, 64]])


def _brute_force_radius(labels):
    """Per fragment: the largest distance from one of its cells to the nearest cell that has a
    4-neighbour in another fragment, cell by cell."""
    h, w = labels.shape
    edges = [(y, x) for y in range(h) for x in range(w)
             if any(0 <= y + dy < h and 0 <= x + dx < w and labels[y + dy, x + dx] != labels[y, x]
                    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)))]
    e = np.array(edges, float)
    out = np.zeros(labels.max() + 1)
    for y in range(h):
        for x in range(w):
            d = np.sqrt(((e - (y, x)) ** 2).sum(axis=1)).min()
            out[labels[y, x]] = max(out[labels[y, x]], d)
    return out


def test_inscribed_radius_is_the_thickness_of_each_fragment():
    cm = np.full((20, 30), BG)
    cm[2:4, 2:28] = OBJ       # a strip 2 cells wide: every cell touches another fragment
    cm[6:9, 2:28] = EDGE      # 3 wide: the middle row is 1 cell from the edge
    cm[10:19, 10:19] = OTHER  # a 9x9 square: the centre is 4 cells from its edge
    fr = split_fragments(cm)
    radius = {int(fr.cluster[i]): float(fr.inscribed_radius[i]) for i in range(fr.count)
              if fr.cluster[i] != BG}
    assert radius == {OBJ: 0.0, EDGE: 1.0, OTHER: 4.0}
    # The image border is not an edge: the same 3-wide strip along the top border is thicker.
    top = np.full((10, 30), BG)
    top[0:3, 2:28] = EDGE
    fr = split_fragments(top)
    assert fr.inscribed_radius[fr.labels[0, 5]] == 2.0
    assert split_fragments(np.zeros((5, 5), int)).inscribed_radius.tolist() == [np.inf]


@pytest.mark.parametrize("seed", [0, 1])
def test_inscribed_radius_matches_a_cell_by_cell_computation(seed):
    rng = np.random.default_rng(seed)
    cm = rng.integers(0, 4, size=(6, 8)).repeat(3, 0).repeat(3, 1)
    cm[rng.random(cm.shape) < 0.08] = 4
    fr = split_fragments(cm)
    np.testing.assert_allclose(fr.inscribed_radius, _brute_force_radius(fr.labels), rtol=1e-5)


def _straight_boundary_pair():
    """Two touching squares of one class, a straight 2-cell boundary strip between them in its
    own cluster (not joined to any outline): the case the paper's box test lets through."""
    cm = np.full((30, 50), BG)
    cm[5:25, 5:24] = OBJ
    cm[5:25, 24:26] = EDGE
    cm[5:25, 26:45] = OBJ
    region = np.zeros(cm.shape, bool)
    region[5:25, 5:45] = True
    return cm, region


def test_thinness_rule_separates_objects_glued_by_a_straight_boundary_strip():
    cm, region = _straight_boundary_pair()
    frags = split_fragments(cm)
    strip = frags.labels[10, 24]
    assert frags.box_area[strip] == frags.size[strip]  # box/area = 1 < 3: the paper keeps it
    assert len(discover_instances(frags, region, DiscoveryParams(min_instance_cells=10))) == 1
    inst = discover_instances(frags, region,
                              DiscoveryParams(min_instance_cells=10, min_inscribed_radius=2.0))
    left, right = np.zeros(cm.shape, bool), np.zeros(cm.shape, bool)
    left[5:25, 5:24] = True
    right[5:25, 26:45] = True
    assert {m.tobytes() for m in inst.masks()} == {left.tobytes(), right.tobytes()}


def test_thinness_rule_keeps_isolated_objects_of_several_shapes():
    cm = np.full((40, 90), BG)
    yy, xx = np.mgrid[:40, :90]
    cm[(yy - 12) ** 2 + (xx - 12) ** 2 <= 7 ** 2] = OBJ   # a small disc (radius 7)
    cm[25:35, 5:15] = OBJ                                 # a 10x10 square
    cm[5:30, 40:47] = OTHER                               # a cross with arms 7 cells wide
    cm[14:21, 31:56] = OTHER
    cm[10:14, 70:88] = EDGE                               # a 4-cell-wide bar: too thin
    region = cm != BG
    paper = discover_instances(split_fragments(cm), region, DiscoveryParams(min_instance_cells=10))
    plus = discover_instances(split_fragments(cm), region,
                              DiscoveryParams(min_instance_cells=10, min_inscribed_radius=2.0))
    assert len(paper) == 4
    assert {m.tobytes() for m in plus.masks()} == {m.tobytes() for m in paper.masks()
                                                   if not m[10:14, 70:88].any()}
