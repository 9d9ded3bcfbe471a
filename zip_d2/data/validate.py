"""Checks that a COCO-format instances JSON is what training and evaluation assume.

The one gate before every later stage: training's pre-flight, the pseudo-label merge, self-training
rounds and evaluation run it first. It reports, one line each, whatever a later stage would drop
without a word (a NaN box), mis-score (two images with one ``file_name``, a string score) or crash
on (a flat polygon list, garbage RLE counts), so the user hears it before any work is done.
"""
import math
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
                       check_segmentations=False, max_problems=20, root_from_info=None,
                       check_complete=False):
    """:func:`validate_coco` of a JSON file read as a stream (``json_stream``): memory holds
    one record at a time plus the validator's few bytes per record, whatever the file's size.

    ``root_from_info(info)``, when given and ``image_root`` is None, names the image root from
    the file's ``info`` block. The sections may come in any order: those that arrive before
    what they are checked against (annotations before the images or categories, images before
    an ``info`` that names their root) are read in a second pass.

    ``check_complete``: also refuse image files cut short (:func:`truncated_image`; needs an
    image root and ``check_image_sizes``).

    Returns (problems, counts: {"images", "annotations", "categories", "instances" (annotations
    that are not crowds), "without_segmentation" (of those), "first_without_segmentation" (its
    id)}, the image root used). Raises DatasetError for a file that cannot be read as JSON.
    """
    from .json_stream import iter_object

    checker = CocoValidator(image_root, check_image_sizes, check_segmentations, max_problems,
                            check_complete=check_complete)
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
            return [f"missing required list '{key}'"], {}, image_root
    counts = {"images": checker.num_images, "annotations": checker.num_annotations,
              "categories": checker.num_categories, "instances": checker.num_instances,
              "without_segmentation": checker.num_without_segmentation,
              "first_without_segmentation": checker.first_without_segmentation}
    return checker.finish(), counts, image_root


class CocoValidator:
    """The checks of :func:`validate_coco`, fed one record at a time: the categories, then
    every image, then every annotation (the order of a merged pseudo-label file, and of any
    file read as a stream). Holds a few dozen bytes per image (its id, size and file_name) and
    8 per annotation, never the records themselves (but for up to ``chunk`` annotations whose
    compressed RLE strings are decoded together, :func:`_rle_string_problems`).

    ``image`` and ``annotation`` return False once the record was malformed (a missing
    required field: nothing after it is checked) or ``max_problems`` are collected; ``finish``
    returns the problems, duplicates first. Ids that are not integers are reported alone (what
    indexes by id is not checked then).
    """

    def __init__(self, image_root=None, check_image_sizes=False, check_segmentations=False,
                 max_problems=20, chunk=256, check_complete=False):
        self.image_root, self.check_image_sizes = image_root, check_image_sizes
        self.check_complete = check_complete
        self.check_segmentations, self.max_problems = check_segmentations, max_problems
        self.problems, self.stopped, self._broken = [], False, False
        self._id_problems = []  # ids that are not integers: reported alone
        self._other_ids = {"images": [], "annotations": []}  # integers outside int64
        self.category_ids = set()
        self._images = {}  # id -> (width, height), or None for an image without a valid size
        self._image_ids = array("q")
        self._annotation_ids = array("q")
        self._first = []  # duplicate categories, invalid category names
        self._file_names = {}  # file_name -> first image id
        self._dup_file_names = {}  # file_name -> (first image id, second image id)
        self._pending, self._chunk = [], chunk
        self.num_images = self.num_annotations = self.num_categories = 0
        # annotations that are not crowds, those of them without a segmentation, the first's id
        self.num_instances = self.num_without_segmentation = 0
        self.first_without_segmentation = None

    def _keep_id(self, key, ids, value):
        if -2**63 <= value < 2**63:
            ids.append(value)
        else:
            self._other_ids[key].append(value)

    def _report(self, msg):
        self.problems.append(msg)
        if len(self.problems) + len(self._id_problems) >= self.max_problems:
            self.stopped = True
        return not self.stopped

    def _malformed(self, key, i, entry):
        missing = [f for f in _REQUIRED[key] if not isinstance(entry, dict) or f not in entry]
        if missing:
            self.problems = [f"{key}[{i}] is missing required field(s) {', '.join(missing)}"]
            self.stopped = self._broken = True
            return True
        bad = [f for f in _ID_FIELDS[key] if not _is_int(entry[f])]
        if bad:
            self._id_problems.append(f"{key}[{i}]: {bad[0]} must be an integer, got "
                                     f"{_short(entry[bad[0]])}")
            if len(self._id_problems) >= self.max_problems:
                self.stopped = True
            return True
        return False

    def categories(self, categories):
        """All categories at once (they are few)."""
        ok = []
        for i, c in enumerate(categories):
            if self._malformed("categories", i, c):
                if self._broken:
                    return False
                continue
            ok.append(c)
        self.num_categories = len(categories)
        self.category_ids = {c["id"] for c in ok}
        names = [c["name"] for c in ok if isinstance(c["name"], str)]
        self._first = [_duplicates("categories", [c["id"] for c in ok])]
        self._first += [f"category {c['id']}: name must be a non-empty string, got "
                        f"{_short(c['name'])}" for c in ok
                        if not (isinstance(c["name"], str) and c["name"].strip())]
        self._first.append(_duplicates("categories", names, "name"))
        return not self.stopped

    def image(self, img):
        if self.stopped:
            return False
        if self._malformed("images", self.num_images, img):
            self.num_images += not self._broken
            return not self.stopped
        self.num_images += 1
        self._keep_id("images", self._image_ids, img["id"])
        sized = _has_size(img)
        self._images[img["id"]] = (img["width"], img["height"]) if sized else None
        name = img["file_name"]
        if not (isinstance(name, str) and name):
            return self._report(f"image {img['id']}: file_name must be a non-empty string, got "
                                f"{_short(name)}")
        if name in self._file_names:
            self._dup_file_names.setdefault(name, (self._file_names[name], img["id"]))
        else:
            self._file_names[name] = img["id"]
        if not sized:
            return self._report(f"image {img['id']}: width/height must be positive integers, "
                                f"got {_short(img['width'])}x{_short(img['height'])}")
        if self.image_root is None or self._id_problems:
            return True
        path = os.path.join(self.image_root, name)
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
        if self.check_complete:
            try:
                why = truncated_image(path)
            except OSError as e:
                why = f"cannot be read: {e.strerror}"
            if why:
                return self._report(f"image {img['id']}: {path} is truncated or damaged ({why}); "
                                    "re-export it, or remove it from the JSON")
        return True

    def annotation(self, ann):
        if self.stopped:
            return False
        if self._malformed("annotations", self.num_annotations, ann):
            self.num_annotations += not self._broken
            return not self.stopped
        self.num_annotations += 1
        self._keep_id("annotations", self._annotation_ids, ann["id"])
        if not ann.get("iscrowd"):
            self.num_instances += 1
            if not ann.get("segmentation"):
                self.num_without_segmentation += 1
                if self.first_without_segmentation is None:
                    self.first_without_segmentation = ann["id"]
        if self._id_problems:
            return True
        self._pending.append(ann)
        if len(self._pending) >= self._chunk:
            self._flush()
        return not self.stopped

    def _flush(self):
        pending, self._pending = self._pending, []
        images = {}
        for ann in pending:
            size = self._images.get(ann["image_id"])
            if size is not None:
                images[ann["image_id"]] = {"width": size[0], "height": size[1]}
        rle_problems = _rle_string_problems(pending, images) if self.check_segmentations else {}
        for i, ann in enumerate(pending):
            if self.stopped:
                return
            msg = _check_annotation(ann, self._images, self.category_ids)
            img = images.get(ann["image_id"])
            if msg is None and img is not None:
                msg = _check_segmentation_form(ann.get("segmentation"), img)
                if msg is None and self.check_segmentations:
                    msg = _check_geometry(ann, img, rle_problems.get(i))
            if msg:
                self._report(f"annotation {ann['id']}: {msg}")

    def finish(self):
        """The problems found, one line each (duplicate ids and names first)."""
        if self._broken:
            return self.problems
        if self._id_problems:
            return self._id_problems[:self.max_problems]
        if not self.stopped:
            self._flush()
        first = [_duplicates("images", self._image_ids, others=self._other_ids["images"]),
                 _duplicates("annotations", self._annotation_ids,
                             others=self._other_ids["annotations"])]
        first = [d for d in first + self._first if d]
        if not self.num_images:
            return (first + ["no images: the dataset is empty"])[:max(self.max_problems,
                                                                      len(first) + 1)]
        if self._dup_file_names:
            # Evaluation and self-training match images by file_name: one would stand for the
            # other.
            name, (a, b) = next(iter(self._dup_file_names.items()))
            first.append(f"images: file_name {name!r} is used by images {a} and {b} "
                         f"({len(self._dup_file_names)} duplicated file_names); each image must "
                         "appear once")
        return (first + self.problems)[:max(self.max_problems, len(first))]


_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


def truncated_image(path):
    """Why the image file at ``path`` is cut short, or None: a PNG that does not end with its
    IEND chunk, a JPEG without its end-of-image marker (other formats: None). Reads a few
    bytes at each end of the file, so it costs what a header check costs; the header check
    alone passes such a file, and the loader then fails on it in the middle of training."""
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64))
        tail = f.read()
    if head.startswith(_PNG_START) and not tail.endswith(_PNG_END):
        return "the PNG ends without its IEND chunk"
    if head.startswith(_JPEG_START) and not tail.rstrip(b"\x00\r\n ").endswith(_JPEG_END):
        return "the JPEG ends without its end-of-image marker"
    return None


def _has_size(img):
    return (_is_int(img["width"]) and _is_int(img["height"])
            and img["width"] > 0 and img["height"] > 0)


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


def check_coco(json_path, image_root=None, check_image_sizes=False, check_segmentations=False,
               check_complete=False):
    """Raise a one-line DatasetError if the dataset at ``json_path`` has problems.

    The file is read as a stream (one record in memory at a time). Returns its counts (see
    :func:`validate_coco_file`).
    """
    if image_root is not None and not os.path.isdir(image_root):
        raise DatasetError(f"{json_path}: image root not found: {image_root}")
    problems, counts, _ = validate_coco_file(json_path, image_root, check_image_sizes,
                                             check_segmentations, check_complete=check_complete)
    problem = first_problem(problems, json_path)
    if problem:
        raise DatasetError(problem)
    return counts
