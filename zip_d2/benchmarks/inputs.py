"""Inputs made for timing: scenes, masks and image folders of known shape, seeded.
Constructed data: they exercise the code paths, not the models' accuracy."""
import os

import cv2
import numpy as np
import torch

__all__ = ["synthetic_scene", "sam_like_masks", "make_images"]


def synthetic_scene(grid_hw, k, seed=0):
    """Cluster map and semantic region for a scene of touching ellipses on a grid.

    Features: one random vector per object, a shared "boundary" vector on cells where two
    objects meet or an object meets the background, plus spatially smooth noise; clustered
    with k-means (K=k).
    Constructed features: this exercises the discovery step, not CLIP.
    """
    from scipy import ndimage

    from zip_d2.pseudo.clusters import kmeans

    rng = np.random.default_rng(seed)
    h, w = grid_hw
    yy, xx = np.mgrid[:h, :w]
    obj = np.zeros((h, w), np.int64)
    for i in range(1, 9):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.1, 0.9) * w
        ry, rx = rng.uniform(0.1, 0.25) * h, rng.uniform(0.08, 0.2) * w
        obj[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = i
    edge = ndimage.morphological_gradient(obj, size=3) > 0
    d = 16
    protos = rng.normal(size=(10, d)) * 3
    # CNN features vary smoothly in space, so the noise is smoothed too (sigma 1 cell).
    noise = ndimage.gaussian_filter(rng.normal(size=(h, w, d)), sigma=(1, 1, 0)) * 2
    feats = protos[obj] + noise
    feats[edge] = protos[9] + noise[edge]
    labels, _ = kmeans(torch.from_numpy(feats.reshape(-1, d)).float(), k, 100)
    cluster_map = labels.view(h, w).numpy()
    region = ndimage.binary_dilation(obj > 0, iterations=2)
    return cluster_map, region


def sam_like_masks(rng, n, height, width):
    """(n, H, W) bool: n // 4 ellipses, each 4 times (jittered copies, halves), and (n,) scores
    in [0.2, 1]."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    out = np.zeros((n, height, width), bool)
    objects = max(1, n // 4)
    centres = rng.uniform([0.1 * height, 0.1 * width], [0.9 * height, 0.9 * width], (objects, 2))
    radii = rng.uniform([0.04 * height, 0.04 * width], [0.25 * height, 0.2 * width], (objects, 2))
    for i in range(n):
        (cy, cx), (ry, rx) = centres[i % objects], radii[i % objects]
        s = rng.uniform(0.9, 1.1)
        cy, cx = cy + rng.normal(0, 3), cx + rng.normal(0, 3)
        m = ((yy - cy) / (ry * s)) ** 2 + ((xx - cx) / (rx * s)) ** 2 <= 1
        if i // objects == 3:  # a part: one half of the object
            m &= xx < cx
        out[i] = m
    return out, rng.uniform(0.2, 1.0, n).astype(np.float32)


def make_images(folder, num, width, height):
    """Write ``num`` JPEG images of ``width`` x ``height`` (flat colour, six filled ellipses;
    seeded, so the same every time) into ``folder``; returns it."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(num):
        img = np.empty((height, width, 3), np.uint8)
        img[:] = rng.integers(40, 200, 3)
        for _ in range(6):
            color = tuple(int(v) for v in rng.integers(0, 255, 3))
            center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            axes = (int(rng.integers(width // 20, width // 5)),
                    int(rng.integers(height // 20, height // 5)))
            cv2.ellipse(img, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
        cv2.imwrite(os.path.join(folder, f"bench_{i:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder
