"""The pseudo-label run loop: list, shard, decode ahead, label, write as it goes, merge, validate.

Work flows through three overlapped places:
- DataLoader workers decode and resize images ahead of time (``prefetch`` batches each);
- the main thread runs the labeler (the GPU stages) batch by batch: through
  ``labeler.label_batch(images)`` when the labeler offers it, else image by image (the engine
  then batches within an image, e.g. all SAM box prompts in one decoder call);
- a writer thread (``writer.RecordWriter``) turns detections into COCO records (mask upscaling,
  RLE) and appends them to this rank's shard file, so CPU post-processing overlaps the next
  batch on the GPU.

Launch with ``torchrun --nproc_per_node G [--nnodes N ...]``: RANK/WORLD_SIZE pick image
``i`` for rank ``i % WORLD_SIZE`` among those not finished yet. Or run the ranks as independent
tasks (``JobOptions.shard``, e.g. a SLURM array: ``zip_d2.slurm``): no process group, each task
records the settings itself, and a separate step merges once every task has finished. Shards
must be on a filesystem every rank can see for the final merge (otherwise merge them later with
tools/merge_pseudo_labels.py). A single process needs no launcher.

A rerun resumes only what provably belongs to the same job: the same settings and input folder
or list (else a one-line refusal, or ``overwrite``), and for each finished image a file whose
bytes still have the recorded fingerprint (checked by the loader workers; a changed image is
labeled again). Each rank holds a lock on its shard, so a second job on the same output is
refused, and the output file is replaced only if this job wrote it.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from zip_d2.data.fingerprint import fingerprint
from zip_d2.data.validate import CocoValidator

from . import shards
from .distributed import broadcast_from_rank0, dist_env, init_distributed
from .images import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    ImageEntry,
    ImageSkip,
    InputError,
    decode_image,
    list_coco_images,
    list_image_folder,
    read_image_bytes,
)
from .statistics import LabelStats, LabelStatsBuilder, statistics_lines
from .writer import RecordWriter

logger = logging.getLogger(__name__)


class JobError(RuntimeError):
    """A problem with the job as a whole; the message is one line for the user."""


@dataclass
class JobOptions:
    """How to run the job (what decides the labels is in the config, plus the decoding limits).

    images: folder of images (searched recursively); with ``coco_json`` its image root instead.
    coco_json: COCO JSON whose image list and ids are used.
    out: the merged COCO JSON; shards go to ``out + ".shards"``.
    """

    out: str
    images: Optional[str] = None
    coco_json: Optional[str] = None
    batch_size: int = 4
    workers: int = 2
    prefetch: int = 2
    max_side: int = 4096
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE
    overwrite: bool = False
    retry_skipped: bool = False
    progress: bool = True
    validate: bool = True
    # Stop the job when this many images in a row fail inside the labeler: that is a broken
    # setup (driver, weights, code), not bad images, and should not burn a week of GPU time.
    max_consecutive_failures: int = 50
    dist_timeout_hours: float = 48.0
    command: List[str] = field(default_factory=list)
    # The config file the job was built from, if any: never a valid --out.
    config_file: Optional[str] = None
    # (rank, world_size) of one independent task (a SLURM array task) instead of torchrun's:
    # this task labels only its share and does not merge (tools/merge_pseudo_labels.py does,
    # once every task has finished).
    shard: Optional[Tuple[int, int]] = None

    def check(self) -> None:
        """Raise JobError for a value that makes no sense (named as the tool's flag)."""
        lowest = {"batch_size": 1, "workers": 0, "prefetch": 1, "max_side": 0, "max_pixels": 1,
                  "min_side": 0, "max_consecutive_failures": 1}
        for name, low in lowest.items():
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise JobError(f"--{name.replace('_', '-')} must be an integer of at least "
                               f"{low}, got {value!r}")
        if self.shard is not None:
            rank, world_size = self.shard
            if not 0 <= rank < world_size:
                raise JobError(f"--shard {rank}/{world_size}: the rank must be in "
                               f"[0, {world_size})")
            if self.overwrite:
                raise JobError("--overwrite cannot be used with --shard: the tasks would delete "
                               "each other's shards; start over by deleting OUT.shards first")
        if not self.dist_timeout_hours > 0:
            raise JobError(f"dist_timeout_hours must be positive, got {self.dist_timeout_hours}")


@dataclass
class JobResult:
    """What one rank did, with seconds spent per stage (summed over images)."""

    rank: int
    world_size: int
    images_total: int
    images_done_before: int
    images_changed: int = 0
    images_labeled: int = 0
    images_skipped: int = 0
    annotations: int = 0
    wall_s: float = 0.0
    decode_s: float = 0.0
    label_s: float = 0.0
    post_s: float = 0.0
    write_s: float = 0.0
    peak_gpu_mem_bytes: int = 0
    merged: Optional[str] = None
    problems: List[str] = field(default_factory=list)
    # Rank 0, once merged: how the labels of the whole output spread over classes and images.
    label_stats: Optional[LabelStats] = None

    @property
    def images_processed(self) -> int:
        return self.images_labeled + self.images_skipped


class _DecodeDataset(Dataset):
    """Decodes one entry in a loader worker; bad files come back as a skip reason."""

    def __init__(self, root: str, entries: List[ImageEntry], max_side, max_pixels, min_side,
                 prepare: Optional[Callable] = None):
        self.root, self.entries = root, entries
        self.limits = dict(max_side=max_side, max_pixels=max_pixels, min_side=min_side)
        # The labeler's model-input resizing (``labeler.preprocess``), run here when it is safe
        # in a forked worker, so it stays off the labelling loop's thread.
        self.prepare = prepare

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, i):
        entry = self.entries[i]
        start = time.perf_counter()
        item = {"entry": entry, "fingerprint": None}
        path = os.path.join(self.root, entry.file_name)
        try:
            # One read: the bytes that are fingerprinted are the bytes that are decoded.
            data = read_image_bytes(path)
            item["fingerprint"] = fingerprint(data)
            decoded = decode_image(path, data=data, **self.limits)
        except Exception as e:  # any per-file failure is a recorded skip, never a crash
            item["skipped"] = f"cannot decode: {type(e).__name__}: {e}"
        else:
            # A tensor travels to the main process through shared memory, not a pickle.
            item.update(pixels=torch.from_numpy(decoded.pixels), width=decoded.width,
                        height=decoded.height)
            if self.prepare is not None:
                item["inputs"] = self.prepare(decoded.pixels)
        item["decode_s"] = time.perf_counter() - start
        return item


class _FingerprintDataset(Dataset):
    """Fingerprints one finished image's file in a loader worker (None if it cannot be read)."""

    def __init__(self, root: str, entries: List[ImageEntry]):
        self.root, self.entries = root, entries

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, i):
        try:
            return fingerprint(read_image_bytes(os.path.join(self.root, self.entries[i].file_name)))
        except (OSError, ImageSkip):  # a FIFO is never read: that would wait forever
            return None


def _collate(items):
    return items


def _worker_init(max_pixels, _worker_id):
    # Only PIL and numpy run in the workers: cv2 and torch thread pools inherited through fork
    # from a parent that already used them can deadlock a worker.
    Image.MAX_IMAGE_PIXELS = max(max_pixels, DEFAULT_MAX_PIXELS)


def _label_batch(labeler, images: List[np.ndarray], inputs: Optional[list] = None):
    """The labeler's detections for each image; an exception stands in for a failed image.
    inputs: the images' model inputs made in the loader workers (``labeler.preprocess``)."""
    if hasattr(labeler, "label_batch"):
        try:
            if inputs is not None:
                return list(labeler.label_batch(images, inputs=inputs))
            return list(labeler.label_batch(images))
        except Exception:  # fall back to one at a time to find the image that fails
            logger.warning("batched labeling failed; retrying the batch one image at a time",
                           exc_info=True)
    out = []
    for image in images:
        try:
            out.append(labeler(image))
        except Exception as e:  # recorded as this image's skip reason by the caller
            out.append(e)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return out


def _settings(labeler, opts: JobOptions, input_desc: dict) -> dict:
    """Everything that decides the labels, the input included; a resumed job must match it."""
    describe = dict(labeler.describe())
    # Ranks run on different devices (cuda:0, cuda:1...) but produce the same labels.
    describe.pop("device", None)
    # Which images: the folder (or list) itself, resolved, so another folder holding files of
    # the same names is never taken for this one. Files added to or removed from it are fine.
    which = {key: os.path.realpath(input_desc[key]) for key in ("coco_json", "image_root")
             if key in input_desc}
    return {
        "format": shards.SETTINGS_FORMAT,
        "input": which,
        "labeler": describe,
        "categories": list(labeler.categories),
        "decoding": {
            "max_side": opts.max_side,
            "max_pixels": opts.max_pixels,
            "min_side": opts.min_side,
            "exif_orientation": True,
            "color": "8-bit RGB; alpha dropped; 16-bit scaled to 8-bit",
        },
    }


def own_outputs(opts: JobOptions) -> List[str]:
    """The job's own outputs, never listed as its images: the shard folder, and ``--out``
    unless a file is there that this job did not write (then it is an input like any other,
    and :func:`check_output_replaceable` refuses to write over it)."""
    shard_dir = shards.shard_dir_for(opts.out)
    if os.path.exists(opts.out) and not (os.path.isfile(opts.out)
                                         and shards.is_recorded_output(shard_dir, opts.out)):
        return [shard_dir]
    return [shard_dir, opts.out]


def list_inputs(opts: JobOptions):
    """(image root, entries, description of the input) — or InputError."""
    if opts.coco_json:
        entries = list_coco_images(opts.coco_json)
        root = opts.images or os.path.dirname(os.path.abspath(opts.coco_json))
        if not os.path.isdir(root):
            raise InputError(f"image root not found: {root}")
        return root, entries, {"coco_json": os.path.abspath(opts.coco_json),
                               "image_root": os.path.abspath(root)}
    if not opts.images:
        raise InputError("give --images DIR or --coco-json FILE")
    entries, ignored = list_image_folder(opts.images, exclude=own_outputs(opts))
    return opts.images, entries, {"image_root": os.path.abspath(opts.images),
                                  "non_image_files_ignored": ignored}


def check_output_writable(out: str) -> None:
    """Raise JobError unless ``out`` and its shard directory can be written.

    Probes with a temporary file so that a job which stops later (e.g. on missing weights)
    leaves nothing behind but the output's parent folder.
    """
    if os.path.isdir(out):
        raise JobError(f"output {out} is a directory; give a file name such as {out}/labels.json")
    shard_dir = shards.shard_dir_for(out)
    if os.path.exists(shard_dir) and not os.path.isdir(shard_dir):
        raise JobError(f"cannot write output {out}: {shard_dir} exists and is not a folder")
    probe_dir = shard_dir if os.path.isdir(shard_dir) else os.path.dirname(os.path.abspath(out))
    probe = None
    try:
        os.makedirs(probe_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=f".{os.path.basename(out)}.write-test-")
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
    except OSError as e:
        raise JobError(f"cannot write output {out}: {e.strerror or e}") from None
    finally:
        if probe is not None:  # a full disk fails the write, not the file's creation
            os.remove(probe)


def missing_folders(out: str) -> List[str]:
    """The folders above ``out`` that do not exist yet, deepest first (the job makes them)."""
    folders, folder = [], os.path.dirname(os.path.abspath(out))
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folders.append(folder)
        folder = os.path.dirname(folder)
    return folders


def remove_empty_folders(folders: List[str]) -> None:
    """After a job that stopped early: remove ``folders`` (from :func:`missing_folders`),
    deepest first, while they are empty, so that a refused job leaves no folder behind."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:  # not empty (another rank wrote there) or already gone
            return


def input_files(cfg, opts: JobOptions) -> Dict[str, str]:
    """The files the job reads ({what: path}): none of them may be its --out."""
    named = {"--coco-json": opts.coco_json, "--config": opts.config_file,
             "PSEUDO.VOCABULARY": cfg.PSEUDO.VOCABULARY,
             "PSEUDO.SAM.CHECKPOINT": cfg.PSEUDO.SAM.CHECKPOINT,
             "PSEUDO.CLIP.PRETRAINED": cfg.PSEUDO.CLIP.PRETRAINED,
             "PSEUDO.BOUNDARY.PRETRAINED": cfg.PSEUDO.BOUNDARY.PRETRAINED}
    return {what: path for what, path in named.items() if path and os.path.isfile(path)}


def check_output_replaceable(cfg, opts: JobOptions, root: str = "",
                              entries: List[ImageEntry] = ()) -> None:
    """Raise JobError unless the job may write ``opts.out``: never over one of its inputs (the
    images ``entries`` under ``root`` included), with or without ``overwrite``; see
    :func:`shards.check_output_replaceable` for the rest."""
    images = (("image", os.path.join(root, e.file_name)) for e in entries)
    try:
        shards.check_output_replaceable(opts.out, shards.shard_dir_for(opts.out),
                                        [*input_files(cfg, opts).items(), *images],
                                        opts.overwrite)
    except shards.ShardError as e:
        raise JobError(str(e)) from None


def prepare(cfg, opts: JobOptions, build_labeler: Callable, rank: int = 0):
    """Every job-level check, in the order that fails fastest, before anything is written and
    before the (slow) labeler is built.

    Returns (image root, entries, input description, labeler). Raises JobError/InputError, or
    MissingWeightsError naming every missing model at once (after at most one short probe per
    download host), before any model is built.
    """
    from zip_d2.models import require_weights
    from zip_d2.pseudo import check_config, required_weights
    from zip_d2.text import load_vocabulary

    opts.check()
    try:
        check_config(cfg)
    except ValueError as e:
        raise JobError(str(e)) from None
    root, entries, input_desc = list_inputs(opts)
    try:
        load_vocabulary(cfg.PSEUDO.VOCABULARY)
    except ValueError as e:
        raise JobError(str(e)) from None
    check_output_writable(opts.out)
    check_output_replaceable(cfg, opts, root, entries)
    try:  # the lock itself is taken later; this only spares a second job the model build
        shards.ShardLock(shards.shard_dir_for(opts.out), rank).check_free()
    except shards.ShardError as e:
        raise JobError(str(e)) from None
    require_weights(required_weights(cfg))
    try:
        labeler = build_labeler(cfg)
    except ValueError as e:  # a value that does not fit the models (e.g. not a ViT for Surgery)
        raise JobError(str(e)) from None
    return root, entries, input_desc, labeler


def run_job(cfg, opts: JobOptions, build_labeler: Optional[Callable] = None) -> JobResult:
    """Label this rank's share of the images; rank 0 then merges and validates everything.

    Job-level problems raise JobError/InputError before any image is decoded. Per-image
    problems are recorded as skips. Returns this rank's JobResult (``merged`` set on rank 0).
    """
    if build_labeler is None:
        from zip_d2.pseudo import build_labeler
    rank, world_size, local_rank = dist_env()
    if opts.shard is not None:  # one task among independent ones: its device is its own
        (rank, world_size), local_rank = opts.shard, 0
    if torch.cuda.is_available() and cfg.PSEUDO.DEVICE in ("", "cuda"):
        cfg = cfg.clone()
        cfg.defrost()
        cfg.PSEUDO.DEVICE = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    root, entries, input_desc, labeler = prepare(cfg, opts, build_labeler, rank)

    shard_dir = shards.shard_dir_for(opts.out)
    settings = _settings(labeler, opts, input_desc)
    job_desc = {"input": input_desc, "num_images": len(entries), "world_size": world_size,
                "command": list(opts.command), "batch_size": opts.batch_size}
    # Ranks on other nodes see rank 0's folder only on a shared filesystem; without one they
    # still write (and lock) their own shards here, to be merged later with
    # tools/merge_pseudo_labels.py.
    os.makedirs(shard_dir, exist_ok=True)
    try:
        lock = shards.ShardLock(shard_dir, rank).acquire()
    except shards.ShardError as e:
        raise JobError(str(e)) from None
    try:
        return _run_locked(cfg, opts, labeler, root, entries, settings, job_desc, shard_dir,
                           rank, world_size)
    finally:
        lock.release()


def _run_locked(cfg, opts, labeler, root, entries, settings, job_desc, shard_dir, rank,
                world_size):
    independent = opts.shard is not None
    distributed = not independent and init_distributed(world_size, opts.dist_timeout_hours)
    verdict = None
    if independent:  # every task checks and records the settings; one at a time
        with _manifest_lock(shard_dir):
            try:
                verdict = (None, shards.write_manifest(shard_dir, settings, job_desc))
            except (shards.ShardError, OSError) as e:
                verdict = (str(e), None)
    elif rank == 0:
        try:
            if opts.overwrite:
                for path in shards.shard_files(shard_dir):
                    os.remove(path)
                manifest = os.path.join(shard_dir, shards.MANIFEST)
                if os.path.exists(manifest):
                    os.remove(manifest)
            verdict = (None, shards.write_manifest(shard_dir, settings, job_desc))
        except (shards.ShardError, OSError) as e:
            verdict = (str(e), None)
    error, run = broadcast_from_rank0(distributed, rank, verdict)
    if error:
        raise JobError(error)

    mine, finished, changed, pending = resume_scan(shard_dir, root, entries, opts, rank,
                                                   world_size)
    result = JobResult(rank, world_size, len(mine), len(mine) - len(pending),
                       images_changed=len(changed))
    logger.info("rank %d/%d: %d images, %d already finished, %d of those changed since, %d to do",
                rank, world_size, len(mine), len(finished), len(changed), len(pending))

    start = time.perf_counter()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    _label_pending(labeler, root, pending, opts, settings, shard_dir, rank, world_size, result,
                   run)
    result.wall_s = time.perf_counter() - start
    if torch.cuda.is_available():
        result.peak_gpu_mem_bytes = torch.cuda.max_memory_allocated()

    if distributed:
        torch.distributed.barrier()
    merge_error = None
    if rank == 0 and not independent:
        try:
            finish_output(cfg, opts, root, entries, shard_dir, result)
        except Exception as e:  # re-raised below, once the other ranks are released
            merge_error = e
    if distributed:
        torch.distributed.barrier()
    if merge_error is not None:
        raise merge_error
    return result


def resume_scan(shard_dir, root, entries, opts, rank, world_size):
    """What this rank still has to do: (its entries, those finished before, those of the
    finished whose file changed since, those to label now).

    Only this rank's images' records are kept, without their annotations (never parsed), and
    only until their files are fingerprinted."""
    mine = [e for i, e in enumerate(entries) if i % world_size == rank]
    latest = shards.resume_records(shard_dir, wanted={e.file_name for e in mine})
    finished = [e for e in mine if _reusable(latest.get(e.file_name), e, opts.retry_skipped)]
    changed = _changed_files(root, finished, latest, opts, rank)
    del latest
    done = set(finished) - changed
    pending = [e for e in mine if e not in done]
    return mine, finished, changed, pending


def finish_output(cfg, opts, root, entries, shard_dir, result):
    """Rank 0, once every rank is done: merge the shards into ``opts.out``, validating and
    counting each record as it is written (one pass, one record in memory at a time); fill
    ``result``'s problems, merged path and label statistics.

    Image headers are not opened again: every image of the output was read by this run, either
    decoded (labeled now) or fingerprinted by its rank's resume scan (the bytes its recorded
    size was measured from). Files are still checked to exist."""
    plan = shards.MergePlan(shard_dir, listed={e.file_name for e in entries})
    checker = (CocoValidator(image_root=root, check_image_sizes=False, check_segmentations=True)
               if opts.validate else None)
    stats = LabelStatsBuilder()
    # Checked again: a file may have appeared at --out while the job ran.
    check_output_replaceable(cfg, opts, root, entries)
    shards.write_merged(plan, opts.out, [s for s in (checker, stats) if s is not None])
    result.problems = checker.finish() if checker is not None else []
    result.merged = opts.out
    result.label_stats = stats.finish(len(plan.skipped_images))


@contextlib.contextmanager
def _manifest_lock(shard_dir: str):
    """Held while an independent task reads and rewrites job.json (tasks start together)."""
    fd = os.open(os.path.join(shard_dir, "lock-manifest"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _reusable(record: Optional[dict], entry: ImageEntry, retry_skipped: bool) -> bool:
    """Whether ``record`` may stand for ``entry`` (its file content is checked separately)."""
    return (record is not None and not (retry_skipped and "skipped" in record)
            and record.get("id") == entry.image_id)


def _changed_files(root, finished, latest, opts, rank) -> set:
    """The finished entries whose file no longer has the recorded fingerprint.

    Loader workers read and hash the files in parallel; nothing is decoded. A file that could
    not be read then and cannot be read now (no fingerprint either time) counts as unchanged.
    """
    if not finished:
        return set()
    loader = DataLoader(_FingerprintDataset(root, finished), batch_size=32,
                        num_workers=opts.workers, collate_fn=_collate,
                        prefetch_factor=opts.prefetch if opts.workers > 0 else None)
    bar = None
    if opts.progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=len(finished), desc="checking finished images", unit="img",
                   dynamic_ncols=True, file=sys.stderr)
    changed, i = set(), 0
    for batch in loader:
        for now in batch:
            entry = finished[i]
            i += 1
            if now != latest[entry.file_name].get("fingerprint"):
                changed.add(entry)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return changed


def _label_pending(labeler, root, pending, opts, settings, shard_dir, rank, world_size, result,
                   run):
    category_ids = {c["name"]: c["id"] for c in settings["categories"]}
    bar = None
    if opts.progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=result.images_total, initial=result.images_done_before,
                   desc=f"pseudo-labels rank 0/{world_size}", unit="img", dynamic_ncols=True,
                   smoothing=0.05, file=sys.stderr)
    preprocess = getattr(labeler, "preprocess", None)
    prepare = preprocess if getattr(preprocess, "worker_safe", False) else None
    dataset = _DecodeDataset(root, pending, opts.max_side, opts.max_pixels, opts.min_side,
                             prepare)
    loader = DataLoader(dataset, batch_size=opts.batch_size, shuffle=False,
                        num_workers=opts.workers, collate_fn=_collate,
                        prefetch_factor=opts.prefetch if opts.workers > 0 else None,
                        worker_init_fn=functools.partial(_worker_init, opts.max_pixels),
                        persistent_workers=False)
    if opts.workers == 0:
        Image.MAX_IMAGE_PIXELS = max(opts.max_pixels, DEFAULT_MAX_PIXELS)
    failures_in_a_row = 0
    with shards.ShardWriter(shards.shard_path(shard_dir, rank, world_size),
                            settings) as shard_writer:
        writer = RecordWriter(shard_writer, category_ids, result, bar, run)
        writer.start()
        try:
            for batch in loader:
                for item in batch:
                    result.decode_s += item["decode_s"]
                bad = [it for it in batch if "skipped" in it]
                good = [it for it in batch if "skipped" not in it]
                for it in bad:
                    writer.put(it["entry"], {"skipped": it["skipped"],
                                             "fingerprint": it["fingerprint"]})
                if not good:
                    continue
                images = [it["pixels"].numpy() for it in good]
                t0 = time.perf_counter()
                outputs = _label_batch(labeler, images,
                                       [it["inputs"] for it in good] if prepare else None)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                result.label_s += time.perf_counter() - t0
                for it, image, out in zip(good, images, outputs):
                    if isinstance(out, Exception):
                        failures_in_a_row += 1
                        writer.put(it["entry"], {"skipped": f"labeler failed: "
                                                            f"{type(out).__name__}: {out}",
                                                 "fingerprint": it["fingerprint"]})
                        if failures_in_a_row >= opts.max_consecutive_failures:
                            raise JobError(f"the labeler failed on {failures_in_a_row} images in "
                                           f"a row (last: {type(out).__name__}: {out}); "
                                           "stopping: this looks like a broken setup")
                        continue
                    failures_in_a_row = 0
                    writer.put(it["entry"], {"work_shape": image.shape[:2], "width": it["width"],
                                             "height": it["height"],
                                             "fingerprint": it["fingerprint"]}, out)
        finally:
            writer.finish()
            if bar is not None:
                bar.close()


def summary_lines(result: JobResult) -> List[str]:
    """Human-readable throughput numbers for one rank; on rank 0 after the merge, how the
    output's labels spread over classes and images."""
    n = max(result.images_processed, 1)
    rate = (f"{result.images_processed / result.wall_s:.2f}" if result.wall_s > 0 and
            result.images_processed else "n/a")
    lines = [f"rank {result.rank}/{result.world_size}: {result.images_labeled} labeled, "
             f"{result.images_skipped} skipped, {result.annotations} annotations, "
             f"{result.images_done_before} already finished before this run (files unchanged)"
             + (f", {result.images_changed} changed since and labeled again"
                if result.images_changed else ""),
             f"  end to end {rate} images/s over {result.wall_s:.1f} s; per image: decode "
             f"{1000 * result.decode_s / n:.1f} ms (in loader workers), label "
             f"{1000 * result.label_s / n:.1f} ms, post-process {1000 * result.post_s / n:.1f} ms, "
             f"write {1000 * result.write_s / n:.1f} ms"]
    if result.peak_gpu_mem_bytes:
        lines.append(f"  peak GPU memory {result.peak_gpu_mem_bytes / 2**30:.2f} GiB")
    if result.label_stats is not None:
        lines.append(f"labels in {result.merged}:")
        lines += statistics_lines(result.label_stats)
    return lines
