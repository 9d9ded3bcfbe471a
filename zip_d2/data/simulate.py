"""Simulated pseudo-labels: ground truth degraded the way an annotation-free labeller errs.

A random-weight Zip produces noise, and real weights cannot be fetched on the project's machines,
so experiments on self-training, label-efficient finetuning and open-vocabulary heads train on
ground truth with *controlled* errors instead. Each error kind is one
parameter of :class:`SimulationParams`:

- ``merge_prob``: two touching instances of the same class become one mask — the failure Zip
  targets (a class-level region covering two objects);
- ``miss_prob``: an object gets no label;
- ``boundary_prob`` / ``boundary_px``: an eroded or dilated (loose) mask boundary;
- ``spurious_per_image``: background blobs labelled as objects (Poisson mean per image);
- ``flip_prob``: a wrong class;
- ``score_*``: a confidence that correlates imperfectly with correctness.

The output is a COCO JSON whose ``info`` says ``"simulated": true`` and records every parameter,
the seed and the source ground truth, so a simulated file can never pass for real pseudo-labels.
"""
import os
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .coco_json import DatasetError, load_json, write_json_atomic
from .paths import refuse_overwriting_inputs
from .rle import segmentation_to_mask
from .synthetic import mask_to_annotation
from .validate import validate_coco

__all__ = ["SimulationParams", "simulate_pseudo_labels", "write_simulated_pseudo_labels"]


@dataclass
class SimulationParams:
    """Error rates of the simulated labeller (probabilities per object unless stated)."""

    merge_prob: float = 0.6
    miss_prob: float = 0.15
    boundary_prob: float = 0.3
    boundary_px: int = 2
    spurious_per_image: float = 0.5
    flip_prob: float = 0.05
    # Scores: correct labels ~ N(score_correct, score_noise), erroneous ones ~ N(score_wrong, ...),
    # clipped to [0.05, 1]; the overlap of the two is the "imperfect" correlation.
    score_correct: float = 0.8
    score_wrong: float = 0.55
    score_noise: float = 0.15
    # One category for every label (class-agnostic pseudo-labels, CutLER-style).
    class_agnostic: bool = False


def _touching(a, b):
    """Whether two (H, W) bool masks share or abut pixels (8-neighbourhood)."""
    return bool((cv2.dilate(a.astype(np.uint8), np.ones((3, 3), np.uint8)) & b).any())


def _degrade_image(objects, height, width, num_categories, params, rng):
    """One image's objects [(mask, category_id)] -> [(mask, category_id, correct: bool)]."""
    # Merge: walk objects in order; each may absorb one touching same-class partner.
    merged, used = [], set()
    for i, (mask, cat) in enumerate(objects):
        if i in used:
            continue
        used.add(i)
        correct = True
        for j in range(i + 1, len(objects)):
            if j in used or objects[j][1] != cat or not _touching(mask, objects[j][0]):
                continue
            if rng.random() < params.merge_prob:
                mask = mask | objects[j][0]
                used.add(j)
                correct = False
                break
        merged.append((mask, cat, correct))

    out = []
    kernel = np.ones((2 * params.boundary_px + 1,) * 2, np.uint8)
    for mask, cat, correct in merged:
        if rng.random() < params.miss_prob:
            continue
        if params.boundary_px > 0 and rng.random() < params.boundary_prob:
            op = cv2.erode if rng.random() < 0.5 else cv2.dilate
            changed = op(mask.astype(np.uint8), kernel).astype(bool)
            if changed.any():
                mask, correct = changed, False
        if num_categories > 1 and rng.random() < params.flip_prob:
            cat = int(rng.choice([c for c in range(1, num_categories + 1) if c != cat]))
            correct = False
        out.append((mask, cat, correct))

    for _ in range(rng.poisson(params.spurious_per_image)):
        blob = np.zeros((height, width), np.uint8)
        axes = (int(rng.integers(3, max(4, width // 8))), int(rng.integers(3, max(4, height // 8))))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.ellipse(blob, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        if blob.any():
            out.append((blob.astype(bool), int(rng.integers(1, num_categories + 1)), False))
    return out


def simulate_pseudo_labels(gt, params=SimulationParams(), seed=0, source=""):
    """Degrade a ground-truth COCO instances dict into simulated pseudo-labels.

    Args:
        gt (dict): COCO instances data with segmentations (RLE or polygons).
        params (SimulationParams): error rates.
        seed (int): the only source of randomness; same inputs + seed -> same output.
        source (str): where ``gt`` came from, recorded in ``info``.

    Returns:
        dict: COCO instances data, same images, annotations with RLE masks and a ``score``;
        ``info.simulated`` is True and ``info.simulation`` holds the parameters and seed.
    """
    rng = np.random.default_rng(seed)
    cats = sorted(gt["categories"], key=lambda c: c["id"])
    # Errors are drawn in contiguous class space and mapped back to the dataset's ids.
    id_to_index = {c["id"]: i + 1 for i, c in enumerate(cats)}
    by_image = {}
    for ann in gt["annotations"]:
        if not ann.get("iscrowd", 0):
            by_image.setdefault(ann["image_id"], []).append(ann)
    annotations = []
    for img in gt["images"]:
        h, w = img["height"], img["width"]
        objects = [(segmentation_to_mask(a["segmentation"], h, w), id_to_index[a["category_id"]])
                   for a in sorted(by_image.get(img["id"], []), key=lambda a: a["id"])]
        for mask, cat_index, correct in _degrade_image(objects, h, w, len(cats), params, rng):
            mean = params.score_correct if correct else params.score_wrong
            score = float(np.clip(rng.normal(mean, params.score_noise), 0.05, 1.0))
            category_id = 1 if params.class_agnostic else cats[cat_index - 1]["id"]
            annotations.append(mask_to_annotation(
                mask, id=len(annotations) + 1, image_id=img["id"], category_id=category_id,
                score=round(score, 4)))
    categories = ([{"id": 1, "name": "object", "supercategory": "object"}]
                  if params.class_agnostic else cats)
    info = {
        "description": "SIMULATED pseudo-labels: ground truth degraded by zip_d2.data.simulate "
                       "(not the output of a pseudo-labeller)",
        "simulated": True,
        "simulation": {"params": asdict(params), "seed": seed, "source": source},
    }
    return {"info": info, "images": list(gt["images"]), "annotations": annotations,
            "categories": categories}


def write_simulated_pseudo_labels(gt_json, out_json, params=SimulationParams(), seed=0):
    """Read ``gt_json``, degrade it, validate and write ``out_json`` atomically; return the dict."""
    refuse_overwriting_inputs({"--out": out_json}, {"--gt": gt_json})
    data = simulate_pseudo_labels(load_json(gt_json), params, seed, source=os.path.abspath(gt_json))
    problems = validate_coco(data, check_segmentations=True)
    if problems:
        raise DatasetError(f"simulated labels are invalid: {problems[0]}")
    write_json_atomic(data, out_json)
    return data
