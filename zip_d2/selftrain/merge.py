"""The CutLER rule that turns a detector's predictions into the next round's pseudo-labels.

Round k's labels = every prediction with score >= t_k, plus every round k-1 pseudo-mask whose
best mask IoU with those kept predictions is below ``keep_old_max_iou`` (0.5): an old label the
detector did not reproduce is kept, one it did reproduce is replaced by the detector's (usually
sharper) mask. The IoU test is class-agnostic: a kept prediction of another class over the same
pixels is the same object, relabelled.
"""
import numpy as np
from pycocotools import mask as mask_util

from ..data.rle import segmentation_to_rle

__all__ = ["merge_round_labels"]


def _annotation(ann_id, image_id, category_id, rle, score):
    rle = dict(rle)
    if isinstance(rle["counts"], bytes):
        rle["counts"] = rle["counts"].decode("ascii")
    return {"id": ann_id, "image_id": image_id, "category_id": int(category_id),
            "segmentation": rle, "area": float(mask_util.area(rle)),
            "bbox": [float(v) for v in mask_util.toBbox(rle)], "iscrowd": 0,
            "score": round(float(score), 4)}


def merge_round_labels(previous, predictions, score_threshold, keep_old_max_iou=0.5):
    """Next round's annotations from the previous labels and the detector's predictions.

    Args:
        previous (dict): COCO instances data of round k-1 (images, annotations with masks).
        predictions (list[dict]): COCO results (``image_id``, ``category_id`` in the dataset's
            ids, ``segmentation`` RLE, ``score``) on the same images.
        score_threshold (float): keep predictions with ``score >= score_threshold``.
        keep_old_max_iou (float): keep an old annotation iff its best mask IoU with the kept
            predictions of its image is ``< keep_old_max_iou``.

    Returns:
        (annotations, stats): COCO annotations with new ids 1..N (kept predictions first in
        each image, then kept old labels; old labels without a score get 1.0), and counts
        ``{"predictions_kept", "predictions_empty", "old_kept", "old_replaced"}``; confident
        predictions with an empty mask are dropped and counted as ``predictions_empty``.
    """
    images = {img["id"]: img for img in previous["images"]}
    preds_by_image, old_by_image = {}, {}
    stats = {"predictions_kept": 0, "predictions_empty": 0, "old_kept": 0, "old_replaced": 0}
    for p in predictions:
        if p["score"] < score_threshold:
            continue
        img = images.get(p["image_id"])
        if img is not None and not mask_util.area(
                segmentation_to_rle(p["segmentation"], img["height"], img["width"])):
            # An empty predicted mask is no object; as a label it would only be noise.
            stats["predictions_empty"] += 1
            continue
        preds_by_image.setdefault(p["image_id"], []).append(p)
    for a in previous["annotations"]:
        if not a.get("iscrowd", 0):
            old_by_image.setdefault(a["image_id"], []).append(a)
    unknown = set(preds_by_image) - set(images)
    if unknown:
        raise ValueError(
            f"predictions for image ids not in the previous labels: {sorted(unknown)[:5]}")

    annotations = []
    for image_id, img in images.items():
        h, w = img["height"], img["width"]
        new = [
            segmentation_to_rle(p["segmentation"], h, w) for p in preds_by_image.get(image_id, [])
        ]
        old = [segmentation_to_rle(a["segmentation"], h, w) for a in old_by_image.get(image_id, [])]
        for p, rle in zip(preds_by_image.get(image_id, []), new):
            annotations.append(_annotation(len(annotations) + 1, image_id, p["category_id"],
                                           rle, p["score"]))
        stats["predictions_kept"] += len(new)
        if not old:
            continue
        if new:
            best = np.asarray(mask_util.iou(old, new, [0] * len(new))).reshape(len(old), len(new))
            best = best.max(axis=1)
        else:
            best = np.zeros(len(old))
        for a, rle, iou in zip(old_by_image[image_id], old, best):
            if iou < keep_old_max_iou:
                annotations.append(_annotation(len(annotations) + 1, image_id, a["category_id"],
                                               rle, a.get("score", 1.0)))
                stats["old_kept"] += 1
            else:
                stats["old_replaced"] += 1
    return annotations, stats
