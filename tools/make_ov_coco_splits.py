#!/usr/bin/env python
"""Write the open-vocabulary COCO split files (OVR-CNN's 48 base / 17 novel classes, as in Detic).

Reads $DETECTRON2_DATASETS/coco/annotations/instances_{train,val}2017.json and writes, beside
them, instances_train2017_ov_base.json, instances_train2017_ov_all.json,
instances_val2017_ov_all.json and the vocabulary files ov_coco_vocabulary_65.txt /
ov_coco_vocabulary_48_base.txt (class lists: zip_d2/data/ov_coco.py). The split files back the
registered dataset names coco_2017_train_ov_base, coco_2017_train_ov_all, coco_2017_val_ov_all.

    python tools/make_ov_coco_splits.py                    # both splits
    python tools/make_ov_coco_splits.py --splits val2017   # evaluation files only
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import argparse
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=None,
                   help="dataset root holding coco/annotations (default: $DETECTRON2_DATASETS, "
                        "else ./datasets)")
    p.add_argument("--splits", nargs="+", default=["train2017", "val2017"],
                   choices=["train2017", "val2017"])
    args = p.parse_args(argv)
    from zip_d2.data.ov_coco import make_ov_coco_splits
    from zip_d2.data.validate import DatasetError

    try:
        written = make_ov_coco_splits(args.root, args.splits)
    except DatasetError as e:
        print(f"make_ov_coco_splits: error: {e}", file=sys.stderr)
        return 2
    for name, path in written.items():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
