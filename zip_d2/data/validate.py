"""Checks that a COCO-format instances JSON is what training and evaluation assume.

Used in two places: before training on a registered dataset (so a bad file is one clear line,
not a traceback from deep inside a data-loader worker), and after every pseudo-label merge.
"""
import os
from array import array
from collections import Counter
from collections.abc import Iterator

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
    if not isinstance(data, dict):
        return ["top level is not a JSON object"]
    for key in _REQUIRED:
        if not isinstance(data.get(key), list):
            return [f"missing required list '{key}'"]
    checker = CocoValidator(image_root, check_image_sizes, check_segmentations, max_problems)
    checker.categories(data["categories"])
    for img in data["images"]:
        if not checker.image(img):
            break
    for ann in data["annotations"]:
        if not checker.annotation(ann):
            break
    return checker.finish()


def validate_coco_file(path, image_root=None, check_image_sizes=False,
                       check_segmentations=False, max_problems=20, root_from_info=None):
    """:func:`validate_coco` of a JSON file read as a stream (``json_stream``): memory holds
    one record at a time plus the validator's few bytes per record, whatever the file's size.

    ``root_from_info(info)``, when given and ``image_root`` is None, names the image root from
    the file's ``info`` block. The sections may come in any order: those that arrive before
    what they are checked against (annotations before the images or categories, images before
    an ``info`` that names their root) are read in a second pass.

    Returns (problems, counts: {"images", "annotations", "categories"}, the image root used). Raises
    DatasetError for a file that cannot be read as JSON.
    """
    from .json_stream import iter_object

    checker = CocoValidator(image_root, check_image_sizes, check_segmentations, max_problems)
    seen, done, deferred = set(), set(), []

    def ready(key):
        if key == "images":  # once the whole file was read, an info block is known or absent
            return (image_root is not None or root_from_info is None or "info" in seen
                    or "end" in seen)
        if key == "annotations":
            return {"images", "categories"} <= done
        return True

    def take(key, value):
        if not isinstance(value, Iterator):
            return  # not a list: reported as missing below
        if key == "categories":
            checker.categories(list(value))
        else:
            feed = checker.image if key == "images" else checker.annotation
            for record in value:
                if not feed(record):
                    break
        done.add(key)

    for key, value in iter_object(path):
        seen.add(key)
        if key == "info" and image_root is None and root_from_info is not None:
            image_root = checker.image_root = root_from_info({"info": value})
        elif key in _REQUIRED and not checker.stopped:
            if ready(key):
                take(key, value)
            else:
                deferred.append(key)
    seen.add("end")
    if deferred and not checker.stopped:
        for key, value in iter_object(path):
            if key in deferred and ready(key) and not checker.stopped:
                take(key, value)
    for key in _REQUIRED:
        if key not in done and not checker.stopped:
            return [f"missing required list '{key}'"], \
                {"images": 0, "annotations": 0, "categories": 0}, image_root
    counts = {"images": checker.num_images, "annotations": checker.num_annotations,
              "categories": checker.num_categories}
    return checker.finish(), counts, image_root


class CocoValidator:
    """The checks of :func:`validate_coco`, fed one record at a time: the categories, then
    every image, then every annotation (the order of a merged pseudo-label file, and of any
    file read as a stream). Holds a few dozen bytes per image and 8 per annotation, never the
    records themselves.

    ``image`` and ``annotation`` return False once the record was malformed (a missing
    required field: nothing after it is checked) or ``max_problems`` are collected; ``finish``
    returns the problems, duplicate ids first.
    """

    def __init__(self, image_root=None, check_image_sizes=False, check_segmentations=False,
                 max_problems=20):
        self.image_root, self.check_image_sizes = image_root, check_image_sizes
        self.check_segmentations, self.max_problems = check_segmentations, max_problems
        self.problems, self.stopped, self._broken = [], False, False
        self._other_ids = {"images": [], "annotations": []}  # ids that are not integers
        self.category_ids = set()
        self._images = {}  # id -> (width, height)
        self._image_ids = array("q")
        self._annotation_ids = array("q")
        self._dup_categories = []
        self.num_images = self.num_annotations = self.num_categories = 0

    def _keep_id(self, key, ids, value):
        if isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63:
            ids.append(value)
        else:
            self._other_ids[key].append(value)

    def _report(self, msg):
        self.problems.append(msg)
        if len(self.problems) >= self.max_problems:
            self.stopped = True
        return not self.stopped

    def _malformed(self, key, i, entry):
        missing = [f for f in _REQUIRED[key] if not isinstance(entry, dict) or f not in entry]
        if missing:
            self.problems = [f"{key}[{i}] is missing required field(s) {', '.join(missing)}"]
            self.stopped = self._broken = True
        return bool(missing)

    def categories(self, categories):
        """All categories at once (they are few)."""
        for i, c in enumerate(categories):
            if self._malformed("categories", i, c):
                return False
        self._dup_categories = [
            _duplicates("categories", [c["id"] for c in categories]),
            _duplicates("categories", [c["name"] for c in categories], "name")]
        self.category_ids = {c["id"] for c in categories}
        self.num_categories = len(categories)
        return True

    def image(self, img):
        if self.stopped or self._malformed("images", self.num_images, img):
            return False
        self.num_images += 1
        self._keep_id("images", self._image_ids, img["id"])
        self._images[img["id"]] = (img["width"], img["height"])
        if not (isinstance(img["width"], int) and isinstance(img["height"], int)
                and img["width"] > 0 and img["height"] > 0):
            if not self._report(f"image {img['id']}: width/height must be positive integers"):
                return False
        if self.image_root is None:
            return True
        path = os.path.join(self.image_root, img["file_name"])
        if not os.path.isfile(path):
            return self._report(f"image {img['id']}: file not found: {path}")
        if self.check_image_sizes:
            try:
                size = oriented_image_size(path)
            except Exception as e:
                return self._report(f"image {img['id']}: cannot read {path} "
                                    f"({type(e).__name__}: {e})")
            if size != (img["width"], img["height"]):
                return self._report(f"image {img['id']}: {path} is {size[0]}x{size[1]} (WxH) "
                                    f"but the JSON says {img['width']}x{img['height']}")
        return True

    def annotation(self, ann):
        if self.stopped or self._malformed("annotations", self.num_annotations, ann):
            return False
        self.num_annotations += 1
        self._keep_id("annotations", self._annotation_ids, ann["id"])
        size = self._images.get(ann["image_id"])
        if size is None:
            return self._report(f"annotation {ann['id']}: image_id {ann['image_id']} is not "
                                "in 'images'")
        if ann["category_id"] not in self.category_ids:
            if not self._report(f"annotation {ann['id']}: category_id {ann['category_id']} "
                                "is not in 'categories'"):
                return False
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and bbox[2] >= 0 and bbox[3] >= 0):
            return self._report(f"annotation {ann['id']}: bbox must be [x, y, w, h] with "
                                "w, h >= 0")
        if self.check_segmentations:
            msg = _check_geometry(ann, {"width": size[0], "height": size[1]})
            if msg:
                return self._report(f"annotation {ann['id']}: {msg}")
        return True

    def finish(self):
        """The problems found, one line each (duplicate ids and names first)."""
        if self._broken:
            return self.problems
        first = [d for d in (self._dup_categories[:1]
                             + [_duplicates("images", self._image_ids,
                                            others=self._other_ids["images"])]
                             + [_duplicates("annotations", self._annotation_ids,
                                            others=self._other_ids["annotations"])]
                             + self._dup_categories[1:]) if d]
        if not self.num_images and not self.stopped:
            self.problems.append("no images: the dataset is empty")
        return (first + self.problems)[:max(self.max_problems, len(first))]


def _duplicates(key, values, what="id", others=()):
    """The problem line for duplicated values (in order of first appearance), or None.
    ``values``: a list, or an array of int64 ids (``others``: the ids that were not)."""
    if others:
        values = list(values) + list(others)
    if isinstance(values, array):
        ids = np.frombuffer(values, np.int64) if len(values) else np.zeros(0, np.int64)
        uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
        dup = counts > 1
        if not dup.any():
            return None
        ordered = uniq[dup][np.argsort(first[dup])]
        return f"{key}: duplicate id {int(ordered[0])} ({len(ordered)} duplicated ids)"
    dup = [k for k, n in Counter(values).items() if n > 1]
    if not dup:
        return None
    if what == "name":
        return f"{key}: duplicate name {dup[0]!r} ({len(dup)} duplicated names)"
    return f"{key}: duplicate id {dup[0]} ({len(dup)} duplicated ids)"


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

    The file is read as a stream (one record in memory at a time). Returns its counts:
    {"images", "annotations", "categories"}.
    """
    if image_root is not None and not os.path.isdir(image_root):
        raise DatasetError(f"{json_path}: image root not found: {image_root}")
    problems, counts, _ = validate_coco_file(json_path, image_root, check_image_sizes,
                                             check_segmentations)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise DatasetError(f"{json_path}: {problems[0]}{more}")
    return counts
