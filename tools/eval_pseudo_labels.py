#!/usr/bin/env python
"""Evaluate pseudo-labels against ground truth: COCO box and mask AP/AR.

    python tools/eval_pseudo_labels.py --pred work/val2017_zip.json \
        --gt $DETECTRON2_DATASETS/coco/annotations/instances_val2017.json [--class-agnostic]

Images are matched by file_name and categories by name; only images the pseudo-labels cover
are evaluated (skipped images are counted and reported). Both files are validated first; a
problem is one line and exit status 2.
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import argparse
import json
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--pred", required=True, help="pseudo-label COCO JSON")
    p.add_argument("--gt", required=True, help="ground-truth COCO instances JSON")
    p.add_argument("--class-agnostic", action="store_true",
                   help="merge every category into one before matching")
    p.add_argument("--json-out", help="also write the numbers to this JSON file")
    args = p.parse_args(argv)

    from zip_d2.data.paths import refuse_overwriting_inputs
    from zip_d2.data.validate import DatasetError, load_json
    from zip_d2.evaluation.pseudo_labels import EvalError, evaluate_pseudo_labels, format_table

    try:
        refuse_overwriting_inputs({"--json-out": args.json_out}, {"--pred": args.pred,
                                                                  "--gt": args.gt})
        pred, gt = load_json(args.pred), load_json(args.gt)
        metrics = evaluate_pseudo_labels(pred, gt, class_agnostic=args.class_agnostic,
                                         pred_name=args.pred, gt_name=args.gt)
    except (DatasetError, EvalError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = pred.get("info") if isinstance(pred.get("info"), dict) else {}
    print(f"pseudo-labels: {args.pred} (method {info.get('method', '?')}"
          f"{', RANDOM WEIGHTS' if info.get('random_weights') else ''})")
    print(f"ground truth: {args.gt}; {metrics['images']} images, {metrics['detections']} "
          f"detections, {'class-agnostic' if args.class_agnostic else 'per class'}")
    for note in metrics["notes"]:
        print(f"note: {note}")
    print(format_table(metrics))
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
