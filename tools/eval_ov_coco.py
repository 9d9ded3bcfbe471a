#!/usr/bin/env python
"""Print open-vocabulary box AP50 (base, novel, all; generalised) for saved COCO predictions.

Takes the coco_instances_results.json that tools/train_net.py --eval-only writes under
OUTPUT_DIR/inference/<dataset>/ and the ground truth of that dataset (default: the OV-COCO
val split, coco_2017_val_ov_all). Base/novel classes: OVR-CNN's 48/17 (zip_d2/data/ov_coco.py),
or --base/--novel name lists for other data.

    python tools/eval_ov_coco.py --results \
        output/ov_coco_annotation_free/inference/coco_2017_val_ov_all/coco_instances_results.json
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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", required=True, help="COCO results JSON (dataset category ids)")
    p.add_argument("--gt", default=None,
                   help="ground-truth COCO JSON (default: coco_2017_val_ov_all's file)")
    p.add_argument("--base", default=None, help="comma-separated base class names")
    p.add_argument("--novel", default=None, help="comma-separated novel class names")
    args = p.parse_args(argv)
    from detectron2.data import MetadataCatalog

    from zip_d2.data.validate import DatasetError, load_json
    from zip_d2.evaluation.ov_coco import evaluate_ov_results

    meta = MetadataCatalog.get("coco_2017_val_ov_all")
    base = args.base.split(",") if args.base else meta.ov_base_classes
    novel = args.novel.split(",") if args.novel else meta.ov_novel_classes
    try:
        gt = load_json(args.gt or meta.json_file)
        results = load_json(args.results)
        r = evaluate_ov_results(gt, results, base, novel)
    except (DatasetError, ValueError) as e:
        print(f"eval_ov_coco: error: {e}", file=sys.stderr)
        return 2
    print(f"box AP50 (generalised, {len(base)} base + {len(novel)} novel classes scored together)")
    print(json.dumps({k: round(v, 2) for k, v in r.items() if k != "per_class"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
