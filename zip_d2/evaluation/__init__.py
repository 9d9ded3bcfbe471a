"""Evaluators beyond Detectron2's: class-agnostic COCO AP, open-vocabulary COCO AP50 by split."""
from .class_agnostic import ClassAgnosticCOCOEvaluator
from .ov_coco import OVCOCOEvaluator

__all__ = ["ClassAgnosticCOCOEvaluator", "OVCOCOEvaluator"]
