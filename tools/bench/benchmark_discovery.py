#!/usr/bin/env python
"""Time Zip's discovery engine and print the numbers.

Sections (--what, comma-separated):
  discovery  fragments -> instances on a grid (default 128x171, K=20) built from a synthetic
             scene of touching objects, vectorised vs the authors'-demo-style per-fragment loop
             (scikit-image labelling + regionprops), side by side on the same inputs; the two
             must give the same instances.
  kmeans     k-means K clusters x iterations on N x 2048 features (default 21,888 = 128x171).
  image      one whole image at the config's sizes (default the paper preset) with RANDOM
             weights, stage by stage (weights cannot matter for timing).

Examples:
  python tools/bench/benchmark_discovery.py                                  # CPU, discovery only
  python tools/bench/benchmark_discovery.py --device cuda --what discovery,kmeans,image \
      --config configs/pseudo/zip_paper.yaml --precision fp16
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
import platform
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn, repeats, warmup, device):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), times


def bench_discovery(args, device):
    import torch

    from zip_d2.benchmarks.discovery_reference import discover_instances_loop
    from zip_d2.benchmarks.inputs import synthetic_scene
    from zip_d2.pseudo.instances import DiscoveryParams, discover_instances, split_fragments

    h, w = (int(v) for v in args.grid.split("x"))
    cm, region = synthetic_scene((h, w), args.k, args.seed)
    kw = dict(top_clusters=20, min_inside_ratio=0.3, max_box_to_area=3.0,
              min_instance_cells=args.min_cells)

    def fast():
        return discover_instances(split_fragments(cm), region, DiscoveryParams(**kw))

    def slow():
        return discover_instances_loop(cm, region, **kw)

    a, b = fast().masks(), slow()
    same = sorted(m.tobytes() for m in a) == sorted(m.tobytes() for m in b)
    t_fast, _ = _median_ms(fast, args.repeats, 3, torch.device("cpu"))
    t_slow, _ = _median_ms(slow, max(3, args.repeats // 5), 1, torch.device("cpu"))
    frags = split_fragments(cm).count
    print(f"discovery grid {h}x{w} K={args.k}: {frags} fragments, {len(a)} instances "
          f"(loop: {len(b)}, identical={same})")
    print(f"  vectorised  median {t_fast:8.2f} ms")
    print(f"  per-fragment loop (skimage regionprops) median {t_slow:8.2f} ms")
    print(f"  speed-up {t_slow / t_fast:6.1f}x")
    return {"grid": [h, w], "k": args.k, "fragments": frags, "instances": len(a), "identical": same,
            "vectorised_ms": t_fast, "loop_ms": t_slow, "speedup": t_slow / t_fast}


def bench_kmeans(args, device):
    import torch

    from zip_d2.pseudo.clusters import kmeans

    g = torch.Generator(device="cpu").manual_seed(args.seed)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
        args.kmeans_dtype
    ]
    x = torch.randn(args.kmeans_n, 2048, generator=g).to(device=device, dtype=dtype)
    # Fixed iteration count: random features rarely converge, so this times max_iters steps.
    t, _ = _median_ms(lambda: kmeans(x, args.k, args.kmeans_iters), args.kmeans_repeats, 1, device)
    print(
        f"kmeans K={args.k} x{args.kmeans_iters} iters on {args.kmeans_n}x2048 {args.kmeans_dtype} "
        f"({device}): median {t:8.2f} ms"
    )
    return {
        "kmeans_ms": t,
        "n": args.kmeans_n,
        "iters": args.kmeans_iters,
        "dtype": args.kmeans_dtype,
    }


def bench_image(args, device):
    import numpy as np

    from zip_d2.config import setup_cfg
    from zip_d2.pseudo import build_labeler, clues

    config = args.config
    if not os.path.isfile(config):  # also accept paths relative to the repository root
        config = os.path.join(REPO, config)
    # Random weights: timing only (announced by the factory).
    settings = {"PSEUDO.RANDOM_WEIGHTS": True, "PSEUDO.DEVICE": str(device)}
    if args.precision:
        settings["PSEUDO.PRECISION"] = args.precision
    cfg = setup_cfg(config, settings=settings)
    lab = build_labeler(cfg)
    rng = np.random.default_rng(args.seed)
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    cands = np.arange(len(lab.class_names))
    # Timing depends on how many classes are kept: fix them to the configured TOPK.
    classes = lab.class_names[: max(1, cfg.PSEUDO.CLIP.TOPK)]
    stages = {}
    state = {}

    def clues_stage():
        found = lab.semantic_clues([image], [cands[: len(classes)]], [True])
        state["kept"], state["probs"], state["act"] = found[0]

    def cluster_stage():
        state["cm"] = lab.boundary_clusters([image], [state["act"]])[0]

    def discovery_stage():
        _, regions = clues.semantic_regions(state["act"], image.shape[:2], state["cm"].shape,
                                            cfg.PSEUDO.CLIP.ACTIVATION_RATIO)
        state["found"] = lab.discover(state["cm"], regions)

    for name, fn in (
        ("clues", clues_stage),
        ("clusters", cluster_stage),
        ("discovery", discovery_stage),
    ):
        stages[name], _ = _median_ms(fn, args.image_repeats, 1, device)
    total, _ = _median_ms(lambda: lab(image, classes=classes), args.image_repeats, 1, device)
    n_inst = sum(len(f) for f in state["found"])
    # "Same seed, same output": two runs on the same labeler must agree exactly.
    a, b = lab(image, classes=classes), lab(image, classes=classes)
    same = len(a) == len(b) and all(
        x["category"] == y["category"]
        and x["score"] == y["score"]
        and np.array_equal(x["mask"], y["mask"])
        for x, y in zip(a, b)
    )
    print(f"whole image 480x640, {cfg.PSEUDO.METHOD}, {len(classes)} classes, {n_inst} instances, "
          f"RANDOM weights, {lab.precision} on {device}:")
    for k, v in stages.items():
        print(f"  {k:10s} median {v:8.2f} ms")
    print(f"  {'total':10s} median {total:8.2f} ms (including SAM and NMS)")
    print(f"  {len(a)} detections; repeated run identical: {same}")
    return {
        "stages_ms": stages,
        "total_ms": total,
        "method": cfg.PSEUDO.METHOD,
        "precision": lab.precision,
        "detections": len(a),
        "deterministic": same,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--what", default="discovery", help="comma-separated: discovery,kmeans,image")
    ap.add_argument("--grid", default="128x171", help="discovery grid HxW")
    ap.add_argument("--k", type=int, default=20, help="clusters K")
    ap.add_argument("--min-cells", type=int, default=100, help="MIN_INSTANCE_CELLS for discovery")
    ap.add_argument(
        "--repeats", type=int, default=50, help="timed runs of the vectorised discovery"
    )
    ap.add_argument("--kmeans-n", type=int, default=21888)
    ap.add_argument("--kmeans-iters", type=int, default=100)
    ap.add_argument("--kmeans-repeats", type=int, default=10)
    ap.add_argument("--kmeans-dtype", default="fp32", choices=["fp32", "fp16", "bf16"],
                    help="feature dtype (fp16/bf16 run half-precision products; slow on CPU)")
    ap.add_argument(
        "--config", default="configs/pseudo/zip_paper.yaml", help="preset for --what image"
    )
    ap.add_argument("--precision", default="", help="override PSEUDO.PRECISION for --what image")
    ap.add_argument("--image-repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="", help="also write the numbers to this file")
    args = ap.parse_args(argv)
    import torch

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    dev_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu"
    )
    print(f"machine: {platform.node()} | {dev_name} | torch {torch.__version__} | "
          f"{torch.get_num_threads()} CPU threads")
    results = {"device": str(device), "device_name": dev_name}
    benches = {"discovery": bench_discovery, "kmeans": bench_kmeans, "image": bench_image}
    for what in [w.strip() for w in args.what.split(",") if w.strip()]:
        if what not in benches:
            sys.exit(f"unknown --what section {what!r}; choose from {', '.join(benches)}")
        results[what] = benches[what](args, device)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
