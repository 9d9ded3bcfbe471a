"""The one place pycocotools' COCOeval is driven: in-memory COCO indexes, class-agnostic
copies, and box/mask evaluation of COCO-format results (all prints silenced)."""
import contextlib
import copy
import io

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

AGNOSTIC_CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}
# COCOeval.stats, in order.
STAT_NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
              "ARl"]


def coco_from_dict(dataset):
    """A pycocotools COCO index over an in-memory dataset dict (its prints silenced)."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def to_class_agnostic(dataset):
    """Copy of a COCO dataset dict with every annotation in the single category "object"."""
    dataset = copy.deepcopy(dataset)
    for ann in dataset["annotations"]:
        ann["category_id"] = AGNOSTIC_CATEGORY["id"]
    dataset["categories"] = [dict(AGNOSTIC_CATEGORY)]
    return dataset


def run_coco_eval(coco_gt, results, iou_type, image_ids=None, cat_ids=None, summarize=True):
    """An evaluated, accumulated (and, with ``summarize``, summarised) COCOeval.

    coco_gt: a pycocotools COCO index. results: COCO results (``image_id``, ``category_id`` in
    the ground truth's ids, ``bbox`` and/or ``segmentation``, ``score``), not modified.
    iou_type: "bbox" or "segm". image_ids / cat_ids: restrict the evaluation (None = all).
    Returns None when there are no results (COCOeval cannot load an empty list).
    """
    if not results:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(list(results))), iou_type)
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        if cat_ids is not None:
            ev.params.catIds = list(cat_ids)
        ev.evaluate()
        ev.accumulate()
        if summarize:
            ev.summarize()
    return ev


def coco_stats(coco_gt, results, iou_type, image_ids=None, cat_ids=None):
    """{stat name: value in [0, 1]} (COCO's 12 numbers; -1 where a size range has no ground
    truth); all zeros when there are no results."""
    ev = run_coco_eval(coco_gt, results, iou_type, image_ids, cat_ids)
    if ev is None:
        return {name: 0.0 for name in STAT_NAMES}
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}
