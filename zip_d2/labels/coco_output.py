"""Labeler detections to strict COCO records.

A detection is the labeler's ``{"category": str, "score": float, "mask": (h, w) bool,
"box": (4,) XYXY}`` at the working size of the image. A COCO annotation here is written at the
full decoded size (EXIF orientation applied), with a compressed-RLE segmentation whose counts are
a string, its exact area, the tight XYWH box of that mask, ``iscrowd`` 0, the score and, where the
labeler gives them, the score's factors ``clip_score`` and ``sam_score``. Ids are
not assigned here: they are given at merge time so that resumed and sharded runs agree.
"""
from __future__ import annotations

import datetime
import importlib
import importlib.util
import math
import os
import platform
import re
import sys
from importlib import metadata
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from zip_d2.data.rle import encode_mask
from zip_d2.version import __version__

# Packages whose versions decide the labels; recorded in the info block.
_RECORDED_PACKAGES = ("zip_d2", "torch", "torchvision", "open_clip_torch", "segment-anything",
                      "detectron2", "pycocotools", "numpy", "opencv-python-headless", "Pillow")


# Detection keys written beside the score: its CLIP and SAM factors.
SCORE_PARTS = ("clip_score", "sam_score")


def full_size_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """(height, width) bool: a working-size mask scaled to the full image (bilinear, >= 0.5)."""
    if mask.shape == (height, width):
        return mask
    up = cv2.resize(np.ascontiguousarray(mask, dtype=np.uint8) * 255, (width, height),
                    interpolation=cv2.INTER_LINEAR)
    return up >= 128


def detections_to_annotations(detections: Sequence[dict], work_shape: Tuple[int, int],
                              width: int, height: int,
                              category_ids: Dict[str, int]) -> Tuple[List[dict], int]:
    """COCO annotations (without ``id``/``image_id``) for one image's detections.

    Args:
        detections: the labeler's output for the working-size image.
        work_shape: (h, w) of the image the labeler saw; masks must have this shape.
        width, height: the full decoded image size the annotations are written at.
        category_ids: category name -> COCO category id.

    Returns:
        (annotations in the labeler's order, number of detections dropped for an empty mask).

    Raises ValueError when a detection breaks the labeler contract (unknown category, mask of
    the wrong shape, score not a number in [0, 1]); the job records that image as skipped.
    """
    annotations, empty = [], 0
    for det in detections:
        name = det["category"]
        if name not in category_ids:
            raise ValueError(f"labeler returned category {name!r}, not in the vocabulary")
        mask = np.asarray(det["mask"], dtype=bool)  # no copy of a bool mask, whatever its order
        if mask.shape != tuple(work_shape):
            raise ValueError(f"labeler returned a mask of shape {mask.shape} for a "
                             f"{work_shape[1]}x{work_shape[0]} image")
        score = float(det["score"])
        if not (math.isfinite(score) and 0.0 <= score <= 1.0):
            raise ValueError(f"labeler returned score {score}, outside [0, 1]")
        segmentation, area, bbox = encode_mask(full_size_mask(mask, width, height))
        if area == 0:
            empty += 1
            continue
        ann = {"category_id": category_ids[name], "segmentation": segmentation, "area": area,
               "bbox": bbox, "iscrowd": 0, "score": score}
        # The score's factors (score = sqrt(clip_score * sam_score)), where the labeler gives them.
        ann.update({k: float(det[k]) for k in SCORE_PARTS if k in det})
        annotations.append(ann)
    return annotations, empty


# Distributions that may be installed under another name (detectron2 from a repackaged wheel
# or a source build) still report a version through their module.
_MODULES = {"detectron2": "detectron2", "open_clip_torch": "open_clip",
            "segment-anything": "segment_anything"}


_VERSION_LINE = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.M)


def _module_version(dist_name: str) -> str:
    """The module's ``__version__``, read from its source when it is not imported yet: importing
    detectron2 (and torch with it) would cost the label tools seconds and ~0.9 GB."""
    module = _MODULES.get(dist_name)
    if module is None:
        return ""
    if module in sys.modules:
        return str(getattr(sys.modules[module], "__version__", ""))
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return ""
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        return ""
    with open(spec.origin, encoding="utf-8", errors="replace") as f:
        found = _VERSION_LINE.search(f.read())
    return found.group(1) if found else ""


def package_versions() -> Dict[str, str]:
    """Installed versions of the packages that decide the labels ("" when not installed)."""
    versions = {"python": platform.python_version()}
    for name in _RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = _module_version(name)
    versions["zip_d2"] = versions["zip_d2"] or __version__
    return versions


def build_info(settings: dict, job: dict, counts: dict) -> dict:
    """The COCO ``info`` block: COCO's usual fields plus everything needed to reproduce the labels.

    settings: the job's label-deciding settings (labeler description, categories, decoding).
    job: how it was run (input, command, world size). counts: images, skipped, annotations.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    labeler = settings.get("labeler", {})
    return {
        "description": f"zip_d2 pseudo-labels ({labeler.get('method', '?')})",
        "version": __version__,
        "year": now.year,
        "date_created": now.isoformat(timespec="seconds"),
        "contributor": "zip_d2 tools/generate_pseudo_labels.py",
        "method": labeler.get("method"),
        "random_weights": bool(labeler.get("random_weights", False)),
        "labeler": labeler,
        "decoding": settings.get("decoding", {}),
        "bbox_source": "tight box of the RLE mask at full image size",
        "job": job,
        "counts": counts,
        "packages": package_versions(),
    }


def recorded_image_root(data) -> str | None:
    """The image root a pseudo-label JSON's ``info`` block records (None for other JSON)."""
    node = data
    for key in ("info", "job", "input", "image_root"):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node if isinstance(node, str) else None
