"""Annotation-free pseudo-labels: the Zip discovery engine and its baselines.

``build_labeler(cfg)`` is the entry point; stages live in one module each, in data-flow order:
``clues`` -> ``clusters`` -> ``instances`` -> ``masks``; ``models`` builds the frozen networks.
"""
from .models import MissingWeightsError, create_clip, create_sam
from .pipeline import METHODS, SamClipLabeler, ZipLabeler, build_labeler

__all__ = ["MissingWeightsError", "create_clip", "create_sam", "build_labeler", "ZipLabeler",
           "SamClipLabeler", "METHODS"]
