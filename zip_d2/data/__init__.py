"""Datasets: synthetic scenes with exact ground truth, COCO JSON validation and registration.

Importing this package registers the open-vocabulary COCO names (``coco_2017_*_ov_*``) under
``$DETECTRON2_DATASETS``, as importing detectron2 registers its builtin ones.
"""
from . import ov_coco  # noqa: F401  (registers the OV-COCO dataset names)
