"""Constructed boundary-aware features: stand-ins for CLIP's layer3 on synthetic scenes.

Zip's discovery relies on one property of a CLIP mid-layer: some of its k-means clusters lie on
the boundaries between touching objects. Real weights cannot be fetched on the project's
machines, so experiments build feature maps with that property from the ground truth (one
feature per object, one shared "boundary" feature along edges, smooth noise) and run the
project's real k-means and discovery on them. This tests the mechanism, not CLIP: label every
number made this way "constructed features".

- :func:`packed_discs`: an instance map of discs, some touching a neighbour along a short
  straight chord (the case where the paper's fragment test fails), others standing apart;
- :func:`boundary_aware_features`: the feature map of an instance map;
- :func:`class_activation` / :func:`activation_region`: a stand-in for a class's CLIP
  activation from its ground-truth mask (blurred, normalised to [0, 1]), and the class region
  thresholded from it the way Zip thresholds its CLIP activation;
- :func:`separation_counts`: how well a set of instance masks separates the objects.
"""
from typing import Sequence, Tuple

import numpy as np
from scipy import ndimage

__all__ = ["packed_discs", "touching_pairs", "boundary_aware_features", "class_activation",
           "activation_region", "separation_counts"]


def packed_discs(rng: np.random.Generator, grid_hw: Tuple[int, int] = (128, 171),
                 num_discs: int = 8, touch_prob: float = 0.6,
                 radius: Tuple[float, float] = (7.0, 16.0), overlap: float = 0.92,
                 gap: float = 4.0, min_cells: int = 120, tries: int = 100) -> np.ndarray:
    """(h, w) int32 instance map: 0 background, 1..M discs (M <= ``num_discs``).

    Discs are placed one by one, radius uniform in ``radius`` (grid cells). With probability
    ``touch_prob`` a disc touches a random earlier one: centres ``overlap * (r1 + r2)`` apart,
    so the two meet along a short straight chord (the later disc covers the overlap), as the
    synthetic scenes of :mod:`zip_d2.data.synthetic` place touching objects. A touching disc
    overlaps no other disc; any other disc keeps ``gap`` cells from all. A disc that finds no
    place in ``tries`` draws is left out, and so is one with fewer than ``min_cells`` visible
    cells; the rest are numbered in placement order.
    """
    h, w = grid_hw
    discs = []  # (cy, cx, r)
    for _ in range(num_discs):
        r = rng.uniform(*radius)
        for _ in range(tries):
            partner = int(rng.integers(len(discs))) if discs and rng.random() < touch_prob else -1
            if partner >= 0:
                py, px, pr = discs[partner]
                theta = rng.uniform(0, 2 * np.pi)
                cy = py + overlap * (pr + r) * np.sin(theta)
                cx = px + overlap * (pr + r) * np.cos(theta)
            else:
                cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            if not (r / 2 <= cy <= h - r / 2 and r / 2 <= cx <= w - r / 2):
                continue
            others = np.array([d for i, d in enumerate(discs) if i != partner]).reshape(-1, 3)
            dist = np.hypot(others[:, 0] - cy, others[:, 1] - cx)
            if np.all(dist >= others[:, 2] + r + (0.0 if partner >= 0 else gap)):
                discs.append((cy, cx, r))
                break
    yy, xx = np.mgrid[:h, :w]
    instance_map = np.zeros((h, w), np.int32)
    for i, (cy, cx, r) in enumerate(discs, 1):
        instance_map[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    visible = np.bincount(instance_map.ravel(), minlength=len(discs) + 1)
    keep = np.flatnonzero(visible >= min_cells)
    renumber = np.zeros(len(discs) + 1, np.int32)
    renumber[keep[keep > 0]] = np.arange(1, int((keep > 0).sum()) + 1, dtype=np.int32)
    return renumber[instance_map]


def touching_pairs(instance_map: np.ndarray) -> set:
    """{(a, b), a < b}: pairs of instances with 4-adjacent cells."""
    a = np.concatenate([instance_map[:, 1:].ravel(), instance_map[1:].ravel()])
    b = np.concatenate([instance_map[:, :-1].ravel(), instance_map[:-1].ravel()])
    meet = (a != b) & (a > 0) & (b > 0)
    return {(int(min(x, y)), int(max(x, y))) for x, y in set(zip(a[meet], b[meet]))}


def boundary_aware_features(instance_map: np.ndarray, rng: np.random.Generator, dim: int = 16,
                            separation: float = 3.0, noise: float = 2.0,
                            noise_sigma: float = 2.0) -> np.ndarray:
    """(h, w, dim) float32 features with the property Zip's discovery relies on.

    Every instance and the background get their own random prototype (standard deviation
    ``separation`` per channel); every cell whose 3x3 neighbourhood holds another label (the
    boundary between two objects or between an object and the background, 2 cells wide) gets
    one shared "boundary" prototype instead. Gaussian noise of scale ``noise``, smoothed over
    ``noise_sigma`` cells (CNN features vary smoothly in space), is added everywhere.
    """
    instance_map = np.asarray(instance_map)
    m = int(instance_map.max())
    boundary = ndimage.morphological_gradient(instance_map, size=3) > 0
    prototypes = rng.normal(size=(m + 2, dim)) * separation
    smooth = ndimage.gaussian_filter(rng.normal(size=instance_map.shape + (dim,)),
                                     sigma=(noise_sigma, noise_sigma, 0)) * noise
    return np.where(boundary[..., None], prototypes[m + 1], prototypes[instance_map]).astype(
        np.float32) + smooth.astype(np.float32)


def class_activation(mask: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """(h, w) float64 activation in [0, 1] from a (h, w) ground-truth mask (bool, or the
    fraction of each cell the class covers): blurred over ``sigma`` cells, a stand-in for CLIP's
    coarse activation, then min-max normalised as Zip normalises each class's activation. An
    empty mask gives zeros."""
    act = ndimage.gaussian_filter(np.asarray(mask, np.float64), sigma)
    low, span = act.min(), np.ptp(act)
    return (act - low) / span if span > 0 else np.zeros_like(act)


def activation_region(mask: np.ndarray, sigma: float = 1.0, ratio: float = 0.7) -> np.ndarray:
    """(h, w) bool class region from a (h, w) ground-truth mask: Zip's rule on
    :func:`class_activation`, activation > ratio * mean(activation)."""
    act = class_activation(mask, sigma)
    return act > ratio * act.mean()


def separation_counts(instance_map: np.ndarray, masks: Sequence[np.ndarray],
                      iou_threshold: float = 0.5) -> dict:
    """How well instance masks separate the objects of an instance map.

    instance_map: (h, w) int, 0 background, 1..M objects; masks: (N, h, w) bool predictions.
    Returns {"objects": M, "recovered": objects matched by some mask at IoU >= threshold,
    "merged_pairs": pairs of objects with more than half of each inside one mask,
    "over_split": objects of which two or more masks each hold at least 20 %,
    "background": masks with more than half their area on background}.
    """
    instance_map = np.asarray(instance_map)
    m = int(instance_map.max())
    masks = np.asarray(masks, bool).reshape(-1, *instance_map.shape)
    n = len(masks)
    # Which mask covers each cell (masks do not overlap: they are components of one union).
    owner = (masks * np.arange(1, n + 1)[:, None, None]).max(axis=0) if n else 0 * instance_map
    table = np.bincount(instance_map.ravel() * (n + 1) + owner.ravel(),
                        minlength=(m + 1) * (n + 1)).reshape(m + 1, n + 1)
    inter = table[1:, 1:].astype(np.float64)  # (M, N)
    obj_area, mask_area = table[1:].sum(axis=1), table[:, 1:].sum(axis=0)
    iou = inter / np.maximum(obj_area[:, None] + mask_area[None] - inter, 1)
    share = inter / np.maximum(obj_area[:, None], 1)
    held = (share > 0.5).sum(axis=0)
    return {
        "objects": m,
        "recovered": int((iou.max(axis=1, initial=0) >= iou_threshold).sum()),
        "merged_pairs": int((held * (held - 1) // 2).sum()),
        "over_split": int(((share >= 0.2).sum(axis=1) >= 2).sum()),
        "background": int((table[0, 1:] > 0.5 * np.maximum(mask_area, 1)).sum()),
    }
