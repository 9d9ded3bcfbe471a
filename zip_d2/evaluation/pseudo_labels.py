"""Pseudo-labels against ground truth: COCO box and mask AP/AR with pycocotools.

Pseudo-labels and ground truth are matched by image ``file_name`` (a folder run has its own
image ids) and by category name (a custom vocabulary has its own category ids). Only images that
the pseudo-labels cover are evaluated: a skipped image is reported, not counted as all misses.
Both files pass the dataset validator first: what COCOeval would mis-score (two ground-truth
images with one file_name, a NaN box) or crash on (a string score) is one line, not a number.
"""
from __future__ import annotations

from typing import List

from zip_d2.data.validate import first_problem, validate_coco

from .coco_eval import STAT_NAMES, coco_from_dict, coco_stats, to_class_agnostic


class EvalError(ValueError):
    """Predictions and ground truth cannot be matched or evaluated; one line."""


def check_inputs(pred: dict, gt: dict, pred_name: str = "predictions",
                 gt_name: str = "ground truth") -> None:
    """Raise EvalError unless both are valid COCO datasets and not given the wrong way round.

    Predictions' segmentations are decoded (COCOeval decodes them too, unchecked); the ground
    truth's are checked for form only, as training checks a dataset.
    """
    if isinstance(pred, list):
        raise EvalError(f"{pred_name} is a list of detections (a COCO results file); the "
                        "predictions must be a COCO dataset JSON with images, annotations and "
                        "categories, as tools/generate_pseudo_labels.py writes")
    problem = (first_problem(validate_coco(pred, check_segmentations=True), pred_name)
               or first_problem(validate_coco(gt), gt_name))
    if problem:
        raise EvalError(problem)
    # Ground truth has no scores; a labeler's output always has them.
    if (any("score" in a for a in gt["annotations"])
            and not any("score" in a for a in pred["annotations"])):
        raise EvalError(f"{gt_name} has scored annotations and {pred_name} has none: the "
                        "predictions and the ground truth look swapped; check --pred and --gt")


def match_predictions(pred: dict, gt: dict, class_agnostic: bool):
    """(gt dict, predictions as COCO results in gt's ids, evaluated gt image ids, notes)."""
    notes = []
    if class_agnostic:
        gt = to_class_agnostic(gt)
    gt_image_ids = {img["file_name"]: img["id"] for img in gt["images"]}
    pred_image_ids = {}
    for img in pred["images"]:
        if img["file_name"] in gt_image_ids:
            pred_image_ids[img["id"]] = gt_image_ids[img["file_name"]]
    if not pred_image_ids:
        raise EvalError("no image of the predictions has a file_name in the ground truth")
    missing = len(pred["images"]) - len(pred_image_ids)
    if missing:
        notes.append(f"{missing} predicted images are not in the ground truth and are ignored")
    if class_agnostic:
        pred_cat = {c["id"]: 1 for c in pred["categories"]}
    else:
        gt_by_name = {c["name"].lower(): c["id"] for c in gt["categories"]}
        pred_cat = {c["id"]: gt_by_name[c["name"].lower()] for c in pred["categories"]
                    if c["name"].lower() in gt_by_name}
        unknown = [c["name"] for c in pred["categories"] if c["name"].lower() not in gt_by_name]
        if unknown:
            notes.append(f"{len(unknown)} predicted categories are not in the ground truth and "
                         f"their detections are ignored (e.g. {unknown[0]!r})")
        if not pred_cat:
            raise EvalError("no predicted category name is a ground-truth category; use "
                            "--class-agnostic")
    results = []
    for ann in pred["annotations"]:
        if ann["image_id"] in pred_image_ids and ann["category_id"] in pred_cat:
            results.append({"image_id": pred_image_ids[ann["image_id"]],
                            "category_id": pred_cat[ann["category_id"]],
                            "bbox": ann["bbox"], "segmentation": ann.get("segmentation"),
                            "score": float(ann.get("score", 1.0))})
    skipped = len(pred.get("skipped_images", []))
    if skipped:
        notes.append(f"{skipped} images were skipped by the labeler and are not evaluated")
    return gt, results, sorted(set(pred_image_ids.values())), notes


def _evaluate(gt_coco, results: List[dict], iou_type: str, image_ids) -> dict:
    if iou_type == "bbox":
        dets = [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
    else:
        # Without a bbox, loadRes takes the area from the mask, as mask AP's size ranges need.
        dets = [{k: v for k, v in r.items() if k != "bbox"} for r in results
                if r.get("segmentation")]
    # COCOeval marks "no ground truth in this size range" as -1; it is reported as such.
    return coco_stats(gt_coco, dets, iou_type, image_ids)


def evaluate_pseudo_labels(pred: dict, gt: dict, class_agnostic: bool = False,
                           pred_name: str = "predictions", gt_name: str = "ground truth") -> dict:
    """{"bbox": {stat: value}, "segm": {...}, "images": n, "notes": [...]}; values in [0, 1].

    ``pred_name``/``gt_name`` (e.g. the file paths) name the inputs in EvalError's line.
    """
    check_inputs(pred, gt, pred_name, gt_name)
    gt, results, image_ids, notes = match_predictions(pred, gt, class_agnostic)
    gt_coco = coco_from_dict(gt)
    return {"bbox": _evaluate(gt_coco, results, "bbox", image_ids),
            "segm": _evaluate(gt_coco, results, "segm", image_ids),
            "images": len(image_ids), "detections": len(results), "notes": notes}


def format_table(metrics: dict) -> str:
    """Box and mask rows, percentages, COCO's column names."""
    header = "       " + " ".join(f"{name:>6}" for name in STAT_NAMES)
    rows = [header]
    for kind, label in (("bbox", "box"), ("segm", "mask")):
        values = metrics[kind]
        rows.append(f"{label:<6} " + " ".join(
            f"{100 * values[n]:6.1f}" if values[n] >= 0 else f"{'-':>6}" for n in STAT_NAMES))
    return "\n".join(rows)
