"""The trainer behind tools/train_net.py and tools/self_train.py."""
import logging
import os
import weakref
from collections import OrderedDict

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import MetadataCatalog, build_detection_train_loader
from detectron2.engine import (
    AMPTrainer,
    DefaultTrainer,
    SimpleTrainer,
    TrainerBase,
    create_ddp_model,
)
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    inference_on_dataset,
    print_csv_format,
)
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.solver import get_default_optimizer_params
from detectron2.solver.build import maybe_add_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.events import EventStorage, JSONWriter, TensorboardXWriter
from detectron2.utils.logger import setup_logger

from ..data.mapper import ScoredDatasetMapper
from ..data.shared_dataset import shared_train_dataset
from ..evaluation import ClassAgnosticCOCOEvaluator, OVCOCOEvaluator
from .class_names import (
    CHECKPOINT_KEY,
    RecordedClassNames,
    class_index,
    head_class_names,
    to_dataset_classes,
    training_class_names,
)
from .distributed import ddp_device_ids
from .setup import check_optimizer, config_dict, inference_cfg
from .wandb_writer import WandbWriter

logger = logging.getLogger(__name__)


def _has_masks(meta) -> bool:
    """Whether a dataset registered by zip_d2 has a segmentation on any annotation (its JSON
    read as a stream up to the first one); True for any other dataset."""
    json_file = meta.get("json_file", None)
    if not (meta.get("zip_d2_registered", False) and json_file and os.path.isfile(json_file)):
        return True
    from ..data.coco_json import DatasetError
    from ..data.register import has_masks

    try:
        return has_masks(json_file)
    except DatasetError:
        return True  # the dataset checks report an unreadable file


class Trainer(DefaultTrainer):
    """DefaultTrainer plus COCO evaluation (class-aware, class-agnostic on request, base/novel
    AP50 on open-vocabulary test sets), an optional W&B writer beside Detectron2's metrics.json
    and TensorBoard writers, and data-parallel training on CPU processes as well as GPUs.

    With several processes (detectron2's ``launch``), every process trains a replica and
    evaluates a shard of each test set; rank 0 gathers the predictions, computes AP, and is the
    only one to write checkpoints, metrics.json, TensorBoard events and W&B logs.
    """

    def __init__(self, cfg):
        # DefaultTrainer.__init__ with one change: DDP gets device_ids=None for a CPU model.
        # Detectron2's create_ddp_model defaults device_ids to [local rank], which
        # DistributedDataParallel rejects for CPU parameters, so multi-process CPU training
        # (gloo, which detectron2's launch picks without a GPU) failed at construction.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = self.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False, device_ids=ddp_device_ids(cfg))
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(
            model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        # Every checkpoint records the training classes, so evaluation, self-training and the
        # demo can match its class indices to a dataset's by name (zip_d2.engine.class_names).
        checkpointables = {}
        names = training_class_names(cfg)
        if names is not None:
            checkpointables[CHECKPOINT_KEY] = RecordedClassNames(names, cfg.OUTPUT_DIR)
        self.checkpointer = DetectionCheckpointer(model, cfg.OUTPUT_DIR,
                                                  trainer=weakref.proxy(self), **checkpointables)
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_train_loader(cls, cfg):
        # Keep each pseudo-label's "score" on the training Instances (gt_scores) for the
        # score-weighted classification loss; otherwise identical to Detectron2's mapper.
        mapper = (ScoredDatasetMapper(cfg, True)
                  if cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.SCORE_WEIGHTED_LOSS else None)
        # The dataset dicts: one memory-mapped file per machine, built once and shared by every
        # local process (None: detectron2 loads them, in each process).
        return build_detection_train_loader(cfg, mapper=mapper,
                                            dataset=shared_train_dataset(cfg))

    @classmethod
    def build_optimizer(cls, cfg, model):
        # SGD is Detectron2's own; AdamW takes the same parameter groups (no weight decay on
        # norms per SOLVER.WEIGHT_DECAY_NORM) and the same optional gradient clipping.
        check_optimizer(cfg)  # SetupError, a ValueError
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
        meta = MetadataCatalog.get(dataset_name)
        tasks = {}  # detectron2's default: the tasks the predictions allow
        if cfg.MODEL.MASK_ON and not _has_masks(meta):
            # COCOeval's segm evaluation fails on ground truth without segmentations.
            logger.warning("dataset %r has no masks: evaluating boxes only", dataset_name)
            tasks = {"tasks": ("bbox",)}
        if meta.get("evaluator_type") == "ov_coco":
            # COCO AP plus box AP50 on base / novel / all classes (generalised setting).
            evaluators = [OVCOCOEvaluator(dataset_name, output_dir=output_folder, **tasks)]
        else:
            evaluators = [COCOEvaluator(dataset_name, output_dir=output_folder, **tasks)]
        if cfg.ZIP.EVAL.CLASS_AGNOSTIC:
            evaluators.append(ClassAgnosticCOCOEvaluator(dataset_name, **tasks))
        return DatasetEvaluators(evaluators)

    @classmethod
    def test(cls, cfg, model, evaluators=None, class_names=None):
        """Evaluate ``model`` on every DATASETS.TEST set, as DefaultTrainer.test does, with the
        model's classes matched to each dataset's by name (not by index).

        class_names: the model's classes in index order (e.g. recorded in its checkpoint);
            default: the training set's. An open-vocabulary model's are its test vocabulary.
            None and no training set: matched by position (weights that record no names).

        Raises:
            SetupError: a test set has a class the model does not know (one line).
        """
        if isinstance(evaluators, DatasetEvaluator):
            evaluators = [evaluators]
        if evaluators is not None and len(cfg.DATASETS.TEST) != len(evaluators):
            raise ValueError(f"{len(cfg.DATASETS.TEST)} test sets but {len(evaluators)} "
                             "evaluators")
        names, source = head_class_names(model), "the test vocabulary"
        if names is None:
            names, source = class_names, "the checkpoint"
        if names is None and cfg.DATASETS.TRAIN:
            names = training_class_names(cfg)
            source = f"the training set {cfg.DATASETS.TRAIN[0]!r}"
        results = OrderedDict()
        for idx, dataset_name in enumerate(cfg.DATASETS.TEST):
            index = class_index(names, dataset_name, source,
                                num_classes=cfg.MODEL.ROI_HEADS.NUM_CLASSES)
            data_loader = cls.build_test_loader(cfg, dataset_name)
            evaluator = (evaluators[idx] if evaluators is not None
                         else cls.build_evaluator(cfg, dataset_name))
            results[dataset_name] = inference_on_dataset(to_dataset_classes(model, index),
                                                         data_loader, evaluator)
            if comm.is_main_process():
                logger.info("Evaluation results for %s in csv format:", dataset_name)
                print_csv_format(results[dataset_name])
        return list(results.values())[0] if len(results) == 1 else results

    def build_writers(self):
        return super().build_writers() + _extra_writers(self.cfg)

    @classmethod
    def build_inference_model(cls, cfg, resume=False):
        """The model of ``--eval-only``: built for inference and loaded from
        ``MODEL.WEIGHTS`` (or OUTPUT_DIR's last checkpoint with ``resume``).

        Built from :func:`~zip_d2.engine.setup.inference_cfg` (DATASETS.TRAIN cleared), so an
        open-vocabulary head takes its vocabulary from the test set, not the training set.

        Returns:
            (model, iteration, class_names): the model in eval mode, the training iteration
            stored in the checkpoint (None for weights without one), and the classes it records
            (None for weights without them; pass them to :meth:`test`).
        """
        cfg = inference_cfg(cfg)
        model = cls.build_model(cfg)
        checkpoint = DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=resume)
        model.eval()
        names = checkpoint.get(CHECKPOINT_KEY)
        return model, checkpoint.get("iteration"), list(names) if names is not None else None

    @classmethod
    def write_eval_results(cls, cfg, results, iteration=None):
        """Write evaluation results as training does: one metrics.json record (keys
        ``<task>/<metric>``, e.g. ``bbox/AP50-novel``), TensorBoard scalars and W&B, at
        ``iteration`` (the checkpoint's; 0 when unknown). Main process only; others no-op."""
        if not comm.is_main_process() or not results:
            return
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        writers = [JSONWriter(os.path.join(cfg.OUTPUT_DIR, "metrics.json")),
                   TensorboardXWriter(cfg.OUTPUT_DIR)] + _extra_writers(cfg)
        with EventStorage(start_iter=iteration or 0) as storage:
            storage.put_scalars(**flatten_results_dict(results), smoothing_hint=False)
            for writer in writers:
                writer.write()
                writer.close()
        logger.info("evaluation results written to %s (iteration %s)",
                    os.path.join(cfg.OUTPUT_DIR, "metrics.json"), storage.iter)


def _extra_writers(cfg):
    """zip_d2's writers beside detectron2's: W&B when ``ZIP.WANDB.ENABLED``."""
    wandb_cfg = cfg.ZIP.WANDB
    if not wandb_cfg.ENABLED:
        return []
    return [WandbWriter(project=wandb_cfg.PROJECT, entity=wandb_cfg.ENTITY, name=wandb_cfg.NAME,
                        mode=wandb_cfg.MODE, output_dir=cfg.OUTPUT_DIR, config=config_dict(cfg))]
