"""The training set as one memory-mapped file per machine, shared by every local process.

Detectron2 loads a COCO JSON whole in every training process (``load_coco_json``: the JSON,
pycocotools' index and the dataset dicts, ~3.5x the file's size) and then serialises the dicts
into each process's own memory (``DatasetFromList``). Here the dataset dicts are built once,
by the first local process, from the JSON read as a stream, and written as pickled records to
one file (``SerializedDataset``); every process (and each of its loader workers) maps that file
read-only, so the operating system keeps one copy in the page cache for all of them.

The records are exactly ``load_coco_json``'s (same keys, values, order, contiguous category
ids; images in id order). A file whose annotations come grouped by image in id order (every
merged pseudo-label file) is converted in one streaming pass; another layout is grouped in
memory, once per machine.

File layout: ``MAGIC``, record count and offset-table position (int64 each), the pickled
records, then the int64 offset table (count + 1 entries).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import mmap
import os
import pickle
import struct
import tempfile
from array import array
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import torch.utils.data as torchdata

from .json_stream import iter_object

logger = logging.getLogger(__name__)

MAGIC = b"ZIPD2DS1"
_HEADER = struct.Struct("<8sqq")
# Bumped when the records or the layout change: the cache key includes it.
FORMAT = 1


class SerializedDataset(torchdata.Dataset):
    """Read-only, memory-mapped list of dataset dicts; pickles as its path (loader workers and
    spawned processes map the same file)."""

    def __init__(self, path: str):
        self.path = path
        self._open()

    def _open(self):
        with open(self.path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        magic, n, table = _HEADER.unpack_from(self._map, 0)
        if magic != MAGIC:
            raise ValueError(f"{self.path}: not a zip_d2 serialised dataset")
        self._offsets = np.frombuffer(self._map, np.int64, n + 1, table)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return pickle.loads(self._map[self._offsets[i]:self._offsets[i + 1]])

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.path = state["path"]
        self._open()


def _categories_and_images(json_file):
    """(sorted category ids, [(image id, file_name, height, width)] sorted by id)."""
    cat_ids, images = [], []
    for key, value in iter_object(json_file):
        if key == "categories":
            cat_ids = sorted(c["id"] for c in value)
        elif key == "images":
            images = [(im["id"], im["file_name"], im["height"], im["width"]) for im in value]
    images.sort(key=lambda im: im[0])
    return cat_ids, images


def _annotations(json_file) -> Iterator[dict]:
    for key, value in iter_object(json_file):
        if key == "annotations":
            yield from value


def _d2_annotation(anno: dict, ann_keys, id_map):
    """One annotation as ``load_coco_json`` makes it, or None where it drops it."""
    if anno.get("ignore", 0) != 0:
        raise ValueError('"ignore" in COCO json file is not supported.')
    obj = {key: anno[key] for key in ann_keys if key in anno}
    if "bbox" in obj and len(obj["bbox"]) == 0:
        raise ValueError(f"One annotation of image {anno['image_id']} contains empty 'bbox' "
                         "value! This json does not have valid COCO format.")
    segm = anno.get("segmentation", None)
    if segm:
        if isinstance(segm, dict):
            if isinstance(segm["counts"], list):
                from pycocotools import mask as mask_util

                segm = mask_util.frPyObjects(segm, *segm["size"])
        else:
            segm = [poly for poly in segm if len(poly) % 2 == 0 and len(poly) >= 6]
            if len(segm) == 0:
                return None
        obj["segmentation"] = segm
    keypts = anno.get("keypoints", None)
    if keypts:
        obj["keypoints"] = [v + 0.5 if idx % 3 != 2 else v for idx, v in enumerate(keypts)]
    from detectron2.structures import BoxMode

    obj["bbox_mode"] = BoxMode.XYWH_ABS
    obj["category_id"] = id_map[obj["category_id"]]
    return obj


class _NotGrouped(Exception):
    pass


def dataset_dicts(json_file, image_root, extra_annotation_keys=(), grouped=True):
    """``load_coco_json(json_file, image_root, name, extra_annotation_keys)``'s records, one at
    a time. ``grouped``: expect the annotations grouped by image in image id order (raises
    _NotGrouped otherwise); False groups them in memory."""
    cat_ids, images = _categories_and_images(json_file)
    id_map = {v: i for i, v in enumerate(cat_ids)}
    ann_keys = ["iscrowd", "bbox", "keypoints", "category_id"] + list(extra_annotation_keys)

    def record(image, objs):
        return {"file_name": os.path.join(image_root, image[1]), "height": image[2],
                "width": image[3], "image_id": image[0], "annotations": objs}

    known = {im[0] for im in images}
    if not grouped:
        by_image = defaultdict(list)
        for anno in _annotations(json_file):
            if anno["image_id"] in known:
                by_image[anno["image_id"]].append(anno)
        for image in images:
            objs = [_d2_annotation(a, ann_keys, id_map) for a in by_image.pop(image[0], [])]
            yield record(image, [o for o in objs if o is not None])
        return
    i, objs = 0, []
    for anno in _annotations(json_file):
        image_id = anno["image_id"]
        if image_id not in known:
            continue  # load_coco_json leaves annotations of unknown images out too
        while i < len(images) and images[i][0] != image_id:
            if images[i][0] > image_id:
                raise _NotGrouped
            yield record(images[i], objs)
            i, objs = i + 1, []
        if i == len(images):
            raise _NotGrouped
        obj = _d2_annotation(anno, ann_keys, id_map)
        if obj is not None:
            objs.append(obj)
    for image in images[i:]:
        yield record(image, objs)
        objs = []


def write_serialized(records, path: str, keep=None) -> int:
    """Write ``records`` (pickled one by one) as a SerializedDataset file; ``keep(record)``
    filters them. Returns the number written."""
    offsets = array("q")
    with open(path, "wb") as f:
        f.write(_HEADER.pack(MAGIC, 0, 0))
        offsets.append(f.tell())
        for r in records:
            if keep is not None and not keep(r):
                continue
            f.write(pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL))
            offsets.append(f.tell())
        table = f.tell()
        f.write(offsets.tobytes())
        f.seek(0)
        f.write(_HEADER.pack(MAGIC, len(offsets) - 1, table))
        f.flush()
        os.fsync(f.fileno())
    return len(offsets) - 1


def _has_instances(record) -> bool:
    # detectron2's filter_images_with_only_crowd_annotations
    return any(a.get("iscrowd", 0) == 0 for a in record["annotations"])


def shared_dataset(sources, cache_dir: str, filter_empty: bool,
                   extra_annotation_keys=()) -> SerializedDataset:
    """The dataset dicts of ``sources`` ([(json_file, image_root)], concatenated) as one
    memory-mapped file under ``cache_dir``, built by the first local process that asks (the
    others wait on a lock, then map the same file). The file is named after the inputs'
    paths, sizes and modification times, so a changed JSON gets a new file."""
    key = hashlib.sha256(json.dumps(
        [FORMAT, filter_empty, list(extra_annotation_keys)]
        + [[os.path.abspath(j), os.path.abspath(r), os.path.getsize(j),
            os.stat(j).st_mtime_ns] for j, r in sources]).encode()).hexdigest()[:20]
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"dataset-{key}.d2data")
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; the others wait, then map its file
        try:
            if not os.path.exists(path):
                _build(sources, path, filter_empty, extra_annotation_keys)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return SerializedDataset(path)


def _build(sources, path, filter_empty, extra_annotation_keys):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    os.close(fd)
    try:
        for grouped in (True, False):
            def records():
                for json_file, image_root in sources:
                    yield from dataset_dicts(json_file, image_root, extra_annotation_keys,
                                             grouped=grouped)
            try:
                n = write_serialized(records(), tmp, _has_instances if filter_empty else None)
                break
            except _NotGrouped:
                logger.info("annotations not grouped by image: grouping them in memory")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    logger.info("serialised %d images to %s (%.1f MiB, shared by every local process)", n,
                path, os.path.getsize(path) / 2**20)


def shared_train_dataset(cfg):
    """The training set of ``cfg`` as a shared SerializedDataset, or None where detectron2's
    own loading is needed (a dataset not registered from a COCO JSON by zip_d2, keypoints,
    precomputed proposals)."""
    from detectron2.data import MetadataCatalog

    from .coco_json import EXTRA_ANNOTATION_KEYS

    if cfg.MODEL.KEYPOINT_ON or cfg.MODEL.LOAD_PROPOSALS or not cfg.DATASETS.TRAIN:
        return None
    sources = []
    for name in cfg.DATASETS.TRAIN:
        meta = MetadataCatalog.get(name)
        if not meta.get("zip_d2_registered"):
            return None
        sources.append((meta.json_file, meta.image_root))
    return shared_dataset(sources, os.path.join(cfg.OUTPUT_DIR, "dataset_cache"),
                          cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS, EXTRA_ANNOTATION_KEYS)
