#!/usr/bin/env python
"""Measure the pseudo-label job: images/s end to end and time per stage, peak GPU memory.

CPU, tiny random preset (what the tests use):
    python tools/bench/benchmark_pseudo_labels.py --config configs/pseudo/tiny_random.yaml
GPU, the paper's model sizes on COCO-sized (640x480) images; random weights where the machine
cannot download them (the timing does not depend on the weights' values, only the number of
detections does):
    python tools/bench/benchmark_pseudo_labels.py --config configs/pseudo/zip_paper.yaml \
        --random-weights --num-images 64 --workers 8 --batch-size 4

Two passes over the same images, after a warm-up: (1) per stage, one image at a time, with the
GPU synchronised around every stage so each gets its own time; (2) the real job (loader workers,
writer thread, shard files, merge) for the end-to-end rate. The targets from the issue (>= 5
images/s, <= 16 GB peak GPU memory per process) are checked when a GPU is used.
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET_IMAGES_PER_S = 5.0
TARGET_PEAK_GIB = 16.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default=os.path.join(REPO, "configs", "pseudo", "tiny_random.yaml"))
    p.add_argument("--images", help="image folder (default: generate synthetic images)")
    p.add_argument("--num-images", type=int, default=24)
    p.add_argument("--size", default="640x480", help="WxH of generated images (COCO-sized)")
    p.add_argument("--stage-images", type=int, default=6,
                   help="images timed stage by stage (after --warmup)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--random-weights", action="store_true",
                   help="set PSEUDO.RANDOM_WEIGHTS (no downloads; same compute)")
    p.add_argument("--json-out", help="also write the numbers here")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    return p.parse_args(argv)


class StageTimer:
    """Wraps a labeler's stage methods (where they exist) to time each call."""

    # (stage name, attribute path of the object, method name)
    STAGES = [("clip clues (ViT surgery)", "", "semantic_clues"),
              ("boundary trunk + k-means", "", "boundary_clusters"),
              ("fragment discovery", "", "discover"),
              ("SAM image encoder", "refiner", "set_images"),
              ("SAM mask decoder", "refiner", "refine"),
              ("SAM automatic masks", "generator", "generate"),
              ("NMS + formatting", "", "_finish")]

    def __init__(self, labeler, sync):
        self.times = defaultdict(float)
        self.calls = defaultdict(int)
        self.active = False
        self.sync = sync
        for name, owner_attr, method in self.STAGES:
            owner = getattr(labeler, owner_attr, None) if owner_attr else labeler
            if owner is not None and hasattr(owner, method):
                setattr(owner, method, self._wrap(name, getattr(owner, method)))

    def _wrap(self, name, fn):
        def timed(*args, **kwargs):
            if not self.active:
                return fn(*args, **kwargs)
            self.sync()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self.sync()
            self.times[name] += time.perf_counter() - start
            self.calls[name] += 1
            return out
        return timed


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import torch

    from zip_d2.benchmarks.inputs import make_images
    from zip_d2.config import setup_cfg
    from zip_d2.labels.coco_output import detections_to_annotations
    from zip_d2.labels.images import decode_image, list_image_folder
    from zip_d2.labels.job import JobOptions, run_job, summary_lines
    from zip_d2.pseudo import build_labeler

    cfg = setup_cfg(args.config, args.opts,
                    settings={"PSEUDO.RANDOM_WEIGHTS": True} if args.random_weights else None)
    # PSEUDO.DEVICE "" resolves to the current CUDA device when there is one.
    cuda = torch.cuda.is_available() and cfg.PSEUDO.DEVICE in ("", "cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    with tempfile.TemporaryDirectory(prefix="zip_bench_") as tmp:
        if args.images:
            folder = args.images
        else:
            w, h = (int(v) for v in args.size.lower().split("x"))
            folder = make_images(os.path.join(tmp, "images"), args.num_images, w, h)
        entries = list_image_folder(folder)[0][: args.num_images]

        start = time.perf_counter()
        labeler = build_labeler(cfg)
        sync()
        build_s = time.perf_counter() - start
        desc = labeler.describe()

        # Pass 1: stage by stage.
        timer = StageTimer(labeler, sync)
        category_ids = {c["name"]: c["id"] for c in labeler.categories}
        per = defaultdict(float)
        detections = []
        stage_entries = entries[: args.warmup + args.stage_images]
        for k, entry in enumerate(stage_entries):
            measure = k >= args.warmup
            timer.active = measure
            t0 = time.perf_counter()
            decoded = decode_image(os.path.join(folder, entry.file_name), max_side=4096)
            t1 = time.perf_counter()
            dets = labeler(decoded.pixels)
            sync()
            t2 = time.perf_counter()
            detections_to_annotations(dets, decoded.pixels.shape[:2], decoded.width,
                                      decoded.height, category_ids)
            t3 = time.perf_counter()
            if measure:
                per["decode"] += t1 - t0
                per["labeler total"] += t2 - t1
                per["post-process (RLE)"] += t3 - t2
                detections.append(len(dets))
        timer.active = False
        n_stage = max(len(stage_entries) - args.warmup, 1)

        # Pass 2: the real job, end to end.
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        opts = JobOptions(out=os.path.join(tmp, "bench.json"), images=folder,
                          batch_size=args.batch_size, workers=args.workers, overwrite=True,
                          progress=True, validate=False)
        if len(entries) < len(list_image_folder(folder)[0]):
            opts.images = os.path.join(tmp, "subset")
            os.makedirs(opts.images, exist_ok=True)
            for e in entries:
                dst = os.path.join(opts.images, e.file_name)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.symlink(os.path.abspath(os.path.join(folder, e.file_name)), dst)
        result = run_job(cfg, opts, build_labeler=lambda _cfg: labeler)

    e2e = result.images_processed / result.wall_s if result.wall_s else float("nan")
    device = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores, " \
        f"{torch.get_num_threads()} torch threads)"
    report = {
        "device": device, "config": args.config, "random_weights": bool(desc.get("random_weights")),
        "method": desc.get("method"), "images": len(entries), "batch_size": args.batch_size,
        "workers": args.workers, "model_build_s": build_s,
        "end_to_end_images_per_s": e2e,
        "stage_ms_per_image": {k: 1000 * v / n_stage for k, v in per.items()},
        "labeler_stage_ms_per_image": {k: 1000 * v / n_stage for k, v in timer.times.items()},
        "mean_detections_per_image": float(np.mean(detections)) if detections else 0.0,
        "peak_gpu_mem_gib": result.peak_gpu_mem_bytes / 2**30 if cuda else None,
    }
    print(f"\ndevice: {device}; config {args.config}; method {report['method']}; "
          f"{'RANDOM WEIGHTS; ' if report['random_weights'] else ''}{len(entries)} images")
    print(f"model build: {build_s:.1f} s (not counted below)")
    print(f"per stage, ms per image (mean of {n_stage}, synchronised):")
    for k, v in report["stage_ms_per_image"].items():
        print(f"  {k:<28} {v:9.1f}")
    for k, v in report["labeler_stage_ms_per_image"].items():
        print(f"    {k:<26} {v:9.1f}")
    print(f"  mean detections per image   {report['mean_detections_per_image']:9.1f}")
    for line in summary_lines(result):
        print(line)
    print(f"END TO END: {e2e:.2f} images/s")
    if cuda:
        peak = report["peak_gpu_mem_gib"]
        print(f"PEAK GPU MEMORY: {peak:.2f} GiB")
        print(f"targets: >= {TARGET_IMAGES_PER_S} images/s: "
              f"{'PASS' if e2e >= TARGET_IMAGES_PER_S else 'FAIL'}; <= {TARGET_PEAK_GIB} GiB: "
              f"{'PASS' if peak <= TARGET_PEAK_GIB else 'FAIL'}")
    print("json: " + json.dumps(report))
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
