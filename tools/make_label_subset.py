#!/usr/bin/env python
"""Write seeded random label subsets (p % of the images, all their annotations) of a COCO JSON.

The draw is documented in zip_d2/data/subsets.py: images sorted by id, one
numpy.random.default_rng(SEED) permutation, the first max(1, floor(N * p / 100 + 0.5)) images;
subsets of one seed are nested. Output: OUT_DIR/<stem>_<p>pct_seed<SEED>.json per percentage.

    python tools/make_label_subset.py \
        --coco-json $DETECTRON2_DATASETS/coco/annotations/instances_train2017.json \
        --out-dir $DETECTRON2_DATASETS/coco/annotations --percents 1 2 5 10 --seed 1
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import argparse
import os
import sys

from zip_d2.data.coco_json import DatasetError, load_json, write_json_atomic
from zip_d2.data.subsets import LABEL_PERCENTS, make_label_subset
from zip_d2.data.validate import validate_coco


def subset_path(out_dir, coco_json, percent, seed):
    stem = os.path.splitext(os.path.basename(coco_json))[0]
    return os.path.join(out_dir, f"{stem}_{percent:g}pct_seed{seed}.json")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coco-json", required=True, help="COCO instances JSON to subsample")
    p.add_argument("--out-dir", required=True, help="where the subset files go")
    p.add_argument("--percents", type=float, nargs="+", default=list(LABEL_PERCENTS))
    p.add_argument("--seed", type=int, default=1, help="subset seed (same seed: nested subsets)")
    args = p.parse_args(argv)
    try:
        coco = load_json(args.coco_json)
        os.makedirs(args.out_dir, exist_ok=True)
        for percent in args.percents:
            data = make_label_subset(coco, percent, args.seed,
                                     source=os.path.abspath(args.coco_json))
            problems = validate_coco(data)
            if problems:
                raise DatasetError(f"{percent:g}% subset: {problems[0]}")
            path = subset_path(args.out_dir, args.coco_json, percent, args.seed)
            write_json_atomic(data, path)
            print(f"{percent:g}%: {len(data['images'])} of {len(coco['images'])} images, "
                  f"{len(data['annotations'])} annotations -> {path}")
    except (DatasetError, ValueError) as e:
        print(f"make_label_subset: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
