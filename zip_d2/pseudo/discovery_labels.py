"""Discovery-made pseudo-labels: Zip's real discovery step on constructed features of each scene.

Between simulated labels (ground truth degraded by a noise model, :mod:`zip_d2.data.simulate`)
and real Zip labels (which need CLIP and SAM weights) sits this source. For every image of a
ground-truth COCO file (the synthetic scenes of :mod:`zip_d2.data.synthetic`):

1. the ground-truth instance map is reduced to a coarse grid (``stride`` image pixels per cell,
   each cell takes the label covering most of it), as CLIP RN50x64's layer3 sees an image at
   stride 16;
2. constructed boundary-aware features are built on that grid
   (:func:`zip_d2.data.constructed_features.boundary_aware_features`: one feature per object,
   one shared boundary feature where labels meet, smooth noise) and clustered with the
   project's k-means (K = 20, the demo's uniform seeding);
3. for each class in the image, its activation is the fraction of each cell its ground-truth
   masks cover, blurred and min-max normalised, and its region is Zip's threshold,
   activation > 0.7 x mean (:func:`~zip_d2.data.constructed_features.class_activation`).
   The class of each object is the ground truth's, or, with a :class:`NoisyNamer`, the class
   a noisy classifier over class embeddings gives it (naming without the ground truth's
   classes, as CLIP names Zip's regions);
4. the project's discovery (:func:`zip_d2.pseudo.instances.discover_instances`) turns fragments
   into instances, with the paper's rule or with the thinness rule (``min_inscribed_radius``);
   its settings are :class:`~zip_d2.pseudo.instances.DiscoveryParams`, which
   :class:`DiscoveryLabelParams` extends;
5. each instance's grid mask is upsampled to the image with nearest neighbour (blocky, as Zip's
   masks are before SAM), scored with the mean activation inside it (Zip's "mask_activation"
   CLIP score, without SAM's factor), and duplicates across classes are removed by mask NMS.

The errors are the mechanism's own: touching objects merged where a boundary fragment survives
the fragment tests, small objects dropped (no fragment thick enough, or below
``min_instance_cells``), object rims lost to the boundary cluster, grid-resolution masks. The
features are constructed from the ground truth: this tests Zip's discovery, not CLIP. Every
output says so in its ``info`` block (``DISCOVERY_LABEL``), and results made from it must too.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import List, Tuple

import numpy as np
import torch

from zip_d2.data.coco_json import DatasetError, load_json, write_json_atomic
from zip_d2.data.constructed_features import boundary_aware_features, class_activation
from zip_d2.data.paths import refuse_overwriting_inputs
from zip_d2.data.rle import segmentation_to_mask
from zip_d2.data.synthetic import mask_to_annotation
from zip_d2.data.validate import validate_coco

from .clusters import kmeans
from .discovery_label_params import DISCOVERY_LABEL, DiscoveryLabelParams
from .instances import discover_instances, grid_masks_to_image, split_fragments
from .masks import mask_nms

__all__ = ["DISCOVERY_LABEL", "DiscoveryLabelParams", "NoisyNamer", "grid_labels",
           "discover_image", "discovery_pseudo_labels", "write_discovery_pseudo_labels"]


@dataclass(frozen=True)
class NoisyNamer:
    """Names objects as a zero-shot classifier would: the object's "image embedding" is its true
    class's embedding plus Gaussian noise (``noise`` per dimension), and its name is the class
    whose embedding is nearest by cosine.

    ``embeddings``: {category id: (D,) unit vector} of every class that occurs (the true side);
    ``vocabulary``: the category ids a name is chosen from (default: all of them)."""

    embeddings: dict
    noise: float
    vocabulary: Tuple[int, ...] = ()

    def __call__(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        classes = np.asarray(classes, np.int64)
        if not len(classes):
            return classes
        vocab = np.array(self.vocabulary or sorted(self.embeddings), np.int64)
        text = np.stack([np.asarray(self.embeddings[int(c)], np.float64) for c in vocab])
        seen = np.stack([np.asarray(self.embeddings[int(c)], np.float64) for c in classes])
        seen = seen + self.noise * rng.standard_normal(seen.shape)
        cosine = (seen / np.linalg.norm(seen, axis=1, keepdims=True)) @ text.T
        return vocab[cosine.argmax(axis=1)]


def grid_labels(label_map: np.ndarray, grid_hw: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Reduce an image label map to a grid: each cell takes the label covering most of it.

    label_map: (H, W) int, labels 0..L-1 (0 = background). Cell of pixel (y, x) =
    (floor(y * h / H), floor(x * w / W)), the inverse of :func:`grid_masks_to_image`.
    Returns the (h, w) int32 majority label and the (L, h, w) float64 fraction of each cell
    every label covers. Ties go to the lower label.
    """
    label_map = np.asarray(label_map)
    (H, W), (h, w) = label_map.shape, grid_hw
    num = int(label_map.max()) + 1
    rows = np.minimum((np.arange(H) * h) // H, h - 1)
    cols = np.minimum((np.arange(W) * w) // W, w - 1)
    cell = (rows[:, None] * w + cols[None, :]).ravel()
    counts = np.bincount(label_map.ravel() * (h * w) + cell, minlength=num * h * w)
    counts = counts.reshape(num, h, w).astype(np.float64)
    cover = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)
    return counts.argmax(axis=0).astype(np.int32), cover


def discover_image(instance_map: np.ndarray, instance_class: np.ndarray,
                   params: DiscoveryLabelParams, rng: np.random.Generator
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Discovery-made labels of one scene.

    instance_map: (H, W) int, 0 background, i = ground-truth object i (1..M).
    instance_class: (M + 1,) int, class of each object (entry 0 unused).
    rng: the only source of randomness (feature prototypes and noise).
    Returns masks (N, H, W) bool, class ids (N,) int64 (values of ``instance_class``) and scores
    (N,) float32, highest score first.
    """
    H, W = instance_map.shape
    grid_hw = (max(1, round(H / params.stride)), max(1, round(W / params.stride)))
    grid_map, cover = grid_labels(instance_map, grid_hw)
    feats = boundary_aware_features(grid_map, rng, params.feature_dim, params.separation,
                                    params.noise, params.noise_sigma)
    assign, _ = kmeans(torch.from_numpy(feats.reshape(-1, params.feature_dim)),
                       params.num_clusters, params.kmeans_iters)
    fragments = split_fragments(assign.view(grid_hw).numpy())

    instance_class = np.asarray(instance_class)
    grid_masks: List[np.ndarray] = []
    classes: List[int] = []
    scores: List[float] = []
    present = instance_class[1:len(cover)]
    for c in np.unique(present):
        # Coverage of the class: the sum over its objects (they do not overlap).
        class_cover = cover[1:][present == c].sum(axis=0)
        act = class_activation(class_cover, params.activation_sigma)
        region = act > params.activation_ratio * act.mean()
        found = discover_instances(fragments, region, params)
        if not len(found):
            continue
        masks = found.masks()
        grid_masks.append(masks)
        classes += [int(c)] * len(found)
        scores += list((masks * act).sum(axis=(1, 2)) / masks.sum(axis=(1, 2)))
    if not grid_masks:
        return np.zeros((0, H, W), bool), np.zeros(0, np.int64), np.zeros(0, np.float32)
    image_masks = grid_masks_to_image(np.concatenate(grid_masks), (H, W))
    scores = np.asarray(scores, np.float32)
    keep = mask_nms(image_masks, scores, params.nms_iou, max_keep=len(scores))
    return image_masks[keep], np.asarray(classes, np.int64)[keep], scores[keep]


def discovery_pseudo_labels(gt: dict, params: DiscoveryLabelParams = DiscoveryLabelParams(),
                            seed: int = 0, source: str = "", namer: NoisyNamer = None) -> dict:
    """Discovery-made pseudo-labels for every image of a ground-truth COCO instances dict.

    Image ``i``'s features come from ``numpy.random.default_rng([seed, image id])``, so a label
    does not depend on which other images are in the file. Crowd annotations are not objects.
    Returns COCO instances data: the same images and categories, annotations with RLE masks and
    a ``score``, and ``info`` naming the source (``DISCOVERY_LABEL``), the rule, every parameter,
    the seed and ``source``. With ``namer``, each object's class is the one ``namer`` gives it
    (its own random stream, ``[seed, image id, 1]``), and ``info["naming"]`` holds the noise and
    the confusion {true class name: {given name: objects}}.
    """
    by_image = {}
    for ann in gt["annotations"]:
        if not ann.get("iscrowd", 0):
            by_image.setdefault(ann["image_id"], []).append(ann)
    annotations = []
    names = {c["id"]: c["name"] for c in gt["categories"]}
    confusion = {}
    for img in gt["images"]:
        h, w = img["height"], img["width"]
        anns = sorted(by_image.get(img["id"], []), key=lambda a: a["id"])
        instance_map = np.zeros((h, w), np.int32)
        for i, ann in enumerate(anns, 1):  # later annotations win where masks overlap
            instance_map[segmentation_to_mask(ann["segmentation"], h, w)] = i
        instance_class = np.array([0] + [a["category_id"] for a in anns], np.int64)
        if namer is not None:
            given = namer(instance_class[1:], np.random.default_rng([seed, int(img["id"]), 1]))
            for true, name in zip(instance_class[1:], given):
                row = confusion.setdefault(names[int(true)], {})
                row[names[int(name)]] = row.get(names[int(name)], 0) + 1
            instance_class[1:] = given
        rng = np.random.default_rng([seed, int(img["id"])])
        masks, classes, scores = discover_image(instance_map, instance_class, params, rng)
        for mask, cat, score in zip(masks, classes, scores):
            annotations.append(mask_to_annotation(
                mask, id=len(annotations) + 1, image_id=img["id"], category_id=int(cat),
                score=round(float(score), 4)))
    info = {
        "description": f"{DISCOVERY_LABEL}: zip_d2's k-means and discovery ({params.rule}) on "
                       "feature maps built from the ground truth, not on CLIP features; "
                       "class regions from blurred ground-truth masks; no SAM",
        "discovery_made": True,
        "features": "constructed",
        "discovery": {"rule": params.rule, "params": asdict(params), "seed": seed,
                      "source": source},
    }
    if namer is not None:
        info["description"] = info["description"].replace(
            "class regions from blurred ground-truth masks",
            "classes named by a noisy classifier over class embeddings, class regions from the "
            "blurred masks of the objects so named")
        info["naming"] = {"noise": namer.noise,
                          "vocabulary": [names[c] for c in namer.vocabulary or sorted(names)],
                          "confusion": confusion}
    return {"info": info, "images": list(gt["images"]), "annotations": annotations,
            "categories": list(gt["categories"])}


def write_discovery_pseudo_labels(gt_json: str, out_json: str,
                                  params: DiscoveryLabelParams = DiscoveryLabelParams(),
                                  seed: int = 0, namer: NoisyNamer = None) -> dict:
    """Read ``gt_json``, make discovery-made labels, validate, write ``out_json`` atomically."""
    refuse_overwriting_inputs({"--out": out_json}, {"--gt": gt_json})
    data = discovery_pseudo_labels(load_json(gt_json), params, seed,
                                   source=os.path.abspath(gt_json), namer=namer)
    problems = validate_coco(data, check_segmentations=True)
    if problems:
        raise DatasetError(f"discovery-made labels are invalid: {problems[0]}")
    write_json_atomic(data, out_json)
    return data
