"""Self-training: the CutLER label-merge rule and the round driver behind tools/self_train.py."""
from .merge import merge_round_labels
from .report import summary_table
from .rounds import SelfTrainingRun, build_round_labels, predict_dataset, round_threshold

__all__ = ["SelfTrainingRun", "build_round_labels", "merge_round_labels", "predict_dataset",
           "round_threshold", "summary_table"]
