"""Checks that a COCO-format instances JSON is what training and evaluation assume.

The one gate before every later stage: training's pre-flight, the pseudo-label merge, self-training
rounds and evaluation run it first. It reports, one line each, whatever a later stage would drop
without a word (a NaN box), mis-score (two images with one ``file_name``, a string score) or crash
on (a flat polygon list, garbage RLE counts), so the user hears it before any work is done.
"""
import math
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
# Fields that are ids: integers, as pycocotools and detectron2 index and sort them.
_ID_FIELDS = {"images": ("id",), "annotations": ("id", "image_id", "category_id"),
              "categories": ("id",)}


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


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    """A finite JSON number (Python's json reads NaN and Infinity; bools are not numbers)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _short(value, limit=40):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def validate_coco(data, image_root=None, check_image_sizes=False, check_segmentations=False,
                  max_problems=20):
    """List what is wrong with a COCO instances dataset.

    Always checked: the three lists and their required fields; integer ids, unique; category
    names non-empty strings, unique; each image a non-empty, unique ``file_name`` and positive
    integer width/height; each annotation's image and category exist, its ``bbox`` is four
    finite numbers with w, h >= 0, ``score`` (if any) a finite number in [0, 1], ``area`` (if any)
    finite and >= 0, ``iscrowd`` (if any) 0 or 1, and its segmentation well-formed (polygons:
    lists of finite numbers; RLE: the image's ``size``, ``counts`` a string or a list of
    non-negative integer run lengths adding up to the image).

    Args:
        data (dict or str): the parsed JSON, or a path to it.
        image_root (str or None): directory the images' ``file_name`` are relative to; when
            given, every image file must exist.
        check_image_sizes (bool): open every image header (needs ``image_root``) and compare
            its EXIF-oriented size with the JSON's width/height.
        check_segmentations (bool): decode every RLE/polygon and check it against ``area``
            (RLE only) and the image size (compressed RLE strings: valid, and their runs add up
            to the image; polygons: at least 3 points); also checks boxes lie inside their
            images.
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
    # Everything below indexes by id: ids that are not integers stop the check here.
    for key, fields in _ID_FIELDS.items():
        for i, entry in enumerate(data[key]):
            bad = [f for f in fields if not _is_int(entry[f])]
            if bad and report(f"{key}[{i}]: {bad[0]} must be an integer, got "
                              f"{_short(entry[bad[0]])}"):
                return problems
    if problems:
        return problems

    for key in _REQUIRED:
        dup = [k for k, n in Counter(e["id"] for e in data[key]).items() if n > 1]
        if dup and report(f"{key}: duplicate id {dup[0]} ({len(dup)} duplicated ids)"):
            return problems
    for c in data["categories"]:
        if not (isinstance(c["name"], str) and c["name"].strip()):
            if report(f"category {c['id']}: name must be a non-empty string, got "
                      f"{_short(c['name'])}"):
                return problems
    names = Counter(c["name"] for c in data["categories"] if isinstance(c["name"], str))
    dup_names = [n for n, k in names.items() if k > 1]
    if dup_names and report(f"categories: duplicate name {dup_names[0]!r} "
                            f"({len(dup_names)} duplicated names)"):
        return problems
    if not data["images"]:
        report("no images: the dataset is empty")
        return problems

    if _check_images(data["images"], image_root, check_image_sizes, report):
        return problems
    images = {img["id"]: img for img in data["images"] if _has_size(img)}
    image_ids = {img["id"] for img in data["images"]}
    category_ids = {c["id"] for c in data["categories"]}
    rle_problems = _rle_string_problems(data["annotations"], images) if check_segmentations else {}
    for i, ann in enumerate(data["annotations"]):
        msg = _check_annotation(ann, image_ids, category_ids)
        img = images.get(ann["image_id"])
        if msg is None and img is not None:
            msg = _check_segmentation_form(ann.get("segmentation"), img)
            if msg is None and check_segmentations:
                msg = _check_geometry(ann, img, rle_problems.get(i))
        if msg and report(f"annotation {ann['id']}: {msg}"):
            return problems
    return problems


def _has_size(img):
    return (_is_int(img["width"]) and _is_int(img["height"])
            and img["width"] > 0 and img["height"] > 0)


def _check_images(images, image_root, check_image_sizes, report):
    """Report each image's problems; True once ``report`` says enough."""
    by_name = Counter(img["file_name"] for img in images if isinstance(img["file_name"], str))
    dup = [name for name, n in by_name.items() if n > 1]
    if dup:
        ids = [img["id"] for img in images if img["file_name"] == dup[0]]
        # Evaluation and self-training match images by file_name: one would stand for the other.
        if report(f"images: file_name {dup[0]!r} is used by images {ids[0]} and {ids[1]} "
                  f"({len(dup)} duplicated file_names); each image must appear once"):
            return True
    for img in images:
        name = img["file_name"]
        if not (isinstance(name, str) and name):
            if report(f"image {img['id']}: file_name must be a non-empty string, got "
                      f"{_short(name)}"):
                return True
            continue
        if not _has_size(img):
            if report(f"image {img['id']}: width/height must be positive integers, got "
                      f"{_short(img['width'])}x{_short(img['height'])}"):
                return True
            continue
        if image_root is None:
            continue
        path = os.path.join(image_root, name)
        if not os.path.isfile(path):
            if report(f"image {img['id']}: file not found: {path}"):
                return True
            continue
        if check_image_sizes:
            try:
                size = oriented_image_size(path)
            except Exception as e:
                if report(f"image {img['id']}: cannot read {path} ({type(e).__name__}: {e})"):
                    return True
                continue
            if size != (img["width"], img["height"]):
                if report(f"image {img['id']}: {path} is {size[0]}x{size[1]} (WxH) but the JSON "
                          f"says {img['width']}x{img['height']}"):
                    return True
    return False


def _check_annotation(ann, image_ids, category_ids):
    """One problem with an annotation's references and scalar fields, or None."""
    if ann["image_id"] not in image_ids:
        return f"image_id {ann['image_id']} is not in 'images'"
    if ann["category_id"] not in category_ids:
        return f"category_id {ann['category_id']} is not in 'categories'"
    bbox = ann["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)
            and bbox[2] >= 0 and bbox[3] >= 0):
        # Training drops a NaN box without a word; a string one crashes a loader worker.
        return f"bbox must be [x, y, w, h], four finite numbers with w, h >= 0; got {_short(bbox)}"
    if "score" in ann and not (_is_number(ann["score"]) and 0 <= ann["score"] <= 1):
        # The score weights the training loss and orders detections in COCOeval.
        return f"score must be a finite number in [0, 1], got {_short(ann['score'])}"
    if "area" in ann and not (_is_number(ann["area"]) and ann["area"] >= 0):
        # COCOeval sorts objects into small/medium/large (and ignores some) by this area.
        return f"area must be a finite number >= 0, got {_short(ann['area'])}"
    if "iscrowd" in ann and ann["iscrowd"] not in (0, 1):
        return f"iscrowd must be 0 or 1, got {_short(ann['iscrowd'])}"
    return None


def _check_segmentation_form(seg, img):
    """One problem with the shape of a segmentation (no decoding), or None."""
    if seg is None:
        return None
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if not (isinstance(size, list) and size == [img["height"], img["width"]]):
            return (f"RLE size {_short(size)} differs from the image's [height, width] "
                    f"[{img['height']}, {img['width']}]")
        if isinstance(counts, str):
            return None
        if not isinstance(counts, list):
            return "RLE counts must be a compressed string or a list of run lengths"
        if not all(_is_int(c) and c >= 0 for c in counts):
            bad = next(c for c in counts if not (_is_int(c) and c >= 0))
            return f"RLE run lengths must be non-negative integers, got {_short(bad)}"
        # COCO's own crowd annotations are uncompressed RLE (counts a list of run lengths).
        if sum(counts) != img["height"] * img["width"]:
            return f"RLE run lengths sum to {sum(counts)}, not {img['height']}x{img['width']}"
        return None
    if isinstance(seg, list):
        if seg and all(_is_number(v) for v in seg):
            return ("polygon segmentation is a flat list of numbers; it must be a list of "
                    "polygons: [[x1, y1, x2, y2, ...], ...]")
        if not all(isinstance(p, list) for p in seg):
            return "polygon segmentation must be a list of polygons (lists of x, y numbers)"
        for p in seg:
            if not all(_is_number(v) for v in p):
                bad = next(v for v in p if not _is_number(v))
                return f"polygon coordinates must be finite numbers, got {_short(bad)}"
        return None
    return "segmentation must be an RLE dict or a list of polygons"


def rle_string_run_lengths(strings):
    """The run lengths that compressed COCO RLE strings stand for, decoded together.

    The inverse of pycocotools' ``rleToString`` (maskApi.c), vectorised over many strings:
    6-bit groups from ``'0'``, 5 data bits each, bit 0x20 continuing a number, bit 0x10 of a
    number's last group its sign; from the fourth number on, each is stored as the difference to
    the one two before it. pycocotools decodes any string without checking it (runs that do not
    add up to the image read or write past the mask buffer), so the validator checks them here.

    Args:
        strings (list[str]): ``counts`` of compressed RLEs.

    Returns:
        list: per string, an (N,) int64 array of its run lengths, or None where the string is
        not a compressed RLE (a character outside '0'..'o', a number cut off at the end, one
        longer than 11 groups, or a negative run).
    """
    n = len(strings)
    ok = np.array([s.isascii() for s in strings], bool)
    encoded = [s.encode("ascii") if good else b"" for s, good in zip(strings, ok)]
    lengths = np.array([len(e) for e in encoded], np.int64)
    chars = np.frombuffer(b"".join(encoded), np.uint8)
    if chars.size == 0:
        return [np.zeros(0, np.int64) if good else None for good in ok]
    string_ends = (np.cumsum(lengths) - 1)[lengths > 0]  # each non-empty string's last char
    nonempty = np.flatnonzero(lengths > 0)
    bad = np.flatnonzero((chars < 48) | (chars > 111))
    ok[nonempty[np.searchsorted(string_ends, bad)]] = False
    last = chars < 80  # bit 0x20 of (char - 48) clear: the last group of a number
    ok[nonempty[~last[string_ends]]] = False  # a number cut off at the end
    last[string_ends] = True  # a number never runs on into the next string
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    groups = ends - starts + 1
    too_long = np.flatnonzero(groups > 11)  # longer than any image needs (or int64 holds)
    ok[nonempty[np.searchsorted(string_ends, ends[too_long])]] = False
    groups = np.minimum(groups, 11)
    numbers = np.zeros(n, np.int64)
    numbers[nonempty] = np.diff(np.searchsorted(ends, string_ends, side="right"), prepend=0)
    # Each number from its 5-bit groups, position by position (most are one or two long).
    values = (chars[starts].astype(np.int64) - 48) & 0x1F
    longer, g = np.flatnonzero(groups > 1), 1
    while longer.size:
        values[longer] |= ((chars[starts[longer] + g].astype(np.int64) - 48) & 0x1F) << (5 * g)
        g += 1
        longer = longer[groups[longer] > g]
    negative = np.flatnonzero(((chars[ends].astype(np.int64) - 48) & 0x10) != 0)
    values[negative] -= np.int64(1) << (5 * groups[negative])
    # One row per string; undo the differences with a cumulative sum over its odd-indexed
    # numbers and one over its even-indexed numbers from the third on.
    filled = np.arange(int(numbers.max())) < numbers[:, None]
    runs = np.zeros(filled.shape, np.int64)
    runs[filled] = values
    runs[:, 1::2] = np.cumsum(runs[:, 1::2], axis=1)
    runs[:, 2::2] = np.cumsum(runs[:, 2::2], axis=1)
    ok &= ~((runs < 0) & filled).any(axis=1)
    return [runs[i, :numbers[i]] if ok[i] else None for i in range(n)]


def _rle_string_problems(annotations, images, chunk=256, max_chars=1 << 20):
    """{annotation index: problem} for every compressed RLE string whose image is known.

    Strings are decoded up to ``chunk`` (and about ``max_chars`` characters) at a time, so the
    arrays stay small.
    """
    todo = []
    for i, ann in enumerate(annotations):
        seg = ann.get("segmentation")
        if isinstance(seg, dict) and isinstance(seg.get("counts"), str):
            img = images.get(ann["image_id"]) if _is_int(ann["image_id"]) else None
            if img is not None:
                todo.append((i, seg["counts"], img["height"] * img["width"], img))
    # Strings of similar length together, so that one row per string wastes little.
    todo.sort(key=lambda t: len(t[1]))
    problems = {}
    at = 0
    while at < len(todo):
        size = 1
        while (at + size < len(todo) and size < chunk
               and (size + 1) * len(todo[at + size][1]) <= max_chars):
            size += 1
        part = todo[at:at + size]
        at += size
        for (i, _, pixels, img), runs in zip(part, rle_string_run_lengths([t[1] for t in part])):
            if runs is None:
                problems[i] = "RLE counts is not a valid compressed COCO RLE string"
            elif int(runs.sum()) != pixels:
                problems[i] = (f"RLE run lengths sum to {int(runs.sum())}, not "
                               f"{img['height']}x{img['width']}")
    return problems


def _check_geometry(ann, img, rle_problem=None, tol=1.0):
    """One problem with an annotation's box or segmentation against its image, or None.

    ``rle_problem``: what :func:`_rle_string_problems` found in its compressed RLE, if any.
    """
    from pycocotools import mask as mask_util

    x, y, w, h = ann["bbox"]
    width, height = img["width"], img["height"]
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        return f"bbox {ann['bbox']} lies outside its {width}x{height} image"
    seg = ann.get("segmentation")
    if seg is None:
        return None
    if isinstance(seg, dict):
        if rle_problem:
            return rle_problem
        area = float(mask_util.area(segmentation_to_rle(seg, height, width)))
        if "area" in ann and abs(area - ann["area"]) > max(tol, 1e-3 * area):
            return f"RLE decodes to area {area:.0f} but 'area' is {ann['area']}"
        return None
    # detectron2 drops such polygons (and an instance left without any) with one warning line.
    if not seg or not all(len(p) >= 6 and len(p) % 2 == 0 for p in seg):
        return "polygon segmentation needs lists of at least 3 (x, y) points"
    pts = np.concatenate([np.asarray(p, dtype=np.float64) for p in seg]).reshape(-1, 2)
    if (
        (pts < -tol).any()
        or (pts[:, 0] > width + tol).any()
        or (pts[:, 1] > height + tol).any()
    ):
        return "polygon lies outside its image"
    return None


def first_problem(problems, name):
    """One line for a list of problems: the first, and how many more there are (or None)."""
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return f"{name}: {problems[0]}{more}"


def check_coco(json_path, image_root=None, check_image_sizes=False, check_segmentations=False):
    """Raise a one-line DatasetError if the dataset at ``json_path`` has problems.

    Returns the parsed JSON so callers need not read it twice.
    """
    if image_root is not None and not os.path.isdir(image_root):
        raise DatasetError(f"{json_path}: image root not found: {image_root}")
    data = load_json(json_path)
    problem = first_problem(
        validate_coco(data, image_root, check_image_sizes, check_segmentations), json_path)
    if problem:
        raise DatasetError(problem)
    return data
