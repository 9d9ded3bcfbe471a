"""Synthetic pseudo-label jobs at dataset scale, and the bookkeeping steps timed on them.

``write_job(folder, n)`` writes what an 8-rank job leaves behind after labelling ``n`` images,
in the real format and with the project's own code: ``folder/labels.json.shards/`` (manifest by
``shards.write_manifest``, records appended by ``shards.ShardWriter``, annotations made by
``coco_output.detections_to_annotations`` from real masks) and ``folder/images/`` (ImageNet's
layout, up to 1000 class folders). Images are cheap: a handful of real 640x480 JPEGs, each
hard-linked under many names, so every file opens, decodes and fingerprints like a real one
while 1.28M images cost a few MB of disk. About 8 annotations per image, RLE of 300-600
characters; one image in 1000 is recorded as skipped.

``run_step(name, folder)`` runs one bookkeeping step on such a folder as the project runs it
(resume scan of one rank, merge tool, validate tool, training load, end of a resumed job);
``tools/bench/benchmark_scale.py`` runs each in a fresh process and measures it, the merge and
validate steps as the user-facing tools themselves.
"""
from __future__ import annotations

import math
import os
from typing import List

import cv2
import numpy as np
from PIL import Image

from zip_d2.data.fingerprint import file_fingerprint

from . import shards
from .coco_output import detections_to_annotations

WIDTH, HEIGHT = 640, 480
WORLD_SIZE = 8
NUM_CATEGORIES = 80
# Real JPEGs behind the hard links; a file takes at most 65000 links (ext4), 60000 used.
LINKS_PER_SOURCE = 60000
POOL_SIZE = 512
SKIP_EVERY = 1000


def categories() -> List[dict]:
    return [{"id": i + 1, "name": f"class_{i:03d}"} for i in range(NUM_CATEGORIES)]


def _blob_mask(rng) -> np.ndarray:
    """(HEIGHT, WIDTH) bool: a jagged star-shaped polygon (many RLE runs, like SAM masks)."""
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cx, cy = rng.uniform(60, WIDTH - 60), rng.uniform(60, HEIGHT - 60)
    radius = rng.uniform(20, 110)
    n = int(rng.integers(12, 40))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    r = radius * rng.uniform(0.5, 1.0, n)
    pts = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1).round().astype(np.int32)
    cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def annotation_pool(seed: int = 0) -> List[dict]:
    """POOL_SIZE annotations of real masks, RLE counts of 300-600 characters."""
    rng = np.random.default_rng(seed)
    ids = {c["name"]: c["id"] for c in categories()}
    pool = []
    while len(pool) < POOL_SIZE:
        det = {"category": f"class_{int(rng.integers(NUM_CATEGORIES)):03d}",
               "score": float(rng.uniform(0.05, 1.0)), "mask": _blob_mask(rng)}
        anns, _ = detections_to_annotations([det], (HEIGHT, WIDTH), WIDTH, HEIGHT, ids)
        if anns and 300 <= len(anns[0]["segmentation"]["counts"]) <= 600:
            pool.append(anns[0])
    return pool


def _source_jpegs(folder: str, count: int) -> List[str]:
    """``count`` real 640x480 JPEGs (smooth structure plus noise, like small photos)."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for k in range(count):
        rng = np.random.default_rng(1000 + k)
        coarse = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        image = cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
        image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"source_{k}.jpg")
        Image.fromarray(image).save(path, quality=90)
        paths.append(path)
    return paths


def image_names(n: int) -> List[str]:
    """ImageNet-like file names, sorted as the job lists them (folder, then name)."""
    folders = min(1000, max(1, math.ceil(n / 100)))
    per_folder = math.ceil(n / folders)
    return [f"n{i // per_folder:08d}/n{i // per_folder:08d}_{i:08d}.JPEG" for i in range(n)]


def write_job(folder: str, n: int, seed: int = 0) -> dict:
    """Write the images and shards of a finished ``n``-image, WORLD_SIZE-rank job under
    ``folder``; return {"out", "shard_dir", "image_root", "json_bytes"}."""
    image_root = os.path.join(folder, "images")
    out = os.path.join(folder, "labels.json")
    shard_dir = shards.shard_dir_for(out)
    os.makedirs(shard_dir, exist_ok=True)
    sources = _source_jpegs(os.path.join(folder, "sources"),
                            max(8, math.ceil(n / LINKS_PER_SOURCE)))
    source_prints = [file_fingerprint(p) for p in sources]
    names = image_names(n)
    made = set()
    for i, name in enumerate(names):
        path = os.path.join(image_root, name)
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        if not os.path.exists(path):
            os.link(sources[i % len(sources)], path)
    root_real = os.path.realpath(image_root)
    settings = {"format": shards.SETTINGS_FORMAT, "input": {"image_root": root_real},
                "labeler": {"method": "benchmark", "random_weights": True},
                "categories": categories(),
                "decoding": {"max_side": 4096, "max_pixels": 89478485, "min_side": 8,
                             "exif_orientation": True,
                             "color": "8-bit RGB; alpha dropped; 16-bit scaled to 8-bit"}}
    job = {"input": {"image_root": os.path.abspath(image_root), "non_image_files_ignored": 0},
           "num_images": n, "world_size": WORLD_SIZE, "command": ["benchmark_scale"],
           "batch_size": 4}
    run = shards.write_manifest(shard_dir, settings, job)
    pool = annotation_pool(seed)
    rng = np.random.default_rng(seed)
    counts = rng.integers(6, 11, n)  # 6..10 annotations, 8 on average
    picks = rng.integers(0, POOL_SIZE, int(counts.sum()))
    writers = [shards.ShardWriter(shards.shard_path(shard_dir, r, WORLD_SIZE), settings)
               for r in range(WORLD_SIZE)]
    start = 0
    try:
        for i, name in enumerate(names):
            record = {"file_name": name, "run": run,
                      "fingerprint": source_prints[i % len(sources)]}
            if i % SKIP_EVERY == SKIP_EVERY - 1:
                record["skipped"] = "labeler failed: RuntimeError: synthetic failure"
            else:
                record.update(width=WIDTH, height=HEIGHT, annotations=[
                    pool[j] for j in picks[start:start + counts[i]]])
            start += counts[i]
            writers[i % WORLD_SIZE].write(record)
    finally:
        for w in writers:
            w.close()
    size = sum(os.path.getsize(p) for p in shards.shard_files(shard_dir))
    return {"out": out, "shard_dir": shard_dir, "image_root": image_root, "shard_bytes": size}


def _job_opts(folder: str):
    from .job import JobOptions

    return JobOptions(out=os.path.join(folder, "labels.json"),
                      images=os.path.join(folder, "images"), workers=2, progress=False,
                      overwrite=False)


def run_step(step: str, folder: str) -> str:
    """Run one in-process step on a folder made by :func:`write_job`; returns a one-line
    summary. (The merge and validate steps are the user-facing tools, run as they are.)"""
    out = os.path.join(folder, "labels.json")
    if step in ("resume_scan", "end_of_job"):
        from zip_d2.config import get_cfg

        from .images import list_image_folder
        from .job import JobResult, finish_output, resume_scan

        opts = _job_opts(folder)
        entries, _ = list_image_folder(opts.images)
        mine, finished, changed, pending = resume_scan(
            shards.shard_dir_for(opts.out), opts.images, entries, opts, 0, WORLD_SIZE)
        if pending or changed:
            raise RuntimeError(f"resume scan: {len(pending)} pending, {len(changed)} changed; "
                               "expected every image finished")
        summary = f"rank 0: {len(mine)} images, {len(finished)} finished"
        if step == "end_of_job":
            result = JobResult(0, WORLD_SIZE, len(mine), len(finished))
            finish_output(get_cfg(), opts, opts.images, entries, shards.shard_dir_for(opts.out),
                          result)
            if result.problems:
                raise RuntimeError(f"end of job: {result.problems[0]}")
            summary += f"; merged {result.merged}"
        return summary
    if step == "training_load":
        return _training_load(out, os.path.join(folder, "images"), folder)
    if step == "training_share":
        return _training_share(folder)
    raise ValueError(f"unknown step {step!r}")


def _training_load(json_file: str, image_root: str, folder: str) -> str:
    """What training does with the dataset before its first iteration: register it (reads its
    categories), then the first local process builds the shared dataset file (the others map
    it: step ``training_share``)."""
    import shutil

    from detectron2.data import MetadataCatalog

    from zip_d2.data.coco_json import EXTRA_ANNOTATION_KEYS
    from zip_d2.data.register import register_coco_json
    from zip_d2.data.shared_dataset import shared_dataset

    register_coco_json("benchmark_scale_train", json_file, image_root)
    classes = MetadataCatalog.get("benchmark_scale_train").thing_classes
    cache = os.path.join(folder, "dataset_cache")
    shutil.rmtree(cache, ignore_errors=True)
    ds = shared_dataset([(json_file, image_root)], cache, True, EXTRA_ANNOTATION_KEYS)
    size = os.path.getsize(ds.path)
    return (f"{len(ds)} images, {len(classes)} classes; shared file {size / 2**20:.0f} MiB, "
            f"{size / len(ds):.0f} bytes per image")


_SHARE_CHILD = """
import sys
from zip_d2.data.shared_dataset import SerializedDataset
ds = SerializedDataset(sys.argv[1])
n = sum(len(ds[i]["annotations"]) for i in range(len(ds)))
print(n, flush=True)
sys.stdin.readline()
"""


def _mapping_pss_kb(pid: int, path: str) -> int:
    total, inside = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:
                inside = fields[-1] == path
            elif inside and fields[0] == "Pss:":
                total += int(fields[1])
    return total


def _training_share(folder: str) -> str:
    """Two local processes map the shared dataset file and read every record; their PSS of it
    (from /proc/PID/smaps) summed, against the file's size."""
    import glob
    import subprocess
    import sys

    path = glob.glob(os.path.join(folder, "dataset_cache", "*.d2data"))[0]
    procs = [subprocess.Popen([sys.executable, "-c", _SHARE_CHILD, path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        counts = [p.stdout.readline().strip() for p in procs]
        pss = [_mapping_pss_kb(p.pid, path) * 1024 for p in procs]
        rss = []
        for p in procs:
            with open(f"/proc/{p.pid}/smaps_rollup") as f:
                rss.append(sum(int(line.split()[1]) * 1024 for line in f
                               if line.startswith("Pss:")))
    finally:
        for p in procs:
            p.communicate("\n")
    size = os.path.getsize(path)
    return (f"2 processes read {counts[0]} annotations each; PSS of the file summed "
            f"{sum(pss) / 2**20:.0f} MiB = {sum(pss) / size:.2f}x its {size / 2**20:.0f} MiB; "
            f"whole-process PSS {sum(rss) / 2**20:.0f} MiB")
