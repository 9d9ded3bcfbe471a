#!/usr/bin/env python
"""(Re)create the demo images in datasets/demo/images/.

- scene_*.jpg: generated here, seeded, so they are identical on every run: a few shaded
  objects (some touching, the case Zip's boundary prior is for) on a textured background.
- grace_hopper.jpg: the public-domain U.S. Navy portrait of Commodore Grace M. Hopper (1984,
  photograph by James S. Davis; Wikimedia Commons "Commodore Grace M. Hopper, USN (covered).jpg"),
  copied from matplotlib's sample data, which ships it.

    python datasets/demo/make_demo_images.py
"""
import argparse
import os
import shutil

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _background(rng, height, width):
    base = rng.uniform(60, 200, 3)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    gradient = (xs / width)[..., None] * rng.uniform(-40, 40, 3) + (ys / height)[..., None] * \
        rng.uniform(-40, 40, 3)
    noise = cv2.GaussianBlur(rng.normal(0, 12, (height, width, 3)).astype(np.float32), (0, 0), 3)
    return base + gradient + noise


def _draw_object(img, rng, kind, center, size, color):
    mask = np.zeros(img.shape[:2], np.uint8)
    cx, cy = center
    if kind == "ellipse":
        cv2.ellipse(mask, (cx, cy), size, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind == "box":
        w, h = size
        cv2.rectangle(mask, (cx - w, cy - h), (cx + w, cy + h), 1, -1)
    else:
        w, h = size
        pts = np.array([[cx, cy - h], [cx - w, cy + h], [cx + w, cy + h]], np.int32)
        cv2.fillPoly(mask, [pts], 1)
    # Shading across the object so it is not a flat patch.
    ys, xs = np.nonzero(mask)
    shade = 1.0 - 0.35 * (ys - ys.min()) / max(1, ys.max() - ys.min())
    img[ys, xs] = np.asarray(color, np.float32)[None, :] * shade[:, None]


def make_scene(seed, width=320, height=240):
    rng = np.random.default_rng(seed)
    img = _background(rng, height, width)
    n = int(rng.integers(3, 6))
    x = int(rng.integers(40, 80))
    for i in range(n):
        kind = ["ellipse", "box", "triangle"][int(rng.integers(0, 3))]
        size = (int(rng.integers(18, 40)), int(rng.integers(18, 40)))
        # Every other object starts where the previous one ends: touching instances.
        center = (min(width - 30, x), int(rng.integers(60, height - 60)))
        x += size[0] * 2 if i % 2 == 0 else int(rng.integers(60, 100))
        _draw_object(img, rng, kind, center, size, rng.uniform(20, 255, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--out", default=os.path.join(HERE, "images"))
    p.add_argument("--num-scenes", type=int, default=4)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for seed in range(args.num_scenes):
        rgb = make_scene(seed)
        cv2.imwrite(os.path.join(args.out, f"scene_{seed:02d}.jpg"), rgb[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 88])
    import matplotlib.cbook

    src = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    shutil.copyfile(src, os.path.join(args.out, "grace_hopper.jpg"))
    print(f"wrote {args.num_scenes} scenes and grace_hopper.jpg to {args.out}")


if __name__ == "__main__":
    main()
