#!/usr/bin/env python
"""Write SIMULATED pseudo-labels: a ground-truth COCO JSON degraded like an annotation-free
labeller.

For experiments without real CLIP/SAM weights (see zip_d2/data/simulate.py): touching
same-class instances merged, objects missed, boundaries eroded or dilated, spurious blobs, wrong
classes, imperfect scores. Every parameter and the seed go into the output's info block, which
is marked "simulated": true.

    python tools/simulate_pseudo_labels.py --gt work/synthetic/train.json \
        --out work/synthetic/simulated_pseudo_train.json --seed 1
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import argparse
import sys
from dataclasses import fields

from zip_d2.data.simulate import SimulationParams, write_simulated_pseudo_labels
from zip_d2.data.validate import DatasetError


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gt", required=True, help="ground-truth COCO JSON with masks")
    p.add_argument("--out", required=True, help="simulated pseudo-label JSON to write")
    p.add_argument("--seed", type=int, default=0)
    for f in fields(SimulationParams):
        flag = "--" + f.name.replace("_", "-")
        if f.type is bool or f.type == "bool":
            p.add_argument(flag, action="store_true")
        else:
            p.add_argument(flag, type=type(f.default), default=f.default,
                           help=f"default {f.default}")
    args = p.parse_args(argv)
    params = SimulationParams(**{f.name: getattr(args, f.name) for f in fields(SimulationParams)})
    try:
        data = write_simulated_pseudo_labels(args.gt, args.out, params, seed=args.seed)
    except (DatasetError, ValueError, OSError) as e:
        print(f"simulate_pseudo_labels: error: {e}", file=sys.stderr)
        return 2
    print(f"SIMULATED pseudo-labels: {len(data['annotations'])} annotations on "
          f"{len(data['images'])} images -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
