"""Datasets: synthetic scenes with exact ground truth, COCO JSON validation and registration.

The open-vocabulary COCO names (``coco_2017_*_ov_*``) are registered under
``$DETECTRON2_DATASETS`` when ``zip_d2.data.register`` (every training tool's registration) or
``zip_d2.data.ov_coco`` is imported; importing this package alone imports no torch or
detectron2, so tools that only read and write COCO JSON start (and answer --help) quickly.
"""
