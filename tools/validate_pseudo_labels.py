#!/usr/bin/env python
"""Validate a COCO instances JSON (pseudo-labels or any other) with zip_d2's validator.

Checks unique ids, required fields, categories, that every image file exists and has the
stated (EXIF-oriented) size, that boxes lie inside their images and that every RLE decodes to
its stated area. Image files are checked under --image-root, or the folder a pseudo-label JSON
records; without either the report says that they were not checked.

    python tools/validate_pseudo_labels.py work/demo.json --image-root datasets/demo/images

Exit status: 0 valid, 1 problems found (one per line), 2 unreadable.
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
    p.add_argument("json", help="COCO JSON file")
    p.add_argument("--image-root",
                   help="folder the file_names are relative to (default: for pseudo-labels, the "
                        "job's image root from the info block; else files are not checked)")
    p.add_argument("--no-image-sizes", action="store_true",
                   help="do not open image headers to compare sizes")
    p.add_argument("--max-problems", type=int, default=20)
    args = p.parse_args(argv)

    from zip_d2.data.validate import DatasetError, validate_coco_file
    from zip_d2.labels.coco_output import recorded_image_root

    # Read as a stream, one record at a time: an ImageNet-sized file fits in little memory.
    try:
        problems, counts, root = validate_coco_file(
            args.json, image_root=args.image_root, check_image_sizes=not args.no_image_sizes,
            check_segmentations=True, max_problems=args.max_problems,
            root_from_info=recorded_image_root)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if root is None:
        scope = ("image files were not checked: no --image-root given and the JSON records no "
                 "image folder")
    elif args.no_image_sizes:
        scope = f"image files checked under {root}, their sizes not (--no-image-sizes)"
    else:
        scope = f"image files and sizes checked under {root}"
    for problem in problems:
        print(f"{args.json}: {problem}")
    if problems:
        print(f"{args.json}: problems found; {scope}")
        return 1
    n_img, n_ann = counts["images"], counts["annotations"]
    print(f"{args.json}: OK ({n_img} images, {n_ann} annotations; {scope})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
