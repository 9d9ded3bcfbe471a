"""Training: Detectron2's DefaultTrainer with zip_d2's datasets, evaluators and writers."""
from .trainer import Trainer

__all__ = ["Trainer"]
