"""Per-rank append-only shard files: nothing finished is lost, nothing is done twice.

Layout, next to the output ``OUT.json``::

    OUT.json.shards/
        job.json                   settings that decide the labels (the input folder/list
                                   included), the input description, the run counter and the
                                   fingerprints of the outputs this job wrote
        rank00000-of-00002.jsonl   one line per finished image, appended as it finishes
        rank00001-of-00002.jsonl
        lock-rank00000             held (flock) by the job writing rank 0's shard

A shard file opens with a header line ``{"shard": {"format", "settings"}}``: the settings of the
job that wrote it (job.json's; labeler, vocabulary in its category order, input folder or list,
decoding). A shard is merged only into the job whose settings it carries (``check_shard``), so a
rank file copied from a job with, say, another vocabulary order is refused, not merged under the
wrong category names. Every other line is ``{"file_name", ["id"], "fingerprint", "run", "width",
"height", "annotations": [...]}`` for a labeled image or ``{"file_name", ["id"],
["fingerprint"], "run", "skipped": reason}``.
``fingerprint`` ties the labels to the bytes they were made from (``zip_d2.data.fingerprint``:
size and SHA-256 of the file; absent when the file could not be read); ``run`` counts the job's
starts, so the newest record of an image wins. Each line is written whole and flushed, so a
killed process leaves at most one torn final line; a reader ignores it and a writer cuts it off
before appending. Each rank writes only its own file; every rank reads all files (of any world
size) to know what is finished, so a rerun, with the same or another number of processes, skips
finished images whose file still has the recorded fingerprint (``resume_records``: each
line's keys only, its annotations never parsed). ``MergePlan`` indexes the directory (where each
image's latest line is) and ``write_merged`` streams it into one COCO file with deterministic
ids, one record in memory at a time (``merge_shards``: the same as a dict, for small jobs).
"""
from __future__ import annotations

import datetime
import fcntl
import glob
import json
import os
import socket
import time
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from zip_d2.data.coco_json import write_atomic, write_json_atomic
from zip_d2.data.fingerprint import file_fingerprint
from zip_d2.data.paths import OverwriteError, refuse_overwriting_inputs

from .coco_output import build_info

MANIFEST = "job.json"
# Layout version of the settings block in job.json and of the records (2: the labeler's
# description is built from its config sections; 3: settings name the input, records carry the
# image's fingerprint and the run that wrote them; 4: each shard file opens with its job's
# settings). Shards written under another layout cannot be compared, so not resumed or merged.
SETTINGS_FORMAT = 4
# Outputs remembered as this job's own (the current one and the one before it, so that a job
# killed between recording a new output and renaming it into place still knows the old one).
_OUTPUTS_KEPT = 2
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


def _normalised(settings: dict) -> dict:
    return json.loads(_dumps(settings))  # tuples become lists etc., as a reload would


def _header(settings: dict) -> dict:
    return {"shard": {"format": SETTINGS_FORMAT, "settings": _normalised(settings)}}


def _first_line(path: str) -> Optional[bytes]:
    """The first complete line of a file, or None if it has none (empty, or torn by a kill)."""
    with open(path, "rb") as f:
        line = f.readline()
    return line if line.endswith(b"\n") else None


def shard_settings(path: str) -> Optional[dict]:
    """The settings a shard file's header carries; None for a file with no complete line yet.

    Raises ShardError for a file without a header (an older zip_d2's shard, or not a shard).
    """
    line = _first_line(path)
    if line is None:
        return None
    try:
        header = json.loads(line)
    except json.JSONDecodeError:
        header = None
    shard = header.get("shard") if isinstance(header, dict) else None
    if not (isinstance(shard, dict) and isinstance(shard.get("settings"), dict)):
        raise ShardError(f"{path} has no job header: it was written by an older zip_d2 (before "
                         f"settings format {SETTINGS_FORMAT}) or is not a shard; merge it with "
                         "that version, or rerun its job with --overwrite")
    return shard["settings"]


_MERGE_FIX = ("merge only shards of one job: move that file away, or relabel its images with "
              "the same settings")


def check_shard(path: str, settings: dict, against: str = MANIFEST, fix: str = _MERGE_FIX) -> None:
    """Raise ShardError unless the shard at ``path`` was written by a job with ``settings``.

    One line naming the shard, ``against`` (where ``settings`` came from), the first setting
    that differs and ``fix``. Reads only the shard's first line, so a streaming merge can call
    it once per file.
    """
    theirs = shard_settings(path)
    if theirs is None:
        return
    key = _diff(_normalised(settings), theirs)
    if key is None:
        return
    raise ShardError(f"{path} was written by another job than {against} ({key}: "
                     f"{_short(_lookup(theirs, key))} in the shard, "
                     f"{_short(_lookup(_normalised(settings), key))} in {against}); {fix}")


def _short(value, limit=60) -> str:
    text = _dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_record(record, where: str, annotations: bool = True) -> None:
    """Raise ShardError unless ``record`` has what the merge and a resume read from it
    (``annotations=False``: a record read without them, see :func:`read_keys`)."""
    if not isinstance(record, dict) or not isinstance(record.get("file_name"), str) \
            or not record["file_name"]:
        raise ShardError(f"{where}: shard line has no file_name; delete the file to relabel its "
                         "images")
    for key in ("id", "run"):
        if key in record and not (isinstance(record[key], int)
                                  and not isinstance(record[key], bool)):
            raise ShardError(f"{where}: {key} must be an integer, got {_short(record[key])}; "
                             "delete the file to relabel its images")
    if "skipped" in record:
        return
    if not (isinstance(record.get("width"), int) and isinstance(record.get("height"), int)
            and (not annotations or (isinstance(record.get("annotations"), list)
                                     and all(isinstance(a, dict)
                                             for a in record["annotations"])))):
        raise ShardError(f"{where}: a labeled image's line needs width, height and a list of "
                         "annotations; delete the file to relabel its images")


def complete_length(f) -> int:
    """Bytes of an open binary shard file up to and including its last newline: what a reader
    may use (a killed writer leaves at most one torn final line). Found by reading backwards
    from the end, so a torn tail costs one block, not a read of the file."""
    pos = f.seek(0, os.SEEK_END)
    while pos > 0:
        step = min(1 << 16, pos)
        pos -= step
        f.seek(pos)
        newline = f.read(step).rfind(b"\n")
        if newline >= 0:
            return pos + newline + 1
    return 0


# The header line, as ShardWriter dumps it (sorted keys, no spaces): no record starts so.
_HEADER_START = b'{"shard"'


def iter_lines(path: str) -> Iterator[Tuple[int, int, bytes]]:
    """(line number, byte offset, line) of every complete record line of a shard file: not
    its header, nor blank lines."""
    with open(path, "rb") as f:
        end = complete_length(f)
        f.seek(0)
        offset = 0
        for lineno, line in enumerate(f, 1):
            if offset + len(line) > end:
                return
            if line.strip() and not (lineno == 1 and line.startswith(_HEADER_START)):
                yield lineno, offset, line
            offset += len(line)


def _parse(line: bytes, where: str) -> dict:
    """The record of one shard line (``where``: its file and line), checked
    (:func:`_check_record`)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ShardError(f"{where}: corrupt shard line ({e}); delete the file to relabel its "
                         "images") from None
    _check_record(record, where)
    return record


# A labeled record as the writer dumps it (sorted keys, no spaces) starts with its annotations;
# the keys after them are what resume and the merge index need. ',"file_name":' cannot occur
# inside a JSON string (its quote would end the string), only as the key that follows them.
_ANNOTATIONS_START = b'{"annotations":['
_AFTER_ANNOTATIONS = b'],"file_name":'


def read_keys(line: bytes, path: str = "?", lineno: int = 0) -> dict:
    """A shard line's record without its ``annotations``, which are not parsed (a line not
    in the writer's layout is parsed whole, and its annotations dropped). Its keys are checked
    (:func:`_check_record`); its annotations are checked when the merge reads them."""
    if line.startswith(_ANNOTATIONS_START):
        cut = line.find(_AFTER_ANNOTATIONS)
        if cut > 0:
            try:
                record = json.loads(b"{" + line[cut + 2:])
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict) and "annotations" not in record:
                _check_record(record, f"{path}:{lineno}", annotations=False)
                return record
    record = _parse(line, f"{path}:{lineno}")
    record.pop("annotations", None)
    return record


def read_shard(path: str) -> List[dict]:
    """The image records of one shard file (not its header), ignoring a torn final line."""
    return [_parse(line, f"{path}:{lineno}") for lineno, _, line in iter_lines(path)]


def shard_files(shard_dir: str) -> List[str]:
    return sorted(glob.glob(os.path.join(shard_dir, "rank*-of-*.jsonl")))


def read_all_shards(shard_dir: str, settings: Optional[dict] = None) -> List[dict]:
    """Every record of every shard file, in file then line order.

    Each file must have been written by a job with ``settings`` (default: job.json's, when the
    folder has one; a rank on a machine without rank 0's folder has none), else ShardError.
    """
    if settings is None and os.path.isfile(os.path.join(shard_dir, MANIFEST)):
        settings = read_manifest(shard_dir)["settings"]
    records = []
    for path in shard_files(shard_dir):
        if settings is not None:
            check_shard(path, settings, os.path.join(shard_dir, MANIFEST))
        records.extend(read_shard(path))
    return records


def _wins(new: dict, old: dict) -> bool:
    """Whether record ``new`` replaces ``old`` of the same image: the latest run wins; within a
    run a labeled record beats a skip, then the first one wins."""
    newer = new.get("run", 0) > old.get("run", 0)
    better = new.get("run", 0) == old.get("run", 0) and "skipped" in old and "skipped" not in new
    return newer or better


def latest_records(records: Iterable[dict]) -> Tuple[Dict[str, dict], int]:
    """One record per file_name, and how many others were dropped (see :func:`_wins`)."""
    chosen, duplicates = {}, 0
    for r in records:
        old = chosen.get(r["file_name"])
        if old is None:
            chosen[r["file_name"]] = r
            continue
        duplicates += 1
        if _wins(r, old):
            chosen[r["file_name"]] = r
    return chosen, duplicates


def resume_records(shard_dir: str, wanted: Optional[set] = None,
                   settings: Optional[dict] = None) -> Dict[str, dict]:
    """The latest record of each image named in ``wanted`` (default: all), without its
    annotations: what a rerun needs to know which of its images are finished. Every shard
    file is read; the annotations are never parsed nor kept.

    Each file must have been written by a job with ``settings`` (default: job.json's, as for
    :func:`read_all_shards`), else ShardError."""
    if settings is None and os.path.isfile(os.path.join(shard_dir, MANIFEST)):
        settings = read_manifest(shard_dir)["settings"]
    chosen: Dict[str, dict] = {}
    for path in shard_files(shard_dir):
        if settings is not None:
            check_shard(path, settings, os.path.join(shard_dir, MANIFEST))
        for lineno, _, line in iter_lines(path):
            r = read_keys(line, path, lineno)
            if wanted is not None and r["file_name"] not in wanted:
                continue
            old = chosen.get(r["file_name"])
            if old is None or _wins(r, old):
                chosen[r["file_name"]] = r
    return chosen


class ShardWriter:
    """Appends finished-image records to one rank's shard file, each line flushed at once.

    A new file starts with the header naming ``settings`` (the job's); an existing one must
    carry the same settings (ShardError otherwise), so no file ever mixes two jobs' records.
    """

    def __init__(self, path: str, settings: dict):
        self.path = path
        if os.path.exists(path):
            self._cut_torn_tail(path)
            check_shard(path, settings, "this job's settings",
                        "rerun with that job's settings, or delete the file to relabel its "
                        "images with these")
        self._file = open(path, "a", encoding="utf-8")
        if self._file.tell() == 0:
            self._file.write(_dumps(_header(settings)) + "\n")
            self._file.flush()
        self._last_sync = time.monotonic()

    @staticmethod
    def _cut_torn_tail(path: str) -> None:
        # A line torn by a kill would otherwise be glued to the next record.
        with open(path, "rb") as f:
            keep, size = complete_length(f), f.seek(0, os.SEEK_END)
        if keep != size:
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
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            found = _diff(a, b, f"{prefix}{i}.")
            if found:
                return found
        return None
    return None if old == new else prefix.rstrip(".") or "(value)"


def _lookup(tree, dotted):
    for part in dotted.split("."):
        if isinstance(tree, list) and part.isdigit() and int(part) < len(tree):
            tree = tree[int(part)]
        else:
            tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def write_manifest(shard_dir: str, settings: dict, job: dict) -> int:
    """Record the label-deciding ``settings``; refuse shards made with other settings.

    ``job`` (input description, command) is informational and is replaced on every run.
    Returns this run's number (1 for a new job, one more on every rerun); records written by
    this run carry it. Raises ShardError naming the first differing setting.
    """
    path = os.path.join(shard_dir, MANIFEST)
    settings = _normalised(settings)
    manifest = {"run": 0, "outputs": []}
    if os.path.exists(path):
        manifest = read_manifest(shard_dir)
        old = manifest["settings"]
        if old.get("format") != settings.get("format"):
            raise ShardError(
                f"{shard_dir} was written by another zip_d2 version (settings format "
                f"{old.get('format', 1)}, this one writes {settings.get('format', 1)}), so its "
                "labels cannot be resumed; pass --overwrite to start over, or choose another --out")
        key = _diff(old, settings)
        if key is not None and key.split(".")[0] == "input":
            raise ShardError(f"{shard_dir} holds labels of other images ({key} was "
                             f"{_lookup(old, key)}, now {_lookup(settings, key)}); pass "
                             "--overwrite to start over, or choose another --out")
        if key is not None:
            raise ShardError(f"{shard_dir} holds labels made with other settings ({key} "
                             f"differs); pass --overwrite to start over, or choose another --out")
    run = manifest.get("run", 0) + 1
    write_json_atomic({"settings": settings, "job": job, "run": run,
                       "outputs": manifest.get("outputs", [])}, path, indent=1, sort_keys=True)
    return run


def read_manifest(shard_dir: str) -> dict:
    """job.json as a dict with ``settings`` and ``job`` dicts, or a one-line ShardError."""
    path = os.path.join(shard_dir, MANIFEST)
    if not os.path.isfile(path):
        raise ShardError(f"{shard_dir}: not a shard directory (no {MANIFEST})")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        manifest, why = None, f"not valid JSON: {e}"
    else:
        why = "not a job manifest: it needs 'settings' and 'job' objects"
    if not (isinstance(manifest, dict) and isinstance(manifest.get("settings"), dict)
            and isinstance(manifest.get("job"), dict)):
        raise ShardError(f"{path} is empty or corrupt ({why}), so these shards cannot be tied "
                         "to their job; pass --overwrite to start over, or choose another --out")
    return manifest


def record_output(shard_dir: str, output_fingerprint: dict) -> None:
    """Remember a merged output as this job's own, so a rerun may replace it."""
    manifest = read_manifest(shard_dir)
    outputs = manifest.get("outputs", []) + [output_fingerprint]
    manifest["outputs"] = outputs[-_OUTPUTS_KEPT:]
    write_json_atomic(manifest, os.path.join(shard_dir, MANIFEST), indent=1, sort_keys=True)


def is_recorded_output(shard_dir: str, path: str) -> bool:
    """Whether the file at ``path`` is an output this job wrote (byte for byte)."""
    if not os.path.isfile(os.path.join(shard_dir, MANIFEST)):
        return False
    try:
        outputs = read_manifest(shard_dir).get("outputs", [])
    except ShardError:  # a corrupt manifest vouches for nothing
        return False
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        return False
    # The size first: someone else's (possibly huge) file is then recognised without reading it.
    if os.path.getsize(path) not in {o.get("size") for o in outputs}:
        return False
    return file_fingerprint(path) in outputs


def check_output_replaceable(out: str, shard_dir: str, inputs, overwrite: bool) -> None:
    """Raise ShardError unless merged labels may be written to ``out``.

    ``out`` is never one of the job's ``inputs`` ({what: path} or (what, path) pairs), whatever
    ``overwrite`` says (:func:`zip_d2.data.paths.refuse_overwriting_inputs`).
    An existing file is replaced only if it is an output recorded in ``shard_dir`` (this job
    wrote it, and a resume with other settings is refused anyway) or with ``overwrite``.
    """
    try:
        refuse_overwriting_inputs({"--out": out}, inputs)
    except OverwriteError as e:
        raise ShardError(str(e)) from None
    if overwrite or not os.path.isfile(out) or is_recorded_output(shard_dir, out):
        return
    raise ShardError(f"{out} exists and was not written by this job (it is not an output "
                     f"recorded in {shard_dir}); move it away, choose another --out, or pass "
                     "--overwrite to replace it")


def lock_path(shard_dir: str, rank: int) -> str:
    return os.path.join(shard_dir, f"lock-rank{rank:05d}")


_HELD_LOCK_FDS: set = set()


def _close_held_locks_in_child() -> None:
    # A flock belongs to the open file, which a fork shares: without this, a DataLoader worker
    # that outlives its killed parent for a moment would keep the next run out.
    for fd in _HELD_LOCK_FDS:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCK_FDS.clear()


os.register_at_fork(after_in_child=_close_held_locks_in_child)


class ShardLock:
    """One job's exclusive claim on one rank's shards of an output.

    An advisory ``flock`` on ``lock-rankNNNNN``: the kernel drops it when the holder exits or is
    killed, so a dead job never blocks the next one, and the file left behind means nothing.
    Forked children (loader workers) close their copy at once, so only the job itself holds it.
    Each rank locks its own file, so the ranks of one job do not block each other but a second
    job (any world size; its rank 0 always meets the first job's) is refused. On network
    filesystems this relies on their lock support (NFSv4, Lustre with ``-o flock``).
    """

    def __init__(self, shard_dir: str, rank: int):
        self.path, self.fd = lock_path(shard_dir, rank), None

    def acquire(self) -> "ShardLock":
        """Take the lock (creating the file) or raise ShardError naming the holder."""
        self.fd = self._try(os.O_RDWR | os.O_CREAT)
        _HELD_LOCK_FDS.add(self.fd)
        try:  # who holds it, for the next job's message; not needed for the lock itself
            holder = (f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{datetime.datetime.now().isoformat(timespec='seconds')}")
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, holder.encode(), 0)
        except OSError:
            pass
        return self

    def check_free(self) -> None:
        """Raise ShardError if another job holds the lock now; creates nothing."""
        if os.path.exists(self.path):
            fd = self._try(os.O_RDWR)  # write access: NFS emulates flock with write locks
            os.close(fd)  # closing drops the lock just taken

    def _try(self, flags) -> int:
        fd = os.open(self.path, flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown process"
            os.close(fd)
            raise ShardError(f"another job is writing {os.path.dirname(self.path)} ({holder}); "
                             "wait for it to finish, or choose another --out") from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def release(self) -> None:
        if self.fd is not None:
            _HELD_LOCK_FDS.discard(self.fd)
            os.close(self.fd)
            self.fd = None


class MergePlan:
    """What the merge of a shard directory will write, from one pass over the shards that
    parses only each record's keys (file name, run, id, size, skip reason) and remembers where
    its line is: a few hundred bytes per image. The annotations are read, one image at a
    time, only when :meth:`annotations` streams them.

    Image ids: the input COCO JSON's when the images came from one, else 1..N in file_name
    order. Annotation ids: 1..M in image id order, then the labeler's order within an image.
    ``listed``: the file_names the job's input holds now; records of other images (removed
    from the folder since an earlier run) are left out. Raises ShardError when fewer images are
    finished than the job listed, unless ``allow_partial``.
    """

    def __init__(self, shard_dir: str, allow_partial: bool = False,
                 listed: Optional[set] = None):
        manifest = read_manifest(shard_dir)
        self.shard_dir = shard_dir
        self.settings, self.job = manifest["settings"], manifest["job"]
        if self.settings.get("format") != SETTINGS_FORMAT:
            raise ShardError(f"{shard_dir} was written by another zip_d2 version (settings "
                             f"format {self.settings.get('format', 1)}, this one reads "
                             f"{SETTINGS_FORMAT}); merge it with that version, or rerun the job "
                             "with --overwrite")
        if not isinstance(self.settings.get("categories"), list):
            raise ShardError(f"{os.path.join(shard_dir, MANIFEST)} lists no categories; rerun "
                             "the job with --overwrite")
        self.paths = shard_files(shard_dir)
        # file_name -> (run, skip reason or None, file index, offset, id or None, width, height)
        chosen: Dict[str, tuple] = {}
        duplicates = 0
        for index, path in enumerate(self.paths):
            check_shard(path, self.settings, os.path.join(shard_dir, MANIFEST))
            for lineno, offset, line in iter_lines(path):
                r = read_keys(line, path, lineno)
                skip = None if "skipped" not in r else r["skipped"] or ""  # "" for null
                entry = (r.get("run", 0), skip, index, offset, r.get("id"),
                         r.get("width"), r.get("height"))
                old = chosen.get(r["file_name"])
                if old is not None:
                    duplicates += 1
                    newer = entry[0] > old[0]
                    better = entry[0] == old[0] and old[1] is not None and entry[1] is None
                    if not (newer or better):
                        continue
                chosen[r["file_name"]] = entry
        not_listed = 0
        if listed is not None:
            not_listed = sum(1 for name in chosen if name not in listed)
            for name in [name for name in chosen if name not in listed]:
                del chosen[name]
        expected = self.job.get("num_images")
        if expected is not None and len(chosen) < expected and not allow_partial:
            raise ShardError(f"{shard_dir}: only {len(chosen)} of {expected} images are "
                             "finished; rerun the same command to finish them (ranks on machines "
                             "without a shared filesystem: copy their rank*.jsonl here and run "
                             "tools/merge_pseudo_labels.py; to inspect, merge with "
                             "--allow-partial)")
        # (id, file_name, file index, offset, width, height) in output order
        labeled = [(e[4], name, e[2], e[3], e[5], e[6]) for name, e in chosen.items()
                   if e[1] is None]
        if all(item[0] is not None for item in labeled):
            labeled.sort(key=lambda item: item[0])
        else:
            labeled.sort(key=lambda item: item[1])
            labeled = [(i, *item[1:]) for i, item in enumerate(labeled, 1)]
        self.labeled = labeled
        self.skipped_images = sorted(
            (({"id": e[4]} if e[4] is not None else {}) | {"file_name": name, "reason": e[1]}
             for name, e in chosen.items() if e[1] is not None), key=lambda s: s["file_name"])
        del chosen
        self.counts = {"images_listed": expected, "images_labeled": len(labeled),
                       "images_skipped": len(self.skipped_images), "annotations": None,
                       "duplicate_records_dropped": duplicates,
                       "records_of_unlisted_images_dropped": not_listed}

    @property
    def categories(self) -> List[dict]:
        return self.settings["categories"]

    def info(self, annotations) -> dict:
        return build_info(self.settings, self.job, dict(self.counts, annotations=annotations))

    def images(self) -> Iterator[dict]:
        for image_id, name, _, _, width, height in self.labeled:
            yield {"id": image_id, "file_name": name, "width": width, "height": height}

    def annotations(self) -> Iterator[dict]:
        """Every annotation in output order, each image's record read from its shard line."""
        files = [open(path, "rb") for path in self.paths]
        try:
            count = 0
            for image_id, name, index, offset, _, _ in self.labeled:
                f = files[index]
                f.seek(offset)
                record = _parse(f.readline(), f"{self.paths[index]} (at byte {offset})")
                if record.get("file_name") != name:  # the file changed under the merge
                    raise ShardError(f"{self.paths[index]} changed during the merge; merge "
                                     "again once no job writes to it")
                for ann in record["annotations"]:
                    count += 1
                    yield {"id": count, "image_id": image_id, **ann}
        finally:
            for f in files:
                f.close()


def merge_shards(shard_dir: str, allow_partial: bool = False,
                 listed: Optional[set] = None) -> dict:
    """One COCO dict from a shard directory (in memory: for small jobs and tests; jobs write
    with :func:`write_merged`, which streams). Ids and arguments: see :class:`MergePlan`."""
    plan = MergePlan(shard_dir, allow_partial, listed)
    annotations = list(plan.annotations())
    return {"info": plan.info(len(annotations)), "categories": plan.categories,
            "images": list(plan.images()), "annotations": annotations,
            "skipped_images": plan.skipped_images}


# The annotation count goes into ``info`` (written first) once the annotations are written:
# the field is reserved as this many characters of JSON whitespace, then overwritten in place.
_COUNT_WIDTH = 20
_COUNT_MARK = "\x00annotation count\x00"


def write_merged(plan: MergePlan, out: str, sinks: Iterable = ()) -> dict:
    """Stream the merged labels to ``out`` (atomically, recorded as this job's own output
    before it appears), one record at a time; each of ``sinks`` sees every record as it is
    written (``categories(list)``, then ``image(dict)`` each, then ``annotation(dict)`` each).

    The file holds ``info`` and ``categories`` first (a reader after the class names can stop
    there), then ``images``, ``annotations`` and ``skipped_images``. Returns the counts."""
    sinks = list(sinks)
    for sink in sinks:
        sink.categories(plan.categories)
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    head = '{"info":' + dumps(plan.info(_COUNT_MARK))
    mark = head.rindex(dumps(_COUNT_MARK))
    head = head[:mark] + " " * _COUNT_WIDTH + head[mark + len(dumps(_COUNT_MARK)):]
    counts = dict(plan.counts)

    def write(f):
        f.write(head + ',"categories":' + dumps(plan.categories) + ',"images":[')
        for i, img in enumerate(plan.images()):
            for sink in sinks:
                sink.image(img)
            f.write(("," if i else "") + dumps(img))
        f.write('],"annotations":[')
        n = 0
        for n, ann in enumerate(plan.annotations(), 1):
            for sink in sinks:
                sink.annotation(ann)
            f.write(("," if n > 1 else "") + dumps(ann))
        f.write('],"skipped_images":' + dumps(plan.skipped_images) + "}")
        f.flush()
        # head is ASCII (the encoder escapes the rest), so its characters are its bytes
        os.pwrite(f.fileno(), str(n).rjust(_COUNT_WIDTH).encode(), mark)
        counts["annotations"] = n

    write_atomic(out, write, before_replace=lambda tmp: record_output(
        plan.shard_dir, file_fingerprint(tmp)))
    return counts
