"""Checks that a COCO-format instances JSON is what training and evaluation assume.

Used in two places: before training on a registered dataset (so a bad file is one clear line,
not a traceback from deep inside a data-loader worker), and after every pseudo-label merge.
"""
import os
from collections import Counter

import numpy as np
from PIL import Image

from .coco_json import DatasetError, load_json
from .rle import segmentation_to_rle

_EXIF_ORIENTATION = 274
# EXIF orientations 5-8 rotate by 90 or 270 degrees: the decoded image has width and height
# swapped relative to the stored pixels (detectron2's read_image applies the rotation).
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}

_REQUIRED = {
    "images": ("id", "file_name", "width", "height"),
    "annotations": ("id", "image_id", "category_id", "bbox"),
    "categories": ("id", "name"),
}


def oriented_image_size(path):
    """(width, height) of an image file as decoded with its EXIF orientation applied."""
    with Image.open(path) as im:
        width, height = im.size
        try:
            orientation = im.getexif().get(_EXIF_ORIENTATION)
        except Exception:  # a corrupt EXIF block is not a size problem
            orientation = None
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return width, height


def validate_coco(data, image_root=None, check_image_sizes=False, check_segmentations=False,
                  max_problems=20):
    """List what is wrong with a COCO instances dataset.

    Args:
        data (dict or str): the parsed JSON, or a path to it.
        image_root (str or None): directory the images' ``file_name`` are relative to; when
            given, every image file must exist.
        check_image_sizes (bool): open every image header (needs ``image_root``) and compare
            its EXIF-oriented size with the JSON's width/height.
        check_segmentations (bool): decode every RLE/polygon and check it against ``area``
            (RLE only) and the image size; also checks boxes lie inside their images.
        max_problems (int): stop collecting after this many problems.

    Returns:
        list[str]: problems, one line each; empty when the dataset is valid.
    """
    if isinstance(data, (str, os.PathLike)):
        data = load_json(data)
    problems = []

    def report(msg):
        problems.append(msg)
        return len(problems) >= max_problems

    if not isinstance(data, dict):
        return ["top level is not a JSON object"]
    for key, fields in _REQUIRED.items():
        if not isinstance(data.get(key), list):
            return [f"missing required list '{key}'"]
        for i, entry in enumerate(data[key]):
            missing = [f for f in fields if not isinstance(entry, dict) or f not in entry]
            if missing:
                return [f"{key}[{i}] is missing required field(s) {', '.join(missing)}"]

    for key in _REQUIRED:
        dup = [k for k, n in Counter(e["id"] for e in data[key]).items() if n > 1]
        if dup and report(f"{key}: duplicate id {dup[0]} ({len(dup)} duplicated ids)"):
            return problems
    dup_names = [n for n, k in Counter(c["name"] for c in data["categories"]).items() if k > 1]
    if dup_names and report(f"categories: duplicate name {dup_names[0]!r} "
                            f"({len(dup_names)} duplicated names)"):
        return problems
    if not data["images"]:
        report("no images: the dataset is empty")
        return problems

    images = {img["id"]: img for img in data["images"]}
    category_ids = {c["id"] for c in data["categories"]}
    for img in data["images"]:
        if not (isinstance(img["width"], int) and isinstance(img["height"], int)
                and img["width"] > 0 and img["height"] > 0):
            if report(f"image {img['id']}: width/height must be positive integers"):
                return problems
        if image_root is None:
            continue
        path = os.path.join(image_root, img["file_name"])
        if not os.path.isfile(path):
            if report(f"image {img['id']}: file not found: {path}"):
                return problems
            continue
        if check_image_sizes:
            try:
                size = oriented_image_size(path)
            except Exception as e:
                if report(f"image {img['id']}: cannot read {path} ({type(e).__name__}: {e})"):
                    return problems
                continue
            if size != (img["width"], img["height"]):
                if report(f"image {img['id']}: {path} is {size[0]}x{size[1]} (WxH) but the JSON "
                          f"says {img['width']}x{img['height']}"):
                    return problems

    for ann in data["annotations"]:
        img = images.get(ann["image_id"])
        if img is None:
            if report(f"annotation {ann['id']}: image_id {ann['image_id']} is not in 'images'"):
                return problems
            continue
        if ann["category_id"] not in category_ids:
            if report(f"annotation {ann['id']}: category_id {ann['category_id']} is not in "
                      "'categories'"):
                return problems
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and bbox[2] >= 0 and bbox[3] >= 0):
            if report(f"annotation {ann['id']}: bbox must be [x, y, w, h] with w, h >= 0"):
                return problems
            continue
        if check_segmentations:
            msg = _check_geometry(ann, img)
            if msg and report(f"annotation {ann['id']}: {msg}"):
                return problems
    return problems


def _check_geometry(ann, img, tol=1.0):
    """One problem with an annotation's box or segmentation against its image, or None."""
    from pycocotools import mask as mask_util

    x, y, w, h = ann["bbox"]
    width, height = img["width"], img["height"]
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        return f"bbox {ann['bbox']} lies outside its {width}x{height} image"
    seg = ann.get("segmentation")
    if seg is None:
        return None
    if isinstance(seg, dict):
        if list(seg.get("size", [])) != [height, width]:
            return f"RLE size {seg.get('size')} differs from the image's [height, width] " \
                   f"[{height}, {width}]"
        if not isinstance(seg.get("counts"), (str, list)):
            return "RLE counts must be a compressed string or a list of run lengths"
        # COCO's own crowd annotations are uncompressed RLE (counts a list of run lengths).
        if isinstance(seg["counts"], list) and sum(seg["counts"]) != height * width:
            return f"RLE run lengths sum to {sum(seg['counts'])}, not {height}x{width}"
        area = float(mask_util.area(segmentation_to_rle(seg, height, width)))
        if "area" in ann and abs(area - ann["area"]) > max(tol, 1e-3 * area):
            return f"RLE decodes to area {area:.0f} but 'area' is {ann['area']}"
        return None
    if isinstance(seg, list):
        if not seg or any(len(p) < 6 or len(p) % 2 for p in seg):
            return "polygon segmentation needs lists of at least 3 (x, y) points"
        pts = np.concatenate([np.asarray(p, dtype=np.float64) for p in seg]).reshape(-1, 2)
        if (
            (pts < -tol).any()
            or (pts[:, 0] > width + tol).any()
            or (pts[:, 1] > height + tol).any()
        ):
            return "polygon lies outside its image"
        return None
    return "segmentation must be an RLE dict or a list of polygons"


def check_coco(json_path, image_root=None, check_image_sizes=False, check_segmentations=False):
    """Raise a one-line DatasetError if the dataset at ``json_path`` has problems.

    Returns the parsed JSON so callers need not read it twice.
    """
    if image_root is not None and not os.path.isdir(image_root):
        raise DatasetError(f"{json_path}: image root not found: {image_root}")
    data = load_json(json_path)
    problems = validate_coco(data, image_root, check_image_sizes, check_segmentations)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise DatasetError(f"{json_path}: {problems[0]}{more}")
    return data
