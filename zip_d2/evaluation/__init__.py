"""Evaluation, one home: the COCOeval driver (``coco_eval``), Detectron2 evaluators for
class-agnostic COCO AP and open-vocabulary AP50 by split, and pseudo-labels against ground
truth (``pseudo_labels``)."""
from .class_agnostic import ClassAgnosticCOCOEvaluator
from .ov_coco import OVCOCOEvaluator

__all__ = ["ClassAgnosticCOCOEvaluator", "OVCOCOEvaluator"]
