"""Per-rank append-only shard files: nothing finished is lost, nothing is done twice.

Layout, next to the output ``OUT.json``::

    OUT.json.shards/
        job.json                   settings that decide the labels + the input description
        rank00000-of-00002.jsonl   one line per finished image, appended as it finishes
        rank00001-of-00002.jsonl

A line is ``{"file_name", ["id"], "width", "height", "annotations": [...]}`` for a labeled image
or ``{"file_name", ["id"], "skipped": reason}``. Each line is written whole and flushed, so a
killed process leaves at most one torn final line; a reader ignores it and a writer cuts it off
before appending. Each rank writes only its own file; every rank reads all files (of any world
size) to know what is finished, so a rerun, with the same or another number of processes, skips
finished images. ``merge_shards`` turns the directory into one COCO dict with deterministic ids.
"""
from __future__ import annotations

import glob
import json
import os
import time
from typing import Dict, Iterable, List, Optional, Tuple

from zip_d2.data.coco_json import write_json_atomic

from .coco_output import build_info

MANIFEST = "job.json"
# Layout version of the settings block in job.json (2: the labeler's description is built from
# its config sections). Shards written under another layout cannot be compared, so not resumed.
SETTINGS_FORMAT = 2
# How often a writer forces its lines to disk: flush() alone survives a killed process, fsync
# also survives a machine that loses power.
FSYNC_SECONDS = 30.0


class ShardError(ValueError):
    """Shards that cannot be used as they are; the message is one line."""


def shard_dir_for(out_path: str) -> str:
    return out_path + ".shards"


def shard_path(shard_dir: str, rank: int, world_size: int) -> str:
    return os.path.join(shard_dir, f"rank{rank:05d}-of-{world_size:05d}.jsonl")


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def read_shard(path: str) -> List[dict]:
    """The records of one shard file, ignoring a torn (unterminated) final line."""
    with open(path, "rb") as f:
        data = f.read()
    end = data.rfind(b"\n")
    records = []
    for lineno, line in enumerate(data[:end + 1].splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ShardError(f"{path}:{lineno}: corrupt shard line ({e}); delete the file to "
                             "relabel its images") from None
    return records


def shard_files(shard_dir: str) -> List[str]:
    return sorted(glob.glob(os.path.join(shard_dir, "rank*-of-*.jsonl")))


def read_all_shards(shard_dir: str) -> List[dict]:
    """Every record of every shard file, in file then line order."""
    records = []
    for path in shard_files(shard_dir):
        records.extend(read_shard(path))
    return records


def finished_names(records: Iterable[dict], retry_skipped: bool = False) -> set:
    """file_names that need no more work (skipped ones too, unless ``retry_skipped``)."""
    return {r["file_name"] for r in records if not (retry_skipped and "skipped" in r)}


class ShardWriter:
    """Appends finished-image records to one rank's shard file, each line flushed at once."""

    def __init__(self, path: str):
        self.path = path
        if os.path.exists(path):
            self._cut_torn_tail(path)
        self._file = open(path, "a", encoding="utf-8")
        self._last_sync = time.monotonic()

    @staticmethod
    def _cut_torn_tail(path: str) -> None:
        # A line torn by a kill would otherwise be glued to the next record.
        with open(path, "rb") as f:
            data = f.read()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            os.truncate(path, keep)

    def write(self, record: dict) -> None:
        self._file.write(_dumps(record) + "\n")
        self._file.flush()
        if time.monotonic() - self._last_sync > FSYNC_SECONDS:
            os.fsync(self._file.fileno())
            self._last_sync = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _diff(old, new, prefix="") -> Optional[str]:
    """The first key path at which two JSON values differ, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if key not in old or key not in new:
                return f"{prefix}{key}"
            found = _diff(old[key], new[key], f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if old == new else prefix.rstrip(".") or "(value)"


def write_manifest(shard_dir: str, settings: dict, job: dict) -> None:
    """Record the label-deciding ``settings``; refuse shards made with other settings.

    ``job`` (input description, command) is informational and is replaced on every run.
    Raises ShardError naming the first differing setting.
    """
    path = os.path.join(shard_dir, MANIFEST)
    settings = json.loads(_dumps(settings))  # normalise tuples etc. as a reload would
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f)["settings"]
        if old.get("format") != settings.get("format"):
            raise ShardError(
                f"{shard_dir} was written by another zip_d2 version (settings format "
                f"{old.get('format', 1)}, this one writes {settings.get('format', 1)}), so its "
                "labels cannot be resumed; pass --overwrite to start over, or choose another --out")
        key = _diff(old, settings)
        if key is not None:
            raise ShardError(f"{shard_dir} holds labels made with other settings ({key} "
                             f"differs); pass --overwrite to start over, or choose another --out")
    write_json_atomic({"settings": settings, "job": job}, path, indent=1, sort_keys=True)


def read_manifest(shard_dir: str) -> dict:
    path = os.path.join(shard_dir, MANIFEST)
    if not os.path.isfile(path):
        raise ShardError(f"{shard_dir}: not a shard directory (no {MANIFEST})")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _dedupe(records: List[dict]) -> Tuple[Dict[str, dict], int]:
    """One record per file_name: a labeled record beats a skip; otherwise the first wins."""
    chosen, duplicates = {}, 0
    for r in records:
        old = chosen.get(r["file_name"])
        if old is None:
            chosen[r["file_name"]] = r
            continue
        duplicates += 1
        if "skipped" in old and "skipped" not in r:
            chosen[r["file_name"]] = r
    return chosen, duplicates


def merge_shards(shard_dir: str, allow_partial: bool = False,
                 listed: Optional[set] = None) -> dict:
    """One COCO dict from a shard directory.

    Image ids: the input COCO JSON's when the images came from one, else 1..N in file_name
    order. Annotation ids: 1..M in image id order, then the labeler's order within an image.
    ``listed``: the file_names the job's input holds now; records of other images (removed
    from the folder since an earlier run) are left out. Raises ShardError when fewer images are
    finished than the job listed, unless ``allow_partial``.
    """
    manifest = read_manifest(shard_dir)
    settings, job = manifest["settings"], manifest["job"]
    chosen, duplicates = _dedupe(read_all_shards(shard_dir))
    not_listed = 0
    if listed is not None:
        not_listed = sum(1 for name in chosen if name not in listed)
        chosen = {name: r for name, r in chosen.items() if name in listed}
    expected = job.get("num_images")
    if expected is not None and len(chosen) < expected and not allow_partial:
        raise ShardError(f"{shard_dir}: only {len(chosen)} of {expected} images are finished; "
                         "rerun the same command to finish them (ranks on machines without a "
                         "shared filesystem: copy their rank*.jsonl here and run "
                         "tools/merge_pseudo_labels.py; to inspect, merge with --allow-partial)")
    labeled = [r for r in chosen.values() if "skipped" not in r]
    skipped = [r for r in chosen.values() if "skipped" in r]
    if all("id" in r for r in labeled):
        labeled.sort(key=lambda r: r["id"])
    else:
        labeled.sort(key=lambda r: r["file_name"])
        for i, r in enumerate(labeled, 1):
            r["id"] = i
    images, annotations = [], []
    for r in labeled:
        images.append({"id": r["id"], "file_name": r["file_name"], "width": r["width"],
                       "height": r["height"]})
        for ann in r["annotations"]:
            annotations.append({"id": len(annotations) + 1, "image_id": r["id"], **ann})
    skipped_images = sorted(({k: r[k] for k in ("id", "file_name") if k in r}
                             | {"reason": r["skipped"]} for r in skipped),
                            key=lambda s: s["file_name"])
    counts = {"images_listed": expected, "images_labeled": len(images),
              "images_skipped": len(skipped_images), "annotations": len(annotations),
              "duplicate_records_dropped": duplicates,
              "records_of_unlisted_images_dropped": not_listed}
    return {
        "info": build_info(settings, job, counts),
        "images": images,
        "annotations": annotations,
        "categories": settings["categories"],
        "skipped_images": skipped_images,
    }
