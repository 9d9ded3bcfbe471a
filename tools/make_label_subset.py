#!/usr/bin/env python
"""Write seeded random label subsets (p % of the images, all their annotations) of a COCO JSON.

The draw is documented in zip_d2/data/subsets.py: images sorted by id, one
numpy.random.default_rng(SEED) permutation, the first max(1, floor(N * p / 100 + 0.5)) images;
subsets of one seed are nested. Output: OUT_DIR/<stem>_<p>pct_seed<SEED>.json per percentage (p
written exactly, so two percentages never share a file; one given twice is written once).

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
from zip_d2.data.paths import refuse_overwriting_inputs
from zip_d2.data.subsets import (
    LABEL_PERCENTS,
    make_label_subset,
    percent_text,
    subset_file_name,
    subset_size,
)
from zip_d2.data.validate import first_problem, validate_coco


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coco-json", required=True, help="COCO instances JSON to subsample")
    p.add_argument("--out-dir", required=True, help="where the subset files go")
    p.add_argument("--percents", type=float, nargs="+", default=list(LABEL_PERCENTS))
    p.add_argument("--seed", type=int, default=1, help="subset seed (same seed: nested subsets)")
    args = p.parse_args(argv)
    try:
        refuse_overwriting_inputs(
            [("--out-dir", os.path.join(args.out_dir,
                                        subset_file_name(args.coco_json, percent, args.seed)))
             for percent in args.percents], {"--coco-json": args.coco_json})
        coco = load_json(args.coco_json)
        # A subset of a valid dataset is valid: one check of the source covers every subset.
        problem = first_problem(validate_coco(coco), args.coco_json)
        if problem:
            raise DatasetError(problem)
        percents = []
        for percent in args.percents:
            subset_size(len(coco["images"]), percent)  # a bad percentage before any file
            if percent in percents:
                print(f"note: --percents lists {percent_text(percent)} more than once; its "
                      "subset is written once", file=sys.stderr)
                continue
            percents.append(percent)
        os.makedirs(args.out_dir, exist_ok=True)
        for percent in percents:
            data = make_label_subset(coco, percent, args.seed,
                                     source=os.path.abspath(args.coco_json))
            path = os.path.join(args.out_dir,
                                subset_file_name(args.coco_json, percent, args.seed))
            write_json_atomic(data, path)
            print(f"{percent_text(percent)}%: {len(data['images'])} of {len(coco['images'])} "
                  f"images, {len(data['annotations'])} annotations -> {path}")
    except (DatasetError, ValueError) as e:
        print(f"make_label_subset: error: {e}", file=sys.stderr)
        return 2
    return 0

if __name__ == "__main__":
    sys.exit(main())
