#!/usr/bin/env python
"""Benchmark: the pseudo-label bookkeeping (resume, merge, validation, training load) at scale.

    python tools/bench/benchmark_scale.py --images N [--keep DIR] [--json]

Writes a finished 8-rank job of N synthetic images in the real format with the project's own
writer code (``zip_d2.labels.scale_benchmark``: ~8 annotations of 300-600-character RLE per
640x480 image; real JPEGs, hard-linked, for the file checks), then runs each step in a fresh
process and reports its wall time, CPU time (user + system, children included) and peak RSS
(the largest of the process and its children, from ``wait4``):

- ``resume_scan``: one rank of a rerun finding that its share is finished (shards read, every
  finished image's file fingerprinted by the loader workers);
- ``merge``: ``tools/merge_pseudo_labels.py`` (merge, validation, write);
- ``validate``: ``tools/validate_pseudo_labels.py`` on the merged file;
- ``training_load``: the first training process of a machine: registering the dataset (its
  categories), then building the dataset file that every local process maps
  (``zip_d2.data.shared_dataset``);
- ``training_share``: two local processes mapping that file and reading every record; the
  summary gives their PSS of it (from /proc/PID/smaps) against its size;
- ``end_of_job``: rank 0 of a resumed job with nothing left to label: resume scan, then merge,
  validation, write and label statistics, in one process.

``--keep DIR`` generates into DIR (reused when it already holds a job of N images) and leaves
``DIR/labels.json.shards/``, ``DIR/images/`` and ``DIR/labels.json`` in place for the tools to
be timed on; without it a temporary folder is used and deleted. ``--json`` prints one object
``{step: {"wall_s", "cpu_s", "peak_rss_mb"}}`` instead of the table.
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tools/, above bench/
STEPS = ("resume_scan", "merge", "validate", "training_load", "training_share", "end_of_job")


def step_command(step, folder, *extra):
    """The command line of one step: the user-facing tools as they are, the rest in child
    mode of this script."""
    out = os.path.join(folder, "labels.json")
    if step == "merge":
        return [os.path.join(TOOLS, "merge_pseudo_labels.py"), "--out", out]
    if step == "validate":
        return [os.path.join(TOOLS, "validate_pseudo_labels.py"), out]
    return [os.path.abspath(__file__), "--step", step, "--dir", folder, *extra]


def measure(step, folder, *extra):
    """(wall s, CPU s, peak RSS MB) of ``step`` run in a fresh process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, *step_command(step, folder, *extra)],
                                stdout=out, stderr=err)
        # wait4, not wait(): it returns the rusage of exactly this child (and its children).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        out, err = out.read(), err.read()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: step {step} failed ({proc.returncode}): "
                         f"{err.decode(errors='replace').strip()[-800:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "summary": out.decode().strip().splitlines()[-1:]}


def _existing_job(folder, n):
    path = os.path.join(folder, "labels.json.shards", "job.json")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        return json.load(f).get("job", {}).get("num_images") == n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--images", type=int, help="number of images of the synthetic job")
    p.add_argument("--keep", help="generate into this folder and leave it in place")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--steps", nargs="+", help="run only these steps (in this order)")
    p.add_argument("--step", help=argparse.SUPPRESS)  # child mode: run one step
    p.add_argument("--dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.step:  # the only mode that imports the package: the parent stays small
        from zip_d2.labels import scale_benchmark as sb

        if args.step == "generate":
            made = sb.write_job(args.dir, args.images)
            print(f"{made['shard_bytes']}")
        else:
            print(sb.run_step(args.step, args.dir))
        return 0
    if not args.images or args.images < 1:
        p.error("--images N (N >= 1) is required")
    steps = args.steps or list(STEPS)
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        p.error(f"unknown step {unknown[0]}; steps: {', '.join(STEPS)}")
    folder = args.keep or tempfile.mkdtemp(prefix="benchmark_scale_")
    try:
        if args.keep and _existing_job(folder, args.images):
            log = f"reusing the job of {args.images} images in {folder}"
        else:
            if args.keep and os.path.exists(os.path.join(folder, "labels.json.shards")):
                shutil.rmtree(os.path.join(folder, "labels.json.shards"))
            made = measure("generate", folder, "--images", str(args.images))
            log = (f"wrote {args.images} images' shards ({int(made['summary'][0]) / 2**20:.0f} "
                   f"MiB) in {made['wall_s']:.0f} s")
        print(log, file=sys.stderr)
        results = {}
        for step in steps:
            results[step] = measure(step, folder)
            print(f"  {step}: {results[step]}", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps({s: {k: v for k, v in r.items() if k != "summary"}
                          for s, r in results.items()}))
        return 0
    print(f"| step ({args.images} images) | wall s | CPU s | peak RSS MB |")
    print("| --- | --- | --- | --- |")
    for step, r in results.items():
        print(f"| {step} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
