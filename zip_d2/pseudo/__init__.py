"""Annotation-free pseudo-labels: the Zip discovery engine and its baselines.

``build_labeler(cfg)`` is the entry point; stages live in one module each, in data-flow order:
``clues`` -> ``clusters`` -> ``instances`` -> ``masks``. The frozen networks come from
``zip_d2.models``, which the detector heads share.

The names below load ``pipeline`` (and torch) on first use, not on import of the package: a
torch-free module of it (``params``, ``discovery_label_params``) stays light, so a tool can
build its parser from one before parsing.
"""
import importlib

__all__ = ["build_labeler", "check_config", "required_weights", "ZipLabeler", "SamClipLabeler",
           "ZipInputs", "ZipPreprocess", "METHODS"]


def __getattr__(name):
    if name in __all__:
        return getattr(importlib.import_module(".pipeline", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
