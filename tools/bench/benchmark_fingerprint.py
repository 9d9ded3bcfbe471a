#!/usr/bin/env python
"""Benchmark: what the content fingerprint costs the pseudo-label job, per image.

    python tools/bench/benchmark_fingerprint.py [--out work/bench_fingerprint] [--repeats 5]

Writes two photo-like JPEGs (a 9000x6000 camera frame and a 640x480 COCO-sized image: smooth
structure plus sensor-like noise, quality 92, so the files are as large as real photos), then
times, interleaved and from the page cache, what a loader worker does per image:

- ``decode from the path``: the job's decode before fingerprints (``decode_image(path)`` at the
  default ``--max-side 4096``; PIL reads the file as it decodes);
- ``read, decode the bytes``: the file read whole, then decoded from memory;
- ``read, fingerprint, decode``: the job's decode now (one read, SHA-256 of those bytes, decode
  from them), and its ratio to the first;
- ``sha256`` of the bytes alone (what a resume pays per finished image, which is read and hashed
  but not decoded), with BLAKE2b and MD5 for reference.

Prints medians; the variants run in a rotating order so that none always runs first. The machine
may be shared: compare the ratios, which are measured in one run.
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import argparse
import hashlib
import os
import statistics
import sys
import time

import numpy as np
from PIL import Image

from zip_d2.data.fingerprint import fingerprint
from zip_d2.labels.images import DEFAULT_MAX_PIXELS, decode_image

SIZES = {"9000x6000": (9000, 6000), "640x480": (640, 480)}


def photo_like(width, height, seed=0):
    """(H, W, 3) uint8: smooth random structure at a few scales plus per-pixel noise."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float32)
    for cells, amplitude in ((4, 90.0), (32, 40.0), (256, 20.0)):
        coarse = rng.normal(0, amplitude, (cells * height // width + 1, cells, 3))
        image += np.asarray(Image.fromarray(coarse.astype(np.float32)[:, :, 0]).resize(
            (width, height), Image.Resampling.BICUBIC))[:, :, None]
    image += 128 + rng.normal(0, 6, (height, width, 3)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def decode_from_path(path):
    return decode_image(path, max_side=4096)


def read_then_decode(path):
    return decode_image(path, max_side=4096, data=_read(path))


def read_fingerprint_decode(path):
    data = _read(path)
    fingerprint(data)
    return decode_image(path, max_side=4096, data=data)


VARIANTS = {"decode from the path (before)": decode_from_path,
            "read, decode the bytes": read_then_decode,
            "read, fingerprint, decode (now)": read_fingerprint_decode}


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="work/bench_fingerprint", help="where the JPEGs are written")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    Image.MAX_IMAGE_PIXELS = max(DEFAULT_MAX_PIXELS, 60_000_000)
    print(f"machine: {os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.2f}; "
          f"medians of {args.repeats} interleaved repeats, files in the page cache")
    for name, (width, height) in SIZES.items():
        path = os.path.join(args.out, f"photo_{name}.jpg")
        if not os.path.exists(path):
            Image.fromarray(photo_like(width, height)).save(path, quality=92)
        data = _read(path)
        read_fingerprint_decode(path)  # warm the page cache and the decoder
        names = list(VARIANTS)
        times = {k: [] for k in names + ["sha256", "blake2b", "md5"]}
        for r in range(args.repeats):
            for k in names[r % len(names):] + names[:r % len(names)]:
                times[k].append(timed(VARIANTS[k], path))
            for algo in ("sha256", "blake2b", "md5"):
                times[algo].append(timed(lambda a: hashlib.new(a, data).digest(), algo))
        med = {k: statistics.median(v) for k, v in times.items()}
        base = med[names[0]]
        print(f"{name} JPEG, {len(data) / 1e6:.2f} MB:")
        for k in names:
            print(f"  {k:<33} {1000 * med[k]:9.2f} ms  {med[k] / base:.3f}x")
        for algo in ("sha256", "blake2b", "md5"):
            print(f"  {algo + ' of the bytes':<33} {1000 * med[algo]:9.2f} ms  "
                  f"{med[algo] / base:.3f}x  ({len(data) / med[algo] / 1e9:.2f} GB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
