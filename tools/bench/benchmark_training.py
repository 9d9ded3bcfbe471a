#!/usr/bin/env python
"""Benchmark: CPU training of the slim synthetic Mask R-CNN, wall time and the AP it reaches.

    python tools/bench/benchmark_training.py --out work/bench_train [--max-iter 600]

Makes the synthetic dataset if missing (400 train / 60 val images, seed 0), trains
configs/synthetic/mask_rcnn_R18_synthetic.yaml from scratch with tools/train_net.py, and prints
the wall time of the training run and the final box/mask AP and AP50 on the val split, with
PASS/FAIL against the foundation target (at most 5 minutes, box AP50 >= 50). Run it on an idle
machine: the wall time is the measurement.
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
import subprocess
import sys
import time

# Imported in main() after the arguments are parsed, so that --help imports no torch.
torch = yaml = None

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs/synthetic/mask_rcnn_R18_synthetic.yaml")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="work/bench_train", help="working directory")
    p.add_argument("--data", default="work/synthetic", help="synthetic dataset directory")
    p.add_argument("--max-iter", type=int, default=600)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="extra KEY VALUE config overrides")
    args = p.parse_args(argv)
    global torch, yaml
    import torch
    import yaml

    if not os.path.exists(os.path.join(args.data, "val.json")):
        subprocess.run([sys.executable, os.path.join(REPO, "tools/make_synthetic_dataset.py"),
                        "--out", args.data, "--num-train", "400", "--num-val", "60", "--seed", "0"],
                       check=True)
    out = os.path.join(args.out, f"iter{args.max_iter}")
    cmd = [sys.executable, os.path.join(REPO, "tools/train_net.py"), "--config-file", CONFIG,
           "--register-dataset", "synthetic_train", f"{args.data}/train.json", f"{args.data}/train",
           "--register-dataset", "synthetic_val", f"{args.data}/val.json", f"{args.data}/val",
           "SOLVER.MAX_ITER", str(args.max_iter),
           "SOLVER.STEPS", f"({int(args.max_iter * 0.8)},)", "OUTPUT_DIR", out, *args.opts]
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        print(res.stderr[-3000:], file=sys.stderr)
        return res.returncode
    with open(os.path.join(out, "metrics.json")) as f:
        final = [json.loads(line) for line in f if "bbox/AP50" in line][-1]
    with open(os.path.join(out, "log.txt")) as f:
        speed = [line.split("Overall training speed: ")[1].strip() for line in f
                 if "Overall training speed: " in line][-1]
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; random init (from scratch)")
    with open(os.path.join(out, "config.yaml")) as f:
        cfg = yaml.safe_load(f)
    print(f"iterations: {args.max_iter}, batch {cfg['SOLVER']['IMS_PER_BATCH']}, "
          f"{cfg['SOLVER']['OPTIMIZER']} base LR "
          f"{cfg['SOLVER']['BASE_LR']}, input short side {cfg['INPUT']['MIN_SIZE_TRAIN']}")
    print(f"training wall time (incl. start-up and final eval): {wall:.0f} s")
    print(f"training loop: {speed}")
    print(f"box  AP {final['bbox/AP']:.1f}  AP50 {final['bbox/AP50']:.1f}")
    print(f"mask AP {final['segm/AP']:.1f}  AP50 {final['segm/AP50']:.1f}")
    ok = wall <= 300 and final["bbox/AP50"] >= 50
    print(f"target (<= 300 s wall, box AP50 >= 50): {'PASS' if ok else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
