#!/usr/bin/env python
"""Run a trained open-vocabulary detector on images and videos with a vocabulary given at run time.

The vocabulary needs no retraining: its CLIP text embeddings replace the classifier's. Speaks
Detic's and detectron2's demo dialect as well as zip_d2's own:

    python tools/demo.py --config-file configs/open_vocab/mask_rcnn_R18_ov_synthetic.yaml \
        --weights output/mask_rcnn_R18_ov_synthetic/model_final.pth \
        --vocabulary "circle,square,triangle,hexagon" --input "work/synthetic/val/*.png" \
        --output work/demo
    python tools/demo.py --config-file CONFIG --vocabulary custom --custom_vocabulary cat,dog \
        --input clip.mp4 --output clip_detections.mp4 --cpu --opts MODEL.WEIGHTS model_final.pth

Vocabulary: coco, lvis, a file of class names (one a line), "a,b,c", or Detic's
`--vocabulary custom --custom_vocabulary a,b,c` (`custom` alone is an error). --input takes
image files, folders, glob patterns and video files; --output is a folder (one drawing per
input) or, for a single input, a file; without it the detections are only printed. The device
is the GPU when there is one (--cpu forces the CPU).
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import argparse
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True,
                        help="the config the model was trained with")
    parser.add_argument("--weights", help="trained checkpoint (model_final.pth); or give "
                                          "MODEL.WEIGHTS with --opts")
    parser.add_argument("--vocabulary",
                        help='classes to detect: "coco", "lvis", a names file, "a,b,c", or '
                             '"custom" with --custom_vocabulary')
    parser.add_argument("--custom_vocabulary", "--custom-vocabulary", dest="custom_vocabulary",
                        help='with --vocabulary custom (Detic): "a,b,c" or a names file')
    parser.add_argument("--embeddings", help="a file from tools/dump_clip_text_embeddings.py "
                                             "(instead of a vocabulary)")
    parser.add_argument("--input", nargs="+", required=True,
                        help="image files, folders, glob patterns (quoted) or video files")
    parser.add_argument("--output", help="folder for the drawings, or a file for one input; "
                                         "omitted: detections are printed only")
    parser.add_argument("--confidence-threshold", type=float, default=0.5)
    device = parser.add_mutually_exclusive_group()
    device.add_argument("--cpu", action="store_true", help="run on the CPU")
    device.add_argument("--device", default="", help='"cpu" or "cuda" (default: cuda if present)')
    parser.add_argument("--opts", dest="flag_opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config overrides (detectron2's spelling)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # torch and detectron2 load only now: --help and argument errors answer without them.
    from zip_d2.engine.demo import run_demo
    return run_demo(args)


if __name__ == "__main__":
    sys.exit(main())
