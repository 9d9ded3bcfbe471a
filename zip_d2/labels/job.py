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
``i`` for rank ``i % WORLD_SIZE`` among those not finished yet. Shards must be on a filesystem
every rank can see for the final merge (otherwise merge them later with
tools/merge_pseudo_labels.py). A single process needs no launcher.
"""
from __future__ import annotations

import functools
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from zip_d2.data.coco_json import write_json_atomic
from zip_d2.data.validate import validate_coco

from . import shards
from .distributed import broadcast_error, dist_env, init_distributed
from .images import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    ImageEntry,
    InputError,
    decode_image,
    list_coco_images,
    list_image_folder,
)
from .statistics import LabelStats, label_statistics, statistics_lines
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


@dataclass
class JobResult:
    """What one rank did, with seconds spent per stage (summed over images)."""

    rank: int
    world_size: int
    images_total: int
    images_done_before: int
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

    def __init__(self, root: str, entries: List[ImageEntry], max_side, max_pixels, min_side):
        self.root, self.entries = root, entries
        self.limits = dict(max_side=max_side, max_pixels=max_pixels, min_side=min_side)

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, i):
        entry = self.entries[i]
        start = time.perf_counter()
        item = {"entry": entry}
        try:
            decoded = decode_image(os.path.join(self.root, entry.file_name), **self.limits)
        except Exception as e:  # any per-file failure is a recorded skip, never a crash
            item["skipped"] = f"cannot decode: {type(e).__name__}: {e}"
        else:
            # A tensor travels to the main process through shared memory, not a pickle.
            item.update(pixels=torch.from_numpy(decoded.pixels), width=decoded.width,
                        height=decoded.height)
        item["decode_s"] = time.perf_counter() - start
        return item


def _collate(items):
    return items


def _worker_init(max_pixels, _worker_id):
    # Only PIL and numpy run in the workers: cv2 and torch thread pools inherited through fork
    # from a parent that already used them can deadlock a worker.
    Image.MAX_IMAGE_PIXELS = max(max_pixels, DEFAULT_MAX_PIXELS)


def _label_batch(labeler, images: List[np.ndarray]):
    """The labeler's detections for each image; an exception stands in for a failed image."""
    if hasattr(labeler, "label_batch"):
        try:
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


def _settings(labeler, opts: JobOptions) -> dict:
    """Everything that decides the labels; a resumed job must match it exactly."""
    describe = dict(labeler.describe())
    # Ranks run on different devices (cuda:0, cuda:1...) but produce the same labels.
    describe.pop("device", None)
    return {
        "format": shards.SETTINGS_FORMAT,
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
    entries, ignored = list_image_folder(opts.images)
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
    probe = os.path.join(probe_dir, f".{os.path.basename(out)}.write-test-{os.getpid()}")
    try:
        os.makedirs(probe_dir, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise JobError(f"cannot write output {out}: {e.strerror or e}") from None


def prepare(cfg, opts: JobOptions, build_labeler: Callable):
    """Every job-level check, in the order that fails fastest, before any image is touched.

    Returns (image root, entries, input description, labeler). Raises JobError/InputError, or
    MissingWeightsError naming every missing model at once (after at most one short probe per
    download host), before any model is built.
    """
    from zip_d2.models import require_weights
    from zip_d2.pseudo import required_weights
    from zip_d2.text import load_vocabulary

    root, entries, input_desc = list_inputs(opts)
    try:
        load_vocabulary(cfg.PSEUDO.VOCABULARY)
    except ValueError as e:
        raise JobError(str(e)) from None
    check_output_writable(opts.out)
    require_weights(required_weights(cfg))
    labeler = build_labeler(cfg)
    return root, entries, input_desc, labeler


def run_job(cfg, opts: JobOptions, build_labeler: Optional[Callable] = None) -> JobResult:
    """Label this rank's share of the images; rank 0 then merges and validates everything.

    Job-level problems raise JobError/InputError before any image is decoded. Per-image
    problems are recorded as skips. Returns this rank's JobResult (``merged`` set on rank 0).
    """
    if build_labeler is None:
        from zip_d2.pseudo import build_labeler
    rank, world_size, local_rank = dist_env()
    if torch.cuda.is_available() and cfg.PSEUDO.DEVICE in ("", "cuda"):
        cfg = cfg.clone()
        cfg.defrost()
        cfg.PSEUDO.DEVICE = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    root, entries, input_desc, labeler = prepare(cfg, opts, build_labeler)

    shard_dir = shards.shard_dir_for(opts.out)
    settings = _settings(labeler, opts)
    job_desc = {"input": input_desc, "num_images": len(entries), "world_size": world_size,
                "command": list(opts.command), "batch_size": opts.batch_size}
    distributed = init_distributed(world_size, opts.dist_timeout_hours)
    error = None
    if rank == 0:
        try:
            os.makedirs(shard_dir, exist_ok=True)
            if opts.overwrite:
                for path in shards.shard_files(shard_dir):
                    os.remove(path)
                manifest = os.path.join(shard_dir, shards.MANIFEST)
                if os.path.exists(manifest):
                    os.remove(manifest)
            shards.write_manifest(shard_dir, settings, job_desc)
        except (shards.ShardError, OSError) as e:
            error = str(e)
    error = broadcast_error(distributed, rank, error)
    if error:
        raise JobError(error)
    # Ranks on other nodes see rank 0's folder only on a shared filesystem; without one they
    # still write their own shards here, to be merged later with tools/merge_pseudo_labels.py.
    os.makedirs(shard_dir, exist_ok=True)

    records = shards.read_all_shards(shard_dir)
    finished = shards.finished_names(records, opts.retry_skipped)
    mine = [e for i, e in enumerate(entries) if i % world_size == rank]
    pending = [e for e in mine if e.file_name not in finished]
    result = JobResult(rank, world_size, len(mine), len(mine) - len(pending))
    logger.info("rank %d/%d: %d images, %d already finished, %d to do", rank, world_size,
                len(mine), result.images_done_before, len(pending))

    start = time.perf_counter()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    _label_pending(labeler, root, pending, opts, settings, shard_dir, rank, world_size, result)
    result.wall_s = time.perf_counter() - start
    if torch.cuda.is_available():
        result.peak_gpu_mem_bytes = torch.cuda.max_memory_allocated()

    if distributed:
        torch.distributed.barrier()
    merge_error = None
    if rank == 0:
        try:
            merged = shards.merge_shards(shard_dir, listed={e.file_name for e in entries})
            if opts.validate:
                result.problems = validate_coco(merged, image_root=root, check_image_sizes=True,
                                                check_segmentations=True)
            write_json_atomic(merged, opts.out)
            result.merged = opts.out
            result.label_stats = label_statistics(merged)
        except Exception as e:  # re-raised below, once the other ranks are released
            merge_error = e
    if distributed:
        torch.distributed.barrier()
    if merge_error is not None:
        raise merge_error
    return result


def _label_pending(labeler, root, pending, opts, settings, shard_dir, rank, world_size, result):
    category_ids = {c["name"]: c["id"] for c in settings["categories"]}
    bar = None
    if opts.progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=result.images_total, initial=result.images_done_before,
                   desc=f"pseudo-labels rank 0/{world_size}", unit="img", dynamic_ncols=True,
                   smoothing=0.05, file=sys.stderr)
    dataset = _DecodeDataset(root, pending, opts.max_side, opts.max_pixels, opts.min_side)
    loader = DataLoader(dataset, batch_size=opts.batch_size, shuffle=False,
                        num_workers=opts.workers, collate_fn=_collate,
                        prefetch_factor=opts.prefetch if opts.workers > 0 else None,
                        worker_init_fn=functools.partial(_worker_init, opts.max_pixels),
                        persistent_workers=False)
    if opts.workers == 0:
        Image.MAX_IMAGE_PIXELS = max(opts.max_pixels, DEFAULT_MAX_PIXELS)
    failures_in_a_row = 0
    with shards.ShardWriter(shards.shard_path(shard_dir, rank, world_size)) as shard_writer:
        writer = RecordWriter(shard_writer, category_ids, result, bar)
        writer.start()
        try:
            for batch in loader:
                for item in batch:
                    result.decode_s += item["decode_s"]
                bad = [it for it in batch if "skipped" in it]
                good = [it for it in batch if "skipped" not in it]
                for it in bad:
                    writer.put(it["entry"], {"skipped": it["skipped"]})
                if not good:
                    continue
                images = [it["pixels"].numpy() for it in good]
                t0 = time.perf_counter()
                outputs = _label_batch(labeler, images)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                result.label_s += time.perf_counter() - t0
                for it, image, out in zip(good, images, outputs):
                    if isinstance(out, Exception):
                        failures_in_a_row += 1
                        writer.put(it["entry"], {"skipped": f"labeler failed: "
                                                            f"{type(out).__name__}: {out}"})
                        if failures_in_a_row >= opts.max_consecutive_failures:
                            raise JobError(f"the labeler failed on {failures_in_a_row} images in "
                                           f"a row (last: {type(out).__name__}: {out}); "
                                           "stopping: this looks like a broken setup")
                        continue
                    failures_in_a_row = 0
                    writer.put(it["entry"], {"work_shape": image.shape[:2], "width": it["width"],
                                             "height": it["height"]}, out)
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
             f"{result.images_done_before} already finished before this run",
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
