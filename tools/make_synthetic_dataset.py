#!/usr/bin/env python
"""Write a synthetic COCO-format instance-segmentation dataset with exact ground truth.

    python tools/make_synthetic_dataset.py --out work/synthetic --num-train 400 --num-val 60

Writes OUT/train.json, OUT/val.json and the images under OUT/train/ and OUT/val/.
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import argparse
import sys

from zip_d2.data.synthetic import SHAPES, SceneParams, make_synthetic_dataset


def main(argv=None):
    d = SceneParams()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num-train", type=int, default=200)
    p.add_argument("--num-val", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--min-objects", type=int, default=d.min_objects)
    p.add_argument("--max-objects", type=int, default=d.max_objects)
    p.add_argument("--touch-prob", type=float, default=d.touch_prob,
                   help="probability that an object is placed touching one of its category")
    p.add_argument("--num-categories", type=int, default=d.num_categories,
                   help=f"how many of {', '.join(SHAPES)} to use")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a dataset already in --out (its JSONs and images are removed "
                        "first); without it an existing dataset is refused")
    args = p.parse_args(argv)
    try:
        params = SceneParams(width=args.width, height=args.height, min_objects=args.min_objects,
                             max_objects=args.max_objects, touch_prob=args.touch_prob,
                             num_categories=args.num_categories)
        paths = make_synthetic_dataset(args.out, args.num_train, args.num_val, args.seed, params,
                                       overwrite=args.overwrite)
    except (ValueError, OSError) as e:
        print(f"make_synthetic_dataset: error: {e}", file=sys.stderr)
        return 2
    print(f"make_synthetic_dataset: wrote {paths['train']} ({args.num_train} images) and "
          f"{paths['val']} ({args.num_val} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
