#!/usr/bin/env python
"""Run a trained open-vocabulary detector on images with a vocabulary from the command line.

Writes one overlay per image (boxes, masks, class names, scores) into --output. The vocabulary
needs no retraining: its CLIP text embeddings replace the classifier's. CPU by default.

    python tools/demo.py --config-file configs/open_vocab/mask_rcnn_R18_ov_synthetic.yaml \
        --weights output/mask_rcnn_R18_ov_synthetic/model_final.pth \
        --vocabulary "circle,square,triangle,hexagon" --input work/synthetic/val --output work/demo
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import argparse
import os
import sys

import torch

from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.utils.visualizer import ColorMode, Visualizer

import zip_d2.modeling  # noqa: F401  (registers zip_d2's heads and proposal generators)
from zip_d2.config import SetupError, setup_cfg
from zip_d2.labels.images import list_image_paths
from zip_d2.models import MissingWeightsError
from zip_d2.text import TextEmbeddings, load_vocabulary


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config-file", required=True, help="the config the model was trained with"
    )
    parser.add_argument("--weights", required=True, help="trained checkpoint (model_final.pth)")
    vocab = parser.add_mutually_exclusive_group(required=True)
    vocab.add_argument(
        "--vocabulary", help='classes to detect: "coco", "lvis", a names file, or "a,b,c"'
    )
    vocab.add_argument("--embeddings", help="a file from tools/dump_clip_text_embeddings.py")
    parser.add_argument(
        "--input", nargs="+", required=True, help="image files, directories or glob patterns"
    )
    parser.add_argument("--output", required=True, help="directory for the overlays")
    parser.add_argument("--confidence-threshold", type=float, default=0.5)
    parser.add_argument("--device", default="cpu", help='"cpu" or "cuda"')
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config overrides"
    )
    return parser.parse_args(argv)


def demo_cfg(args):
    """The model's config, rebuilt around the command-line vocabulary.

    Only the test vocabulary matters at inference (no weight depends on the number of classes:
    class-agnostic boxes and masks, text-embedding classifier), so the training vocabulary is set
    to the same one and no training dataset needs to be registered.
    """
    cfg = setup_cfg(args.config_file, args.opts)
    cfg.defrost()
    ov = cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB
    if args.embeddings:
        emb = TextEmbeddings.load(args.embeddings)
        emb.check_compatible(ov.CLIP_MODEL)
        ov.EMBEDDINGS = ov.TEST_EMBEDDINGS = args.embeddings
        ov.VOCABULARY = ov.TEST_VOCABULARY = ""
        names = emb.class_names
    else:
        names = [c["name"] for c in load_vocabulary(args.vocabulary)]
        ov.EMBEDDINGS = ov.TEST_EMBEDDINGS = ""
        ov.VOCABULARY = ov.TEST_VOCABULARY = args.vocabulary
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(names)
    cfg.DATASETS.TRAIN = ()
    cfg.DATASETS.TEST = ()
    cfg.MODEL.WEIGHTS = args.weights
    cfg.MODEL.DEVICE = args.device
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.confidence_threshold
    cfg.freeze()
    return cfg, names


def main(argv=None):
    args = parse_args(argv)
    if not os.path.isfile(args.weights):
        print(f"demo: error: weights file {args.weights} does not exist", file=sys.stderr)
        return 2
    images = list_image_paths(args.input)
    if not images:
        print(f"demo: error: no images found in {args.input}", file=sys.stderr)
        return 2
    try:
        cfg, names = demo_cfg(args)
        predictor = DefaultPredictor(cfg)
    except (SetupError, ValueError, MissingWeightsError) as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    metadata = MetadataCatalog.get("__zip_d2_demo")
    metadata.thing_classes = list(names)
    os.makedirs(args.output, exist_ok=True)
    for path in images:
        image = read_image(path, format="BGR")
        with torch.no_grad():
            instances = predictor(image)["instances"].to("cpu")
        vis = Visualizer(image[:, :, ::-1], metadata, instance_mode=ColorMode.IMAGE)
        out_path = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0] + ".png")
        vis.draw_instance_predictions(instances).save(out_path)
        found = ", ".join(
            f"{names[c]} {s:.2f}"
            for c, s in zip(instances.pred_classes.tolist(), instances.scores.tolist())
        )
        print(
            f"demo: {path} -> {out_path}: {len(instances)} detections"
            f"{': ' + found if found else ''}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
