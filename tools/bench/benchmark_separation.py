#!/usr/bin/env python
"""Does discovery separate touching objects? The paper's fragment rule vs the thinness rule.

On packed-disc scenes with CONSTRUCTED boundary-aware features (zip_d2.data.constructed_features;
this tests the mechanism, not CLIP), each scene is clustered with the project's k-means (K=20,
uniform seeding) and discovered twice from the same fragments: with the paper's rule
(bbox/area < 3) and with the thinness rule added (inscribed radius >= --radius cells). Per
density (discs per scene : probability that a disc touches an earlier one) it prints discs
recovered at IoU >= 0.5, merged pairs, over-split discs, background instances and fully
correct scenes, then the discovery time (fragments + instances for one class, median).

Targets, printed as PASS/FAIL (exit status 1 on FAIL): no scene without touching pairs loses
a disc to the new rule, and discovery takes <= 20 ms on the 128x171 grid.

Example:
  python tools/bench/benchmark_separation.py --seeds 8 --json work/separation.json
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
import statistics
import sys
import time

import numpy as np

COUNTS = ("objects", "recovered", "merged_pairs", "over_split", "background")


def _density(text):
    try:
        n, p = text.split(":")
        n, p = int(n), float(p)
    except ValueError:
        raise argparse.ArgumentTypeError(f"density {text!r} is not DISCS:TOUCH_PROB (e.g. 8:0.6)")
    if n < 1 or not 0 <= p <= 1:
        raise argparse.ArgumentTypeError(f"density {text!r}: DISCS >= 1 and 0 <= TOUCH_PROB <= 1")
    return n, p


def _grid(text):
    try:
        h, w = (int(v) for v in text.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid {text!r} is not HxW (e.g. 128x171)")
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"grid {text!r} is smaller than 8x8")
    return h, w


def run(args):
    import torch

    from zip_d2.data.constructed_features import (
        activation_region,
        boundary_aware_features,
        packed_discs,
        separation_counts,
        touching_pairs,
    )
    from zip_d2.pseudo.clusters import kmeans
    from zip_d2.pseudo.instances import DiscoveryParams, discover_instances, split_fragments

    torch.set_num_threads(args.threads)
    h, w = args.grid
    rules = {"paper": 0.0, f"radius>={args.radius:g}": args.radius}
    rows, times = [], {name: [] for name in rules}
    isolated_losses = 0
    for discs, touch in args.densities:
        row = {"discs": discs, "touch_prob": touch, "scenes": 0, "touching_pairs": 0,
               **{name: dict.fromkeys(COUNTS + ("correct_scenes",), 0) for name in rules}}
        for seed in range(args.seeds):
            rng = np.random.default_rng([seed, discs, int(touch * 1000)])
            objects = packed_discs(rng, (h, w), discs, touch)
            feats = boundary_aware_features(objects, rng)
            labels, _ = kmeans(torch.from_numpy(feats.reshape(h * w, -1)), args.k, 100)
            cluster_map = labels.view(h, w).numpy()
            region = activation_region(objects > 0)
            pairs = len(touching_pairs(objects))
            row["scenes"] += 1
            row["touching_pairs"] += pairs
            recovered = {}
            for name, radius in rules.items():
                for _ in range(args.repeats):  # rules interleaved, so load changes hit both
                    t = time.perf_counter()
                    inst = discover_instances(split_fragments(cluster_map), region,
                                              DiscoveryParams(min_instance_cells=args.min_cells,
                                                              min_inscribed_radius=radius))
                    times[name].append((time.perf_counter() - t) * 1e3)
                c = separation_counts(objects, inst.masks())
                for key in COUNTS:
                    row[name][key] += c[key]
                row[name]["correct_scenes"] += int(
                    c["recovered"] == c["objects"] and not (c["merged_pairs"] or c["over_split"]
                                                            or c["background"]))
                recovered[name] = c["recovered"]
            if pairs == 0:
                isolated_losses += max(0, recovered["paper"] - min(recovered.values()))
        rows.append(row)
    return rules, rows, {k: statistics.median(v) for k, v in times.items()}, isolated_losses


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--densities", type=_density, nargs="+",
                    default=[(4, 0.0), (8, 0.0), (12, 0.0), (8, 0.6), (12, 0.6), (16, 0.8),
                             (20, 0.9)],
                    help="DISCS:TOUCH_PROB per density "
                         "(default: 4:0 8:0 12:0 8:0.6 12:0.6 16:0.8 20:0.9)")
    ap.add_argument("--seeds", type=int, default=8, help="scenes per density")
    ap.add_argument("--radius", type=float, default=2.0,
                    help="MIN_INSCRIBED_RADIUS of the new rule")
    ap.add_argument("--grid", type=_grid, default=(128, 171), help="clustering grid HxW")
    ap.add_argument("--k", type=int, default=20, help="k-means clusters")
    ap.add_argument("--min-cells", type=int, default=100, help="MIN_INSTANCE_CELLS")
    ap.add_argument("--repeats", type=int, default=5,
                    help="timed discovery runs per scene and rule")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for k-means (1 is fastest on a shared 2-core machine)")
    ap.add_argument("--json", default="", help="also write the numbers to this file")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.repeats < 1:
        ap.error("--seeds and --repeats must be >= 1")
    if args.radius <= 0:
        ap.error("--radius must be > 0 (0 is the paper's rule, always run beside it)")

    rules, rows, times, isolated_losses = run(args)
    h, w = args.grid
    print(f"constructed boundary-aware features (not CLIP), grid {h}x{w}, K={args.k}, "
          f"{args.seeds} scenes per density, MIN_INSTANCE_CELLS {args.min_cells}")
    print("| discs:touch | touching pairs | rule | discs recovered (IoU>=0.5) | merged pairs "
          "| over-split | background | scenes fully correct |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        for name in rules:
            c = row[name]
            print(f"| {row['discs']}:{row['touch_prob']:g} | {row['touching_pairs']} | {name} "
                  f"| {c['recovered']}/{c['objects']} | {c['merged_pairs']} | {c['over_split']} "
                  f"| {c['background']} | {c['correct_scenes']}/{row['scenes']} |")
    for name, t in times.items():
        print(f"discovery ({name}), fragments + instances for one class: median {t:.2f} ms")
    no_loss = isolated_losses == 0
    fast = max(times.values()) <= 20.0
    print(f"no disc lost by the new rule on scenes without touching pairs: "
          f"{'PASS' if no_loss else f'FAIL ({isolated_losses} lost)'}")
    print(f"discovery <= 20 ms: {'PASS' if fast else 'FAIL'}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"grid": [h, w], "k": args.k, "radius": args.radius, "rows": rows,
                       "discovery_ms": times, "isolated_losses": isolated_losses,
                       "features": "constructed"}, f, indent=2)
    return 0 if no_loss and fast else 1


if __name__ == "__main__":
    sys.exit(main())
