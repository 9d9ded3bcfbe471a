#!/usr/bin/env python
"""Generate Zip pseudo-labels for a folder of images or a COCO image list, as one COCO JSON.

One process (CPU or one GPU):
    python tools/generate_pseudo_labels.py --images datasets/demo/images --out work/demo.json
Every GPU of every node (shards on a filesystem all nodes see):
    torchrun --nproc_per_node 8 tools/generate_pseudo_labels.py \
        --coco-json $DETECTRON2_DATASETS/coco/annotations/instances_train2017.json \
        --images $DETECTRON2_DATASETS/coco/train2017 --out work/train2017_zip.json
On SLURM, as an array of independent tasks (--shard) and a merge job: tools/submit_slurm.py label.

Finished images are appended to OUT.json.shards/ as they finish; rerunning the same command
after a crash or kill continues where it stopped (images whose file changed since are labeled
again; another input folder or other settings are refused). At the end the shards are merged
into OUT.json and validated. OUT.json is replaced only if this job wrote it (else --overwrite).
Exit status: 0 done, 1 merged but validation found problems, 2 the job could not start (nothing
was labeled) or could not merge (see the message), 130 interrupted (Ctrl-C; rerun to continue).
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import argparse
import logging
import os
import sys

from zip_d2.labels.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE

# Found from this file, so the tool works from any directory.
PAPER_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "configs", "pseudo", "zip_paper.yaml")


def parse_shard(text):
    rank, sep, world_size = text.partition("/")
    if not (sep and rank.isdigit() and world_size.isdigit() and int(rank) < int(world_size)):
        raise argparse.ArgumentTypeError(f"expected RANK/N with 0 <= RANK < N, got {text!r}")
    return int(rank), int(world_size)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_argument_group("input (one of)")
    src.add_argument("--images", metavar="DIR",
                     help="image folder, searched recursively; with --coco-json, its image root "
                          "(default there: the JSON's folder)")
    src.add_argument("--coco-json", metavar="FILE",
                     help="COCO JSON whose image list and image ids are used")
    p.add_argument("--out", required=True, metavar="OUT.json", help="merged COCO JSON to write")
    p.add_argument("--config", "--config-file", dest="config", default=PAPER_CONFIG,
                   help="yacs config: the paper's models (default) or "
                        "configs/pseudo/tiny_random.yaml (tiny random-weight models, for tests)")
    p.add_argument("--vocabulary", help="coco, lvis, an existing file of class names, or "
                                        "'a,b,c' ('a,' for one class) (sets PSEUDO.VOCABULARY)")
    p.add_argument("--method", choices=["zip", "sam-clip", "zip-no-sam"],
                   help="sets PSEUDO.METHOD")
    p.add_argument("--class-agnostic", action="store_true", help="one category, 'object'")
    job = p.add_argument_group("job")
    job.add_argument("--batch-size", type=int, default=4, help="images per labeler call")
    job.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                     help="decoding processes per rank")
    job.add_argument("--prefetch", type=int, default=2, help="batches each worker decodes ahead")
    job.add_argument("--max-side", type=int, default=4096,
                     help="images with a longer side are labeled downscaled to it (labels are "
                          "written at full size); 0 = never")
    job.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                     help="skip images with more pixels")
    job.add_argument("--min-side", type=int, default=DEFAULT_MIN_SIDE,
                     help="skip images with a shorter side")
    job.add_argument("--overwrite", action="store_true",
                     help="start over: discard existing shards of OUT instead of resuming, and "
                          "replace OUT even if this job did not write it")
    job.add_argument("--retry-skipped", action="store_true",
                     help="on resume, try again the images recorded as skipped")
    job.add_argument("--max-consecutive-failures", type=int, default=50,
                     help="stop when the labeler fails on this many images in a row")
    job.add_argument("--shard", metavar="RANK/N", type=parse_shard,
                     help="label only rank RANK's share as one of N independent tasks (a SLURM "
                          "array task: tools/submit_slurm.py sets it) and do not merge; "
                          "tools/merge_pseudo_labels.py merges once all N have finished")
    job.add_argument("--no-progress", action="store_true", help="no progress bar")
    job.add_argument("--no-validate", action="store_true", help="skip validation after merge")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                   help="config overrides as KEY VALUE pairs, applied last")
    args = p.parse_args(argv)
    if not args.images and not args.coco_json:
        p.error("give --images DIR or --coco-json FILE")
    from zip_d2.config import SetupError, check_overrides

    try:
        check_overrides(args.opts)
    except SetupError as e:
        p.error(str(e))
    return args


def flag_settings(args):
    """The config keys this tool's own flags set (applied before the trailing KEY VALUE pairs)."""
    settings = {}
    if args.vocabulary:
        settings["PSEUDO.VOCABULARY"] = args.vocabulary
    if args.method:
        settings["PSEUDO.METHOD"] = args.method
    if args.class_agnostic:
        settings["PSEUDO.CLASS_AGNOSTIC"] = True
    return settings


def main(argv=None):
    args = parse_args(argv)
    try:
        return run(args, argv)
    except KeyboardInterrupt:  # Ctrl-C: every finished image is already in a shard
        print(f"interrupted; finished images are kept in {args.out}.shards, rerun the same "
              "command to continue", file=sys.stderr)
        return 130


def run(args, argv=None):
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from zip_d2.config import SetupError, setup_cfg
    from zip_d2.labels.images import InputError
    from zip_d2.labels.job import (
        JobError,
        JobOptions,
        missing_folders,
        remove_empty_folders,
        run_job,
        summary_lines,
    )
    from zip_d2.labels.shards import ShardError
    from zip_d2.models import MissingWeightsError

    opts = JobOptions(out=args.out, images=args.images, coco_json=args.coco_json,
                      batch_size=args.batch_size, workers=args.workers, prefetch=args.prefetch,
                      max_side=args.max_side, max_pixels=args.max_pixels,
                      min_side=args.min_side, overwrite=args.overwrite,
                      retry_skipped=args.retry_skipped, progress=not args.no_progress,
                      validate=not args.no_validate,
                      max_consecutive_failures=args.max_consecutive_failures,
                      command=list(sys.argv if argv is None else argv), config_file=args.config,
                      shard=args.shard)
    try:
        cfg = setup_cfg(args.config, args.opts, settings=flag_settings(args))
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    new_folders = missing_folders(args.out)
    try:
        result = run_job(cfg, opts)
    except (JobError, InputError, MissingWeightsError, ShardError) as e:
        remove_empty_folders(new_folders)  # a refused job leaves no empty output folder
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # Disk full or a vanished output folder mid-run: finished images are in the shards.
        print(f"error: {type(e).__name__}: {e}; finished images are kept in "
              f"{args.out}.shards, rerun to continue", file=sys.stderr)
        return 2
    for line in summary_lines(result):
        print(line)
    if result.merged:
        print(f"wrote {result.merged}")
        if result.problems:
            print(f"validation found {len(result.problems)} problem(s):", file=sys.stderr)
            for problem in result.problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        print("validation: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
