"""Evaluators beyond Detectron2's: class-agnostic COCO AP."""
from .class_agnostic import ClassAgnosticCOCOEvaluator

__all__ = ["ClassAgnosticCOCOEvaluator"]
