"""Zip's discovery written the straightforward way, one fragment at a time, as in the
authors' demo (scikit-image labelling and ``regionprops`` per cluster and per fragment).

Not used by the pipeline: it is the oracle the vectorised ``instances.discover_instances`` is
tested against (tests/test_pseudo_instances.py) and the baseline
``tools/bench/benchmark_discovery.py`` times it against.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
from skimage.measure import label, regionprops

__all__ = ["discover_instances_loop"]


def discover_instances_loop(cluster_map: np.ndarray, region: np.ndarray, top_clusters: int = 20,
                            min_inside_ratio: float = 0.3, max_box_to_area: float = 3.0,
                            min_instance_cells: int = 100) -> np.ndarray:
    """Same inputs as ``discover_instances`` (cluster map instead of fragments).

    Returns (N, h, w) bool instance masks, ordered by their first cell in raster order.
    """
    region = region.astype(bool)
    masked = np.where(region, cluster_map + 1, 0)
    ranked = [lab for lab, _ in Counter(masked.ravel().tolist()).most_common(top_clusters)]
    union = np.zeros(region.shape, bool)
    for lab in ranked:
        if lab == 0:
            continue
        fragments = label(cluster_map == lab - 1, connectivity=1)
        for prop in regionprops(fragments):
            frag = fragments == prop.label
            inside = np.logical_and(frag, region).sum() / prop.area
            minr, minc, maxr, maxc = prop.bbox
            elongation = (maxr - minr) * (maxc - minc) / prop.area
            if inside > min_inside_ratio and elongation < max_box_to_area:
                union |= frag
    inst = label(union, connectivity=1)
    return np.array([inst == p.label for p in regionprops(inst) if p.area >= min_instance_cells],
                    dtype=bool).reshape(-1, *region.shape)
