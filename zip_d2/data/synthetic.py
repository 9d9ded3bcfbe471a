"""Synthetic COCO-format instance-segmentation datasets with exact ground truth.

No COCO can be fetched on the project's machines, so tests and experiments use scenes made
here: flat-coloured shapes of several categories on a textured background, with a controllable
share of objects placed to *touch* another object of the same category — the case Zip exists
for, where a class-level region covers two instances and only a boundary separates them.

Everything is deterministic given the seed. Masks are exact: each object is rasterised, drawn
in order, and its ground-truth mask is what remains visible after later objects occlude it.
"""
import json
import os
import re
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .coco_json import write_json_atomic
from .rle import encode_mask

# Category ids start at 1 as in COCO; the order is fixed so ids are stable across versions.
SHAPES = ("circle", "square", "triangle", "hexagon", "star", "cross")


@dataclass
class SceneParams:
    """How scenes are drawn. Sizes are in pixels."""

    width: int = 160
    height: int = 128
    min_objects: int = 2
    max_objects: int = 6
    # Object "radius" (half the bounding extent) range.
    min_radius: int = 9
    max_radius: int = 22
    # Probability that a new object is placed touching an existing one of the same category.
    touch_prob: float = 0.5
    # Objects whose visible area falls below this (after occlusion) are dropped from the scene.
    min_visible_area: int = 40
    # How many of SHAPES the dataset uses (the first N).
    num_categories: int = 4


def categories(num_categories=len(SHAPES)):
    """COCO ``categories`` list for the first ``num_categories`` shapes."""
    if not 1 <= num_categories <= len(SHAPES):
        raise ValueError(f"num_categories must be in [1, {len(SHAPES)}], got {num_categories}")
    return [{"id": i + 1, "name": n, "supercategory": "shape"}
            for i, n in enumerate(SHAPES[:num_categories])]


def _shape_polygon(shape, cx, cy, r, angle):
    """(N, 2) int32 vertices of a polygonal shape centred at (cx, cy) with radius r."""
    if shape == "square":
        t = angle + np.pi / 4 + np.arange(4) * np.pi / 2
        radii = np.full(4, r)
    elif shape == "triangle":
        t = angle + np.arange(3) * 2 * np.pi / 3
        radii = np.full(3, r)
    elif shape == "hexagon":
        t = angle + np.arange(6) * np.pi / 3
        radii = np.full(6, r)
    elif shape == "star":
        t = angle + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    elif shape == "cross":
        # 12-gon of a plus sign with arm half-width w.
        w = 0.38 * r
        pts = np.array([(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r),
                        (-w, -r), (-w, -w), (-r, -w), (-r, w), (-w, w), (-w, r)])
        c, s = np.cos(angle), np.sin(angle)
        pts = pts @ np.array([[c, s], [-s, c]])
        return np.round(pts + (cx, cy)).astype(np.int32)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    pts = np.stack([cx + radii * np.cos(t), cy + radii * np.sin(t)], axis=1)
    return np.round(pts).astype(np.int32)


def rasterize(shape, cx, cy, r, angle, height, width):
    """(height, width) bool mask of one shape."""
    canvas = np.zeros((height, width), np.uint8)
    if shape == "circle":
        cv2.circle(canvas, (int(round(cx)), int(round(cy))), int(round(r)), 1, thickness=-1)
    else:
        cv2.fillPoly(canvas, [_shape_polygon(shape, cx, cy, r, angle)], 1)
    return canvas.astype(bool)


def render_scene(rng, params=SceneParams()):
    """Draw one scene.

    Args:
        rng (np.random.Generator): the only source of randomness.
        params (SceneParams): scene settings.

    Returns:
        image: (H, W, 3) uint8 RGB.
        objects: list of dicts {"category_id": int (1-based), "mask": (H, W) bool,
            "touching": bool (placed against another object of its category)}, in drawing
            order, only objects still visible enough after occlusion.
    """
    h, w = params.height, params.width
    # Low-frequency textured background so "not an object" is not a flat colour.
    noise = rng.normal(0, 1, (max(h // 16, 2), max(w // 16, 2), 3))
    base = rng.uniform(60, 190, size=3)
    bg = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC) * 18 + base
    image = np.clip(bg + rng.normal(0, 4, (h, w, 3)), 0, 255)

    drawn = []
    n = int(rng.integers(params.min_objects, params.max_objects + 1))
    for _ in range(n):
        r = float(rng.uniform(params.min_radius, params.max_radius))
        touching = bool(drawn) and rng.random() < params.touch_prob
        if touching:
            # Touch an existing object: same category, centres about one summed radius apart,
            # so the two shapes meet along a boundary (polygons may overlap slightly). They
            # get similar colours: colour alone must not separate them, the boundary must.
            other = drawn[int(rng.integers(len(drawn)))]
            cat = other["category_id"]
            theta = rng.uniform(0, 2 * np.pi)
            dist = (other["r"] + r) * 0.92
            cx, cy = other["cx"] + dist * np.cos(theta), other["cy"] + dist * np.sin(theta)
            color = other["color"] + rng.normal(0, 10, 3)
        else:
            cat = int(rng.integers(1, params.num_categories + 1))
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            color = rng.uniform(0, 255, 3)
        angle = float(rng.uniform(0, 2 * np.pi))
        mask = rasterize(SHAPES[cat - 1], cx, cy, r, angle, h, w)
        if not mask.any():
            continue
        color = np.clip(color, 0, 255)
        shade = 1.0 + 0.08 * rng.normal(0, 1, (h, w, 1))
        image = np.where(mask[..., None], np.clip(color * shade, 0, 255), image)
        for d in drawn:  # occlusion: later objects cover earlier ones
            d["mask"] &= ~mask
        drawn.append({"category_id": cat, "mask": mask, "touching": touching, "color": color,
                      "cx": cx, "cy": cy, "r": r})

    objects = [{k: d[k] for k in ("category_id", "mask", "touching")}
               for d in drawn if d["mask"].sum() >= params.min_visible_area]
    return image.astype(np.uint8), objects


def mask_to_annotation(mask, **fields):
    """COCO annotation fields for a (H, W) bool mask: RLE with string counts, area, XYWH bbox."""
    segmentation, area, bbox = encode_mask(mask)
    return {**fields, "segmentation": segmentation, "area": area, "bbox": bbox, "iscrowd": 0}


def make_synthetic_split(out_dir, split, num_images, seed, params=SceneParams()):
    """Write ``out_dir/<split>/*.png`` and ``out_dir/<split>.json``; return the JSON path.

    The split name is mixed into the seed, so train and val with the same seed differ.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    image_dir = os.path.join(out_dir, split)
    os.makedirs(image_dir, exist_ok=True)
    rng = np.random.default_rng([seed, sum(map(ord, split))])
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        image, objects = render_scene(rng, params)
        file_name = f"{split}_{image_id:06d}.png"
        cv2.imwrite(os.path.join(image_dir, file_name), image[:, :, ::-1])
        images.append({"id": image_id, "file_name": file_name,
                       "width": params.width, "height": params.height})
        for obj in objects:
            annotations.append(mask_to_annotation(
                obj["mask"], id=len(annotations) + 1, image_id=image_id,
                category_id=obj["category_id"]))
    data = {
        "info": {"description": f"zip_d2 synthetic shapes, split {split!r}",
                 "generator": "zip_d2.data.synthetic", "seed": seed, "params": asdict(params)},
        "images": images,
        "annotations": annotations,
        "categories": categories(params.num_categories),
    }
    json_path = os.path.join(out_dir, f"{split}.json")
    write_json_atomic(data, json_path)
    return json_path


SPLITS = ("train", "val")


def _written_files(out_dir, split):
    """The files a split written by this module left in ``out_dir``: its JSON and its images
    (those the JSON lists, and any ``<split>_NNNNNN.png``, in case the JSON is gone or broken)."""
    json_path = os.path.join(out_dir, f"{split}.json")
    image_dir = os.path.join(out_dir, split)
    names = set()
    try:
        with open(json_path, encoding="utf-8") as f:
            names.update(im["file_name"] for im in json.load(f)["images"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if os.path.isdir(image_dir):
        pattern = re.compile(rf"{split}_\d{{6}}\.png")
        names.update(n for n in os.listdir(image_dir) if pattern.fullmatch(n))
    images = [os.path.join(image_dir, n) for n in sorted(names)
              if isinstance(n, str) and os.path.basename(n) == n]
    return [p for p in [json_path, *images] if os.path.isfile(p)]


def remove_synthetic_dataset(out_dir):
    """Delete the files an earlier :func:`make_synthetic_dataset` wrote in ``out_dir`` (nothing
    else; an image folder left empty goes too). Returns how many files were removed."""
    removed = 0
    for split in SPLITS:
        for path in _written_files(out_dir, split):
            os.remove(path)
            removed += 1
        image_dir = os.path.join(out_dir, split)
        if os.path.isdir(image_dir) and not os.listdir(image_dir):
            os.rmdir(image_dir)
    return removed


def make_synthetic_dataset(out_dir, num_train=200, num_val=50, seed=0, params=SceneParams(),
                           overwrite=False):
    """Write a train and a val split; return {"train": json_path, "val": json_path}.

    A dataset already in ``out_dir`` is refused (ValueError), or with ``overwrite`` removed
    first, so that no stale image of a larger earlier dataset stays beside the new one."""
    if min(num_train, num_val) < 1:
        raise ValueError(f"--num-train and --num-val must be >= 1, got {num_train}, {num_val}")
    old = [p for split in SPLITS for p in _written_files(out_dir, split)]
    if old and not overwrite:
        raise ValueError(f"{out_dir} already holds a synthetic dataset ({len(old)} files, e.g. "
                         f"{old[0]}); pass --overwrite to replace it (its files are removed "
                         "first) or choose another --out")
    if old:
        remove_synthetic_dataset(out_dir)
    return {
        "train": make_synthetic_split(out_dir, "train", num_train, seed, params),
        "val": make_synthetic_split(out_dir, "val", num_val, seed, params),
    }
