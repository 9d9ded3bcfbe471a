#!/usr/bin/env python
"""Experiment 4: novel classes on an open-vocabulary split of the synthetic shapes.

Split: base = circle, square, triangle, hexagon; novel = star, cross (6-shape scenes, 400 train
/ 60 val). No CLIP weights exist here and a random-weight CLIP's text embeddings carry no
meaning, so the classifier's "text" embeddings are CONSTRUCTED from hand-written shape
attributes (ATTRIBUTES below): a novel class can only be recognised through attributes it
shares with base classes (star: straight edges, many corners, pointed tips; cross: straight
edges, many corners, right angles), its own ones (concave, arms) never occur in training.

Runs (each 600 iterations of the synthetic config, seeds as in common.SEEDS):
  closed_all  closed-set Mask R-CNN head, ground truth of all 6 classes (supervised reference)
  ov_base     open-vocabulary head (constructed embeddings), base ground truth only
  ov_free     open-vocabulary head, annotation-free: discovery-made labels (constructed
              features, thinness rule) of all 6 classes, DropLoss

Evaluation goes through ``tools/train_net.py --eval-only`` as a COCO user's would: the val
scenes are laid out as a miniature OV-COCO under ROOT/d2_datasets (``coco/val2017`` and
``coco/annotations/instances_val2017_ov_all.json`` with the 65 OV-COCO categories), the six
shapes renamed to the COCO classes with the same ids (circle->person, square->bicycle,
triangle->car, hexagon->motorcycle: base classes of OV-COCO; star->airplane, cross->bus: novel
ones), and ``coco_2017_val_ov_all`` is evaluated with DETECTRON2_DATASETS pointing there. The
generalised box AP50 over base / novel / all classes is read from the run's metrics.json.

    OMP_NUM_THREADS=1 nohup python tools/experiments/open_vocab_synthetic.py --root work/exp15 \
        > work/exp15_e4.log 2>&1 &
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import json
import os
import subprocess
import sys

import common
import torch

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from zip_d2.data.coco_json import load_json, write_json_atomic
from zip_d2.data.ov_coco import OV_COCO_BASE, OV_COCO_NOVEL, build_ov_split
from zip_d2.text import TextEmbeddings

EXPERIMENT = "e4"
ITERS, WARMUP = 600, 50
BASE = ["circle", "square", "triangle", "hexagon"]
NOVEL = ["star", "cross"]
ATTRIBUTE_NAMES = ["curved", "straight edges", "few corners", "many corners", "concave",
                   "pointed tips", "right angles", "arms"]
ATTRIBUTES = {
    "circle": ["curved"],
    "square": ["straight edges", "few corners", "right angles"],
    "triangle": ["straight edges", "few corners", "pointed tips"],
    "hexagon": ["straight edges", "many corners"],
    "star": ["straight edges", "many corners", "concave", "pointed tips"],
    "cross": ["straight edges", "many corners", "concave", "right angles", "arms"],
}
CLIP_MODEL = "constructed-shape-attributes"
CLIP_PRETRAINED = "none (constructed from shape attributes)"
CLOSED = common.CONFIG
OPEN = "configs/open_vocab/mask_rcnn_R18_ov_synthetic.yaml"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPLIT_KEYS = ("AP50-base", "AP50-novel", "AP50-all")
RUNS = ("closed_all", "ov_base", "ov_free")


def constructed_embeddings(names, dim=32, seed=0):
    """Unit 'text' embeddings: sum of orthonormal attribute directions in a dim-D space."""
    gen = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(dim, len(ATTRIBUTE_NAMES), generator=gen))[0].t()
    emb = torch.stack([sum(basis[ATTRIBUTE_NAMES.index(a)] for a in ATTRIBUTES[n]) for n in names])
    return TextEmbeddings(torch.nn.functional.normalize(emb, dim=1), list(names), CLIP_MODEL,
                          CLIP_PRETRAINED, templates="none")


def coco_names():
    """Shape name -> the COCO class with the same id (ids 1-6: person ... bus)."""
    by_id = {c["id"]: c["name"] for c in COCO_CATEGORIES if c["isthing"]}
    return {shape: by_id[i] for i, shape in enumerate(BASE + NOVEL, 1)}


def ov_coco_layout(root, val_json, val_images):
    """ROOT/d2_datasets holding a miniature OV-COCO val split of the synthetic val scenes."""
    d2 = os.path.join(root, "d2_datasets")
    ann = os.path.join(d2, "coco", "annotations", "instances_val2017_ov_all.json")
    if os.path.isfile(ann):
        return d2
    os.makedirs(os.path.dirname(ann), exist_ok=True)
    link = os.path.join(d2, "coco", "val2017")
    if not os.path.islink(link):
        os.symlink(os.path.abspath(val_images), link)
    val = load_json(val_json)
    rename = coco_names()
    coco_id = {c["name"]: c["id"] for c in COCO_CATEGORIES if c["isthing"]}
    new_id = {c["id"]: coco_id[rename[c["name"]]] for c in val["categories"]}
    assert all(k == v for k, v in new_id.items()), "shape ids must equal their COCO ids"
    val["categories"] = [{"id": c["id"], "name": c["name"]} for c in COCO_CATEGORIES
                         if c["isthing"]]
    val["info"] = dict(val.get("info", {}), renamed_shapes=rename)
    write_json_atomic(build_ov_split(val, OV_COCO_BASE + OV_COCO_NOVEL, source=val_json), ann)
    return d2


def ov_opts(train_emb, test_emb, num_classes):
    return ["MODEL.ROI_HEADS.NUM_CLASSES", str(num_classes),
            "MODEL.ROI_BOX_HEAD.OPEN_VOCAB.CLIP_MODEL", CLIP_MODEL,
            "MODEL.ROI_BOX_HEAD.OPEN_VOCAB.CLIP_PRETRAINED", CLIP_PRETRAINED,
            "MODEL.ROI_BOX_HEAD.OPEN_VOCAB.RANDOM_WEIGHTS", "False",
            "MODEL.ROI_BOX_HEAD.OPEN_VOCAB.EMBEDDINGS", train_emb,
            "MODEL.ROI_BOX_HEAD.OPEN_VOCAB.TEST_EMBEDDINGS", test_emb]


def eval_through_train_net(config, weights, opts, d2_datasets, out_dir):
    """Generalised box AP50 (base / novel / all) from ``tools/train_net.py --eval-only``."""
    cmd = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file",
           config, "--eval-only", *opts, "MODEL.WEIGHTS", weights,
           "DATASETS.TEST", "('coco_2017_val_ov_all',)", "OUTPUT_DIR", out_dir]
    env = dict(os.environ, DETECTRON2_DATASETS=d2_datasets)
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    with open(os.path.join(out_dir, "eval_command.txt"), "w") as f:
        f.write(f"DETECTRON2_DATASETS={d2_datasets} " + " ".join(cmd) + "\n")
        f.write(res.stdout[-20000:] + res.stderr[-20000:])
    if res.returncode != 0:
        sys.exit(f"open_vocab_synthetic: train_net --eval-only failed (exit {res.returncode}); "
                 f"see {out_dir}/eval_command.txt")
    metrics_file = os.path.join(out_dir, "metrics.json")
    records = []
    if os.path.isfile(metrics_file):
        with open(metrics_file) as f:
            records = [json.loads(line) for line in f if "bbox/AP50-novel" in line]
    if not records:
        sys.exit("open_vocab_synthetic: tools/train_net.py --eval-only wrote no bbox/AP50-novel "
                 f"to {metrics_file}; this needs train_net's open-vocabulary evaluation "
                 "(issue 13)")
    last = records[-1]
    return {k: round(last[f"bbox/{k}"], 1) for k in SPLIT_KEYS}


def run(root, seeds, runs, train_only=False, iters=ITERS):
    data = common.make_data(root, num_categories=6)
    base_json = os.path.join(root, "labels", "train6_base_gt.json")
    if not os.path.isfile(base_json):
        write_json_atomic(build_ov_split(load_json(data["train"]), BASE, source=data["train"]),
                          base_json)
    emb_base, emb_all = (os.path.join(root, "labels", f"emb_{n}.pth") for n in ("base", "all"))
    constructed_embeddings(BASE).save(emb_base)
    constructed_embeddings(BASE + NOVEL).save(emb_all)
    d2 = ov_coco_layout(root, data["val"], data["val_images"])
    for seed in seeds:
        free_labels = common.pseudo_labels(root, "disc_new", seed, data["train"], tag="_6shapes")
        setups = {
            "closed_all": (CLOSED, data["train"], ["MODEL.ROI_HEADS.NUM_CLASSES", "6"],
                           "ground truth, all 6 classes"),
            "ov_base": (OPEN, base_json, ov_opts(emb_base, emb_all, 4),
                        "ground truth, 4 base classes"),
            "ov_free": (OPEN, free_labels, ov_opts(emb_all, emb_all, 6)
                        + common.droploss_opts(OPEN), common.SOURCES["disc_new"] + ", 6 classes"),
        }
        for name in runs:
            run_name = f"{name}_s{seed}"
            if common.finished(root, EXPERIMENT, run_name):
                continue
            config, train_json, opts, trained_on = setups[name]
            out = os.path.join(root, "runs", EXPERIMENT, run_name)
            ckpt, seconds = common.train(out, f"e4_train_{run_name}", train_json,
                                         data["train_images"],
                                         common.schedule(iters, min(WARMUP, iters), seed=seed)
                                         + opts, config=config)
            if train_only:
                continue
            eval_dir = os.path.join(out, "eval_ov_coco")
            os.makedirs(eval_dir, exist_ok=True)
            result = {"run": name, "seed": seed, "trained_on": trained_on,
                      "embeddings": "constructed from shape attributes (not CLIP)"
                      if config == OPEN else "none (closed-set head)",
                      "iterations": iters, "train_seconds": seconds, "checkpoint": ckpt,
                      "val_generalised_box": eval_through_train_net(config, ckpt, opts, d2,
                                                                    eval_dir)}
            if name == "ov_free":
                result["labels_vs_train_gt"] = common.label_quality(free_labels, data["train"])
            common.record(root, EXPERIMENT, run_name, result)


def main():
    parser = common.experiment_parser(__doc__, ITERS)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--train-only", action="store_true",
                        help="train, do not evaluate (a later run without it evaluates)")
    args = parser.parse_args()
    run(common.start(args), args.seeds, args.runs, args.train_only, args.iters)


if __name__ == "__main__":
    main()
