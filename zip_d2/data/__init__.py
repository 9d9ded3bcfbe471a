"""Datasets: synthetic scenes with exact ground truth, COCO JSON validation and registration.

Importing ``zip_d2.data.register`` (what training does to register datasets) registers the
open-vocabulary COCO names (``coco_2017_*_ov_*``) under ``$DETECTRON2_DATASETS``, as importing
detectron2 registers its builtin ones. This package itself imports neither torch nor
detectron2, so the label tools (merge, validation) start in a fraction of the memory.
"""
