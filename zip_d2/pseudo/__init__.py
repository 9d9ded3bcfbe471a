"""Annotation-free pseudo-labels: the Zip discovery engine and its baselines.

``build_labeler(cfg)`` is the entry point; stages live in one module each, in data-flow order:
``clues`` -> ``clusters`` -> ``instances`` -> ``masks``. The frozen networks come from
``zip_d2.models``, which the detector heads share.
"""
from .pipeline import (
    METHODS,
    SamClipLabeler,
    ZipInputs,
    ZipLabeler,
    ZipPreprocess,
    build_labeler,
    check_config,
    required_weights,
)

__all__ = ["build_labeler", "check_config", "required_weights", "ZipLabeler", "SamClipLabeler",
           "ZipInputs", "ZipPreprocess", "METHODS"]
