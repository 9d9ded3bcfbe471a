"""Discovery: fragments of the boundary-prior clusters -> selected fragments -> instances.

Everything happens on the clustering grid (stride 16 of the boundary trunk's input). The
labelling of the cluster map into fragments is shared by every class of an image; each class
then only needs one ``bincount`` for its overlap with the semantic region. No Python loop runs
over fragments, clusters or instances.

Besides the paper's two fragment tests, :func:`discover_instances` offers one that is not in the
paper, off by default: ``min_inscribed_radius`` drops fragments that are thin everywhere (the
straight boundary strips the paper's box test keeps), measured by ``Fragments.inscribed_radius``.

Every setting of the stage is a field of :class:`DiscoveryParams` (PSEUDO.DISCOVERY), with its
bounds: a new rule is a field here, its test in :func:`discover_instances`, a key in
``zip_d2/config.py`` and its value in the presets that use it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np
from skimage.measure import label as _label_equal_values

from .params import StageParams, setting

__all__ = ["DiscoveryParams", "Fragments", "Instances", "split_fragments", "discover_instances",
           "grid_boxes_to_image", "grid_masks_to_image"]


@dataclass(frozen=True)
class DiscoveryParams(StageParams):
    """Settings of :func:`discover_instances` (PSEUDO.DISCOVERY); grid quantities in cells.

    top_clusters: clusters ranked by cells inside the class region A; as in the authors' demo
        the "outside A" label takes one of these slots when it is among the most frequent.
    min_inside_ratio: keep a fragment iff |f ∩ A| / |f| > this.
    max_box_to_area: keep a fragment iff bbox_area(f) / |f| < this (drops the thin fragments
        that lie along boundaries between touching objects).
    min_instance_cells: drop instances (4-connected components of the kept fragments' union)
        smaller than this.
    min_inscribed_radius: not in the paper, optional (0 = off): also require
        ``fragments.inscribed_radius >= this``. The box test keeps a straight boundary strip
        (its box is about its own area), which then glues two touching objects into one
        instance; a strip 1-4 cells wide has radius <= 1, an object's own fragments far more.
        2 separates touching objects on constructed features without losing isolated ones
        (``tools/bench/benchmark_separation.py``). Fragments that are thin all along, such as
        stripes of a striped object, are dropped too.
    """

    config_key: ClassVar[str] = "PSEUDO.DISCOVERY"

    top_clusters: int = setting(20, low=1)
    min_inside_ratio: float = setting(0.3, low=0.0, high=1.0)
    max_box_to_area: float = setting(3.0, low=1.0)
    min_instance_cells: int = setting(100, low=0)
    min_inscribed_radius: float = setting(0.0, low=0.0)


@dataclass
class Fragments:
    """The 4-connected components of each cluster of a cluster map.

    labels: (h, w) int32, fragment id 0..F-1 of every cell (every cell belongs to one fragment).
    cluster: (F,) int64, the cluster each fragment belongs to.
    size: (F,) int64, cells per fragment.
    box_area: (F,) int64, area of each fragment's bounding box in cells.
    inscribed_radius: (F,) float32, the fragment's thickness: the largest Euclidean distance
        (in cells) from one of its cells to the nearest *edge cell*, a cell with a 4-neighbour
        in another fragment. A strip 1-2 cells wide has 0, 3-4 wide 1, a disc of radius R about
        R - 1. The image border is not an edge; a map of one fragment gets inf.
    """

    labels: np.ndarray
    cluster: np.ndarray
    size: np.ndarray
    box_area: np.ndarray
    inscribed_radius: np.ndarray

    @property
    def count(self) -> int:
        return int(self.size.shape[0])


@dataclass
class Instances:
    """Discovered instances of one class on the grid.

    labels: (h, w) int32, 0 = no instance, i = instance i (1-based, in ``boxes`` order + 1).
    boxes: (N, 4) float64 XYXY in grid cells (x1, y1 exclusive).
    areas: (N,) int64 cells.
    """

    labels: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray

    def __len__(self) -> int:
        return int(self.areas.shape[0])

    def masks(self) -> np.ndarray:
        """(N, h, w) bool, one mask per instance."""
        ids = np.arange(1, len(self) + 1, dtype=np.int32)
        return self.labels[None] == ids[:, None, None]


def split_fragments(cluster_map: np.ndarray) -> Fragments:
    """Label every 4-connected run of equal cluster ids as one fragment, in one pass.

    cluster_map: (h, w) integer cluster id per cell (any non-negative ids).
    """
    cm = np.ascontiguousarray(cluster_map)
    # background=-1 never occurs, so every cell is labelled; equal neighbouring values join.
    labels = _label_equal_values(cm, background=-1, connectivity=1).astype(np.int32) - 1
    flat = labels.ravel()
    n = int(flat.max()) + 1 if flat.size else 0
    size = np.bincount(flat, minlength=n)
    h, w = cm.shape
    # Bounding boxes from one stable sort by fragment: reduceat over each fragment's run.
    order = np.argsort(flat, kind="stable")
    starts = np.concatenate(([0], np.cumsum(size)[:-1]))
    rows, cols = np.divmod(order, w)
    y0 = np.minimum.reduceat(rows, starts)
    y1 = np.maximum.reduceat(rows, starts)
    x0 = np.minimum.reduceat(cols, starts)
    x1 = np.maximum.reduceat(cols, starts)
    box_area = (y1 - y0 + 1).astype(np.int64) * (x1 - x0 + 1)
    cluster = cm.ravel()[order[starts]].astype(np.int64)
    # Thickness: one exact Euclidean distance transform to the edge cells of all fragments
    # (shared by every fragment and every class), then the maximum over each fragment's run.
    edge = np.zeros((h, w), bool)
    across = labels[:, 1:] != labels[:, :-1]
    edge[:, 1:] |= across
    edge[:, :-1] |= across
    down = labels[1:] != labels[:-1]
    edge[1:] |= down
    edge[:-1] |= down
    if edge.any():
        dist = cv2.distanceTransform((~edge).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        radius = np.maximum.reduceat(dist.ravel()[order], starts)
    else:  # one fragment, no edge anywhere (the transform would return a huge placeholder)
        radius = np.full(n, np.inf, np.float32)
    return Fragments(labels=labels, cluster=cluster, size=size.astype(np.int64), box_area=box_area,
                     inscribed_radius=radius.astype(np.float32))


def discover_instances(fragments: Fragments, region: np.ndarray,
                       params: DiscoveryParams = DiscoveryParams()) -> Instances:
    """Zip's discovery for one class.

    fragments: from :func:`split_fragments` of the image's cluster map.
    region: (h, w) bool semantic region A of the class.
    params: the fragment and instance tests (:class:`DiscoveryParams`).
    """
    region = np.asarray(region, dtype=bool)
    flat = fragments.labels.ravel()
    inside = np.bincount(flat, weights=region.ravel(), minlength=fragments.count)

    n_clusters = int(fragments.cluster.max()) + 1 if fragments.count else 0
    # The demo ranks the labels {0 = outside A, c + 1 = cluster c inside A} by count with
    # Counter.most_common, whose ties go to the label seen first in raster order.
    masked = np.where(region.ravel(), fragments.cluster[flat] + 1, 0)
    values, first_seen, counts = np.unique(masked, return_index=True, return_counts=True)
    order = values[np.lexsort((first_seen, -counts))][:params.top_clusters]
    ranked = np.zeros(n_clusters + 1, dtype=bool)
    ranked[order] = True
    ranked_cluster = ranked[1:]

    keep = (ranked_cluster[fragments.cluster]
            & (inside > params.min_inside_ratio * fragments.size)
            & (fragments.box_area < params.max_box_to_area * fragments.size)
            & (fragments.inscribed_radius >= params.min_inscribed_radius))
    union = keep[fragments.labels].astype(np.uint8)

    n, labels, stats, _ = cv2.connectedComponentsWithStats(union, connectivity=4, ltype=cv2.CV_32S)
    stats = stats[1:]
    big = stats[:, cv2.CC_STAT_AREA] >= params.min_instance_cells
    relabel = np.zeros(n, dtype=np.int32)
    relabel[1:][big] = np.arange(1, int(big.sum()) + 1, dtype=np.int32)
    stats = stats[big]
    x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    boxes = np.stack([x, y, x + stats[:, cv2.CC_STAT_WIDTH], y + stats[:, cv2.CC_STAT_HEIGHT]],
                     axis=1).astype(np.float64).reshape(-1, 4)
    return Instances(
        labels=relabel[labels], boxes=boxes, areas=stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    )


def grid_boxes_to_image(boxes: np.ndarray, grid_hw, image_hw) -> np.ndarray:
    """(N, 4) XYXY grid-cell boxes -> (N, 4) float XYXY image pixels, clipped to the image."""
    (gh, gw), (H, W) = grid_hw, image_hw
    scale = np.array([W / gw, H / gh, W / gw, H / gh])
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale
    out[:, 0::2] = out[:, 0::2].clip(0, W)
    out[:, 1::2] = out[:, 1::2].clip(0, H)
    return out


def grid_masks_to_image(grid_masks: np.ndarray, image_hw) -> np.ndarray:
    """(N, h, w) bool grid masks -> (N, H, W) bool image masks, nearest neighbour
    (cell = floor(pixel * h / H)): each cell becomes a block of pixels."""
    H, W = image_hw
    h, w = grid_masks.shape[1:]
    rows = np.minimum((np.arange(H) * h) // H, h - 1)
    cols = np.minimum((np.arange(W) * w) // W, w - 1)
    return grid_masks[:, rows[:, None], cols[None, :]]
