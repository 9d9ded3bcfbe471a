"""Training: Detectron2's DefaultTrainer with zip_d2's datasets, evaluators and writers, and
the one "train one detector, resumably" function every tool uses."""
from .train import is_finished, train_detector
from .trainer import Trainer

__all__ = ["Trainer", "train_detector", "is_finished"]
