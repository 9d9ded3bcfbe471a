#!/usr/bin/env python
"""Draw pseudo-masks over N images and write an HTML page indexing them.

    python tools/visualize_pseudo_labels.py work/demo.json --out-dir work/demo_vis --num 20
    # then open work/demo_vis/index.html
    python tools/visualize_pseudo_labels.py work/labels.json --gt work/synthetic/train.json ...
    # labels and ground truth side by side
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
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("json", help="pseudo-label COCO JSON")
    p.add_argument("--image-root", help="default: the job's image root from the info block")
    p.add_argument("--out-dir", required=True,
                   help="folder for the overlays (<image id>.jpg), index.html and score "
                        "histograms; never one whose files of those names are inputs")
    p.add_argument("--num", type=int, default=20, help="number of images to draw")
    p.add_argument("--seed", type=int, help="draw a seeded random sample instead of the first N")
    p.add_argument("--score-thresh", type=float, default=0.0, help="hide detections below this")
    p.add_argument("--gt", metavar="FILE",
                   help="ground-truth COCO JSON: draw it beside the labels, image by image "
                        "(matched by file_name)")
    args = p.parse_args(argv)

    from zip_d2.data.validate import DatasetError, load_json
    from zip_d2.labels.coco_output import recorded_image_root
    from zip_d2.labels.visualize import VisualizeError, write_overlays

    try:
        data = load_json(args.json)
        gt = load_json(args.gt) if args.gt else None
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    root = args.image_root or recorded_image_root(data)
    if not root:
        print("error: give --image-root (the JSON does not record one)", file=sys.stderr)
        return 2
    try:
        index = write_overlays(data, root, args.out_dir, num=args.num, seed=args.seed,
                               score_thresh=args.score_thresh, json_path=args.json, gt=gt)
    except (DatasetError, VisualizeError) as e:  # OverwriteError is a DatasetError
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
