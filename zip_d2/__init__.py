"""zip_d2: Zip (CLIP + SAM) pseudo-labels and open-vocabulary detectors on Detectron2.

From Python: ``labeler = zip_d2.load_labeler("zip_paper", vocabulary="coco")``, then
``labeler(image)`` (see :mod:`zip_d2.api`). Importing the package loads no model library.
"""
from .api import Labeler, load_labeler  # standard library only
from .version import __version__

__all__ = ["Labeler", "load_labeler", "__version__"]
