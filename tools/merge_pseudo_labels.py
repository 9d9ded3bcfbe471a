#!/usr/bin/env python
"""Merge a pseudo-label job's shards into one COCO JSON, validating each record as written.

The job does this itself at the end; use this tool when ranks ran on machines without a shared
filesystem (copy every OUT.json.shards/rank*.jsonl into rank 0's folder first), or to inspect a
job that is still running (--allow-partial). Every shard must carry the settings of the job.json
beside it (labeler, vocabulary and its order, input, decoding): a rank file of another job is
refused, naming it. OUT is replaced only if these shards wrote it (or with --overwrite), and is
recorded as theirs, so the job may replace it later.

    python tools/merge_pseudo_labels.py --out work/demo.json [--shards work/demo.json.shards]

Exit status: 0 merged and valid, 1 merged but validation found problems, 2 could not merge.
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--out", required=True, help="merged COCO JSON to write")
    p.add_argument("--shards", help="shard folder (default: OUT.shards)")
    p.add_argument("--image-root", help="image root for validation (default: the job's)")
    p.add_argument("--allow-partial", action="store_true",
                   help="merge even if some listed images are not finished yet")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT even if it is not an output these shards recorded")
    p.add_argument("--no-validate", action="store_true")
    args = p.parse_args(argv)

    from zip_d2.data.validate import CocoValidator
    from zip_d2.labels import shards
    from zip_d2.labels.coco_output import recorded_image_root

    shard_dir = args.shards or shards.shard_dir_for(args.out)
    checker = None
    try:
        plan = shards.MergePlan(shard_dir, allow_partial=args.allow_partial)
        job_input = plan.job.get("input")
        listing = job_input.get("coco_json") if isinstance(job_input, dict) else None
        inputs = [("the job's --coco-json", listing), ("the shard manifest", os.path.join(
            shard_dir, shards.MANIFEST)), *(("shard", p) for p in plan.paths)]
        shards.check_output_replaceable(args.out, shard_dir, inputs, args.overwrite)
        if not args.no_validate:
            root = args.image_root or recorded_image_root({"info": {"job": plan.job}})
            checker = CocoValidator(image_root=root, check_image_sizes=True,
                                    check_segmentations=True)
        # validated as it is written, one record at a time
        counts = shards.write_merged(plan, args.out, [checker] if checker else [])
    except (shards.ShardError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {counts['images_labeled']} images, {counts['images_skipped']} "
          f"skipped, {counts['annotations']} annotations")
    if checker is None:
        return 0
    problems = checker.finish()
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    print("validation: OK" if not problems else f"validation: {len(problems)} problem(s)")
    return 1 if problems else 0

if __name__ == "__main__":
    sys.exit(main())
