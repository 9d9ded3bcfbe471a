"""The trainer behind tools/train_net.py."""
import os

import torch

from detectron2.data import MetadataCatalog, build_detection_train_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.solver import get_default_optimizer_params
from detectron2.solver.build import maybe_add_gradient_clipping

from ..config import OPTIMIZERS
from ..data.mapper import ScoredDatasetMapper
from ..evaluation import ClassAgnosticCOCOEvaluator, OVCOCOEvaluator
from .setup import config_dict
from .wandb_writer import WandbWriter


class Trainer(DefaultTrainer):
    """DefaultTrainer plus COCO evaluation (class-aware, and class-agnostic on request) and
    an optional W&B writer beside Detectron2's metrics.json and TensorBoard writers."""

    @classmethod
    def build_train_loader(cls, cfg):
        # Keep each pseudo-label's "score" on the training Instances (gt_scores) for the
        # score-weighted classification loss; otherwise identical to Detectron2's mapper.
        if cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.SCORE_WEIGHTED_LOSS:
            return build_detection_train_loader(cfg, mapper=ScoredDatasetMapper(cfg, True))
        return super().build_train_loader(cfg)

    @classmethod
    def build_optimizer(cls, cfg, model):
        # SGD is Detectron2's own; AdamW takes the same parameter groups (no weight decay on
        # norms per SOLVER.WEIGHT_DECAY_NORM) and the same optional gradient clipping.
        if cfg.SOLVER.OPTIMIZER not in OPTIMIZERS:
            raise ValueError(f"SOLVER.OPTIMIZER must be {' or '.join(OPTIMIZERS)}, "
                             f"got {cfg.SOLVER.OPTIMIZER!r}")
        if cfg.SOLVER.OPTIMIZER == "SGD":
            return super().build_optimizer(cfg, model)
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        )
        return maybe_add_gradient_clipping(cfg, torch.optim.AdamW(
            params, lr=cfg.SOLVER.BASE_LR, betas=tuple(cfg.SOLVER.BETAS),
            weight_decay=cfg.SOLVER.WEIGHT_DECAY))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        if MetadataCatalog.get(dataset_name).get("evaluator_type") == "ov_coco":
            # COCO AP plus box AP50 on base / novel / all classes (generalised setting).
            evaluators = [OVCOCOEvaluator(dataset_name, output_dir=output_folder)]
        else:
            evaluators = [COCOEvaluator(dataset_name, output_dir=output_folder)]
        if cfg.ZIP.EVAL.CLASS_AGNOSTIC:
            evaluators.append(ClassAgnosticCOCOEvaluator(dataset_name))
        return DatasetEvaluators(evaluators)

    def build_writers(self):
        writers = super().build_writers()
        wandb_cfg = self.cfg.ZIP.WANDB
        if wandb_cfg.ENABLED:
            writers.append(WandbWriter(
                project=wandb_cfg.PROJECT, entity=wandb_cfg.ENTITY, name=wandb_cfg.NAME,
                mode=wandb_cfg.MODE, output_dir=self.cfg.OUTPUT_DIR,
                config=config_dict(self.cfg),
            ))
        return writers
