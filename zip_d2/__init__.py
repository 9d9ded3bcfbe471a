"""zip_d2: Zip (CLIP + SAM) pseudo-labels and open-vocabulary detectors on Detectron2."""
__version__ = "0.1.0"
