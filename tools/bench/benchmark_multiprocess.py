#!/usr/bin/env python
"""Benchmark: CPU training throughput of P processes x (cores / P) threads vs 1 process x cores
threads, through tools/train_net.py --num-gpus (data-parallel CPU processes, gloo).

    python tools/bench/benchmark_multiprocess.py --out work/bench_multiprocess \\
        [--iters 60] [--repeats 3]

Trains configs/synthetic/mask_rcnn_R18_synthetic.yaml (batch 4 in total, 128-px inputs) on the
synthetic dataset (made if missing: 400 train / 60 val images, seed 0) for --iters iterations in
each mode, alternating the modes --repeats times so that both see the same machine load, and
prints images/s per run (from detectron2's "Overall training speed", which leaves out the first
iterations), the median of each mode, their ratio, and PASS/FAIL against the target ratio
(1.3 on the 2-core development machine). No evaluation runs. Note the load (`uptime`) beside
the numbers: the machine is shared.
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs/synthetic/mask_rcnn_R18_synthetic.yaml")
SPEED = re.compile(r"Overall training speed: (\d+) iterations in \S+ \(([\d.]+) s / it\)")


def train_speed(data, out, processes, threads, iters, batch, opts):
    """Seconds per iteration of one fresh training run (OUTPUT_DIR ``out`` is replaced)."""
    if os.path.isdir(out):
        shutil.rmtree(out)
    cmd = [sys.executable, os.path.join(REPO, "tools/train_net.py"),
           "--num-gpus", str(processes), "--dist-url", "auto", "--config-file", CONFIG,
           "--register-dataset", "synthetic_train", f"{data}/train.json", f"{data}/train",
           "SOLVER.MAX_ITER", str(iters), "SOLVER.IMS_PER_BATCH", str(batch),
           "SOLVER.CHECKPOINT_PERIOD", str(10 * iters), "DATASETS.TEST", "()",
           "ZIP.DATASETS.CHECK_IMAGE_SIZES", "False", "OUTPUT_DIR", out, *opts]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"training failed ({' '.join(cmd)}):\n{res.stderr[-3000:]}")
    with open(os.path.join(out, "log.txt")) as f:
        found = SPEED.findall(f.read())
    if not found:
        raise RuntimeError(f"no 'Overall training speed' line in {out}/log.txt")
    return float(found[-1][1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="work/bench_multiprocess", help="working directory")
    p.add_argument("--data", default="work/synthetic", help="synthetic dataset directory")
    p.add_argument("--iters", type=int, default=60, help="training iterations per run")
    p.add_argument("--repeats", type=int, default=3, help="runs of each mode, alternated")
    p.add_argument("--processes", type=int, default=2, help="processes of the multi-process mode")
    p.add_argument("--batch", type=int, default=4, help="total batch (SOLVER.IMS_PER_BATCH)")
    p.add_argument("--target", type=float, default=1.3, help="images/s ratio to PASS")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="extra KEY VALUE config overrides")
    args = p.parse_args(argv)
    if args.processes < 2 or args.batch % args.processes:
        p.error("--processes must be >= 2 and divide --batch")
    if args.iters < 10:
        p.error("--iters must be >= 10 (the first iterations are not timed)")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores < args.processes:
        p.error(f"{cores} cores cannot run {args.processes} processes of >= 1 thread")

    if not os.path.exists(os.path.join(args.data, "train.json")):
        subprocess.run([sys.executable, os.path.join(REPO, "tools/make_synthetic_dataset.py"),
                        "--out", args.data, "--num-train", "400", "--num-val", "60", "--seed", "0"],
                       check=True)
    modes = {f"1 process x {cores} thread(s)": (1, cores),
             f"{args.processes} processes x {cores // args.processes} thread(s)":
                 (args.processes, cores // args.processes)}
    print(f"{cores} cores, batch {args.batch} in total, {args.iters} iterations per run, "
          f"load before: {os.getloadavg()[0]:.2f}")
    speeds = {name: [] for name in modes}
    for r in range(args.repeats):
        for name, (processes, threads) in modes.items():
            out = os.path.join(args.out, f"p{processes}_t{threads}_run{r}")
            s_per_it = train_speed(args.data, out, processes, threads, args.iters, args.batch,
                                   args.opts)
            speeds[name].append(args.batch / s_per_it)
            print(f"run {r}: {name}: {s_per_it:.3f} s/it, {args.batch / s_per_it:.2f} images/s "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
    (single, single_speeds), (multi, multi_speeds) = speeds.items()
    # Each pair ran back to back, so its ratio is the least affected by a changing load.
    pair_ratios = [m / s for m, s in zip(multi_speeds, single_speeds)]
    ratio = statistics.median(pair_ratios)
    print(f"median images/s: {single}: {statistics.median(single_speeds):.2f}; "
          f"{multi}: {statistics.median(multi_speeds):.2f}")
    print(f"ratio per run pair: {', '.join(f'{r:.2f}' for r in pair_ratios)}; median "
          f"{ratio:.2f}x (target >= {args.target}): {'PASS' if ratio >= args.target else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
