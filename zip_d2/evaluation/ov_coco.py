"""Open-vocabulary COCO evaluation: box AP50 on base, novel and all classes (generalised).

In the generalised setting the detector scores all classes (base and novel) together on every
image, and AP50 is computed per class over that one set of predictions; the reported numbers
are means of per-class AP50 over the base classes, the novel classes and all of them (the
protocol of OVR-CNN and Detic). A class with no ground truth in the evaluated images has no AP
and is left out of the means.
"""
import logging

import numpy as np
from tabulate import tabulate

from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOEvaluator

from ..data import ov_coco as _ov_coco_data  # noqa: F401  (registers the OV-COCO dataset names)
from .coco_eval import coco_from_dict, run_coco_eval

__all__ = ["OVCOCOEvaluator", "per_category_ap50", "split_ap50", "evaluate_ov_results"]

logger = logging.getLogger(__name__)


def per_category_ap50(coco_eval):
    """{category id: box AP50 in %, or nan} from an accumulated COCOeval (all areas, max dets)."""
    precision = coco_eval.eval["precision"]  # (iou thresholds, recall, classes, areas, max dets)
    iou50 = int(np.argmin(np.abs(coco_eval.params.iouThrs - 0.5)))
    out = {}
    for k, cat_id in enumerate(coco_eval.params.catIds):
        p = precision[iou50, :, k, 0, -1]
        p = p[p > -1]
        out[cat_id] = float(100 * p.mean()) if p.size else float("nan")
    return out


def split_ap50(ap50_by_id, base_ids, novel_ids):
    """{"AP50-base", "AP50-novel", "AP50-all"}: means of per-class AP50 (nan classes skipped)."""
    def mean(ids):
        vals = [ap50_by_id[i] for i in ids if i in ap50_by_id and not np.isnan(ap50_by_id[i])]
        return float(np.mean(vals)) if vals else float("nan")
    return {"AP50-base": mean(base_ids), "AP50-novel": mean(novel_ids),
            "AP50-all": mean(list(base_ids) + list(novel_ids))}


def _ids_for(categories, names):
    id_of = {c["name"]: c["id"] for c in categories}
    missing = [n for n in names if n not in id_of]
    if missing:
        raise ValueError(f"classes not in the ground truth: {missing}")
    return [id_of[n] for n in names]


def evaluate_ov_results(gt, results, base_names, novel_names):
    """Generalised box AP50 of COCO results (dataset ids) on a COCO GT dict, by split.

    Returns {"AP50-base", "AP50-novel", "AP50-all", "per_class": {name: AP50}}.
    """
    coco_gt = coco_from_dict(gt)
    base_ids = _ids_for(gt["categories"], base_names)
    novel_ids = _ids_for(gt["categories"], novel_names)
    if not results:
        nan = {i: 0.0 for i in base_ids + novel_ids if coco_gt.getAnnIds(catIds=[i])}
        return {**split_ap50(nan, base_ids, novel_ids), "per_class": {}}
    ev = run_coco_eval(coco_gt, results, "bbox", cat_ids=base_ids + novel_ids, summarize=False)
    ap = per_category_ap50(ev)
    name_of = {c["id"]: c["name"] for c in gt["categories"]}
    return {**split_ap50(ap, base_ids, novel_ids),
            "per_class": {name_of[i]: v for i, v in ap.items()}}


class OVCOCOEvaluator(COCOEvaluator):
    """COCOEvaluator (box task) that adds ``AP50-base``, ``AP50-novel``, ``AP50-all`` to the
    ``bbox`` results and prints them.

    Base/novel names come from the arguments or from the dataset metadata's
    ``ov_base_classes`` / ``ov_novel_classes`` (set for the registered OV-COCO names).
    """

    def __init__(self, dataset_name, base_classes=None, novel_classes=None, **kwargs):
        kwargs.setdefault("tasks", ("bbox",))
        super().__init__(dataset_name, **kwargs)
        meta = MetadataCatalog.get(dataset_name)
        self._base = list(base_classes or meta.get("ov_base_classes", []))
        self._novel = list(novel_classes or meta.get("ov_novel_classes", []))
        if not self._base or not self._novel:
            raise ValueError(f"{dataset_name}: no base/novel classes given or in its metadata")

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        results = super()._derive_coco_results(coco_eval, iou_type, class_names)
        if iou_type != "bbox" or coco_eval is None:
            return results
        cats = self._coco_api.dataset["categories"]
        split = split_ap50(per_category_ap50(coco_eval), _ids_for(cats, self._base),
                           _ids_for(cats, self._novel))
        logger.info("Open-vocabulary box AP50 (generalised, %d base + %d novel classes):\n%s",
                    len(self._base), len(self._novel),
                    tabulate([[f"{v:.1f}" for v in split.values()]], headers=list(split),
                             tablefmt="pipe"))
        results.update(split)
        return results
