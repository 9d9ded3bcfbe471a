"""Self-training rounds (CutLER recipe): predict -> merge -> validate -> register -> train.

Layout of one run (``output_dir``)::

    round0/                 round-0 training on the initial pseudo-labels (skipped if a
                            trained checkpoint is given); DropLoss optional
    round1/predictions.json the round-0 detector's predictions on the image set (COCO results)
    round1/labels.json      round-1 pseudo-labels (validated; ``info.self_training`` names the
                            parent labels, the checkpoint and the thresholds)
    round1/model_final.pth  round-1 detector, initialised from round 0's
    ...
    roundK/log.txt          that round's log (detectron2's format)
    self_train.json         the run's inputs and a per-round summary, rewritten after every step
                            (no NaN: null)

Every step's output is written atomically and a finished step is never redone, so rerunning the
same command after an interruption continues where it stopped: at the first round without
labels, or inside a round's training from its ``last_checkpoint`` (detectron2's resume). Only
the same inputs resume a run: ``self_train.json`` records them (the merged config, the initial
labels and round-0 checkpoint with their content fingerprints, the image root) before any work,
and once a round holds work (a checkpoint, predictions or labels) a rerun with other inputs is
refused in one line unless ``overwrite`` starts over; every check that can run before round 0
runs in the launching process (:meth:`SelfTrainingRun.preflight`), so a refused run writes
nothing. More ``rounds`` than before simply continue. A round's training counts as finished
once detectron2 has tagged ``model_final.pth`` as its ``last_checkpoint`` (the tag is written
after the file, so a file cut short by a kill is not taken for a finished round).

Runs in one process, or in every process of detectron2's ``launch`` (``tools/self_train.py
--num-gpus N``, on GPUs or CPU processes): each round trains data-parallel on all processes,
predicts on a shard of the images per process, and the main process gathers the predictions,
merges and writes the labels; what is finished is decided on the main process and shared, so
all processes take the same steps. ``output_dir`` must be on a filesystem every process sees.
"""
import hashlib
import logging
import os
import re
import shutil

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.utils import comm

from ..config import SetupError, setup_cfg
from ..data.coco_json import DatasetError, load_json, write_json_atomic
from ..data.fingerprint import file_fingerprint
from ..data.paths import refuse_overwriting_inputs
from ..data.register import check_datasets, register_from_cfg
from ..data.validate import validate_coco
from ..engine import Trainer
from ..engine.class_names import (
    checkpoint_class_names,
    class_index,
    head_class_names,
    to_dataset_classes,
)
from ..engine.distributed import run_on_main
from ..engine.setup import preflight
from ..engine.train import droploss_opts, final_checkpoint, is_finished, train_detector
from .merge import merge_round_labels
from .report import round_log_file, without_nan

__all__ = ["SelfTrainingRun", "round_threshold", "predict_dataset", "build_round_labels"]

logger = logging.getLogger(__name__)


def _listdir(folder):
    return os.listdir(folder) if os.path.isdir(folder) else []


def _difference(key, was, now):
    """One line saying how a recorded input differs from the given one."""
    if key == "config":
        return "the merged config (--config-file, its bases, overrides, datasets) differs"
    if isinstance(was, dict) and isinstance(now, dict) and was.get("path") == now.get("path"):
        return f"{key} {now['path']} has changed since (content fingerprint differs)"
    describe = {k: (v.get("path") if isinstance(v, dict) else v) for k, v in (("was", was),
                                                                               ("now", now))}
    return f"{key} was {describe['was']}, now {describe['now']}"


def round_threshold(thresholds, k):
    """Score threshold of round ``k`` (1-based); the last value repeats for later rounds."""
    if k < 1 or not thresholds:
        raise ValueError(f"round must be >= 1 and thresholds non-empty (k={k}, {thresholds})")
    return float(thresholds[min(k, len(thresholds)) - 1])


@torch.no_grad()
def predict_dataset(cfg, weights, dataset_name):
    """COCO results (dataset category ids, RLE masks) of the model at ``weights`` on a dataset.

    The model's classes (recorded in ``weights``; an open-vocabulary model's test vocabulary)
    are matched to the dataset's by name: a prediction of class "cat" gets the dataset's id of
    "cat", whatever index either gives it; classes the dataset lacks are not predicted.
    SetupError if the dataset has a class the model does not know.

    With several processes, each predicts its shard of the images (detectron2's test loader
    shards by rank) and the main process gathers them.

    Returns:
        list[dict] on the main process: the results ordered by image id, each image's in the
        model's order (the same list whatever the number of processes); None on the others.
    """
    if not cfg.MODEL.MASK_ON:
        raise ValueError("self-training merges masks: the config needs MODEL.MASK_ON True")
    model = Trainer.build_model(cfg)
    DetectionCheckpointer(model).load(weights)
    model.eval()
    names = head_class_names(model)
    index = class_index(names or checkpoint_class_names(weights), dataset_name,
                        "the test vocabulary" if names else weights,
                        num_classes=cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    model = to_dataset_classes(model, index)
    meta = MetadataCatalog.get(dataset_name)
    to_dataset_id = {v: k for k, v in meta.thing_dataset_id_to_contiguous_id.items()}
    results = []
    for inputs in build_detection_test_loader(cfg, dataset_name):
        for inp, out in zip(inputs, model(inputs)):
            for r in instances_to_coco_json(out["instances"].to("cpu"), inp["image_id"]):
                r["category_id"] = to_dataset_id[r["category_id"]]
                results.append(r)
    shards = comm.gather(results, dst=0)
    if not comm.is_main_process():
        return None
    # A stable sort keeps each image's predictions in the model's order.
    return sorted((r for shard in shards for r in shard), key=lambda r: r["image_id"])


def build_round_labels(parent_json, predictions, k, checkpoint, score_threshold,
                       keep_old_max_iou):
    """Round-``k`` COCO data from the parent labels file and the predictions, validated."""
    parent = load_json(parent_json)
    annotations, stats = merge_round_labels(parent, predictions, score_threshold,
                                            keep_old_max_iou)
    stats["parent_annotations"] = len(parent["annotations"])
    parent_info = parent.get("info", {})
    info = {
        "description": f"zip_d2 self-training round {k} pseudo-labels (CutLER rule)",
        "self_training": {
            "round": k,
            "parent_labels": os.path.abspath(parent_json),
            "checkpoint": os.path.abspath(checkpoint),
            "score_threshold": score_threshold,
            "keep_old_max_iou": keep_old_max_iou,
            **stats,
        },
        # Simulated labels stay labelled as simulated through every round.
        "simulated": bool(parent_info.get("simulated", False)),
        "parent_info": parent_info,
    }
    data = {"info": info, "images": parent["images"], "annotations": annotations,
            "categories": parent["categories"]}
    problems = validate_coco(data, check_segmentations=True)
    if problems:
        raise DatasetError(f"round-{k} labels are invalid: {problems[0]}")
    if not annotations:
        raise DatasetError(f"round-{k} labels are empty: no prediction scored >= "
                           f"{score_threshold} and no old label survived; lower the threshold")
    return data


class SelfTrainingRun:
    """One self-training run; see the module docstring for its layout and resume behaviour.

    Args:
        config_file (str): detector config (must have MASK_ON).
        labels_json (str): initial (round-0) pseudo-labels, COCO JSON; its images are the set
            predicted on in every round.
        image_root (str): directory of those images.
        output_dir (str): where rounds are written.
        rounds (int): number of self-training rounds after round 0.
        weights (str or None): a trained round-0 checkpoint; None = train round 0 here.
        droploss (bool): train round 0 with DropLoss.
        opts (list[str]): KEY VALUE overrides applied to every round.
        register (list): extra [name, json, image_root] datasets (e.g. a test set).
        overwrite (bool): start over in an ``output_dir`` that holds a run with other inputs
            (its rounds are deleted when :meth:`run` starts); without it such a directory is
            refused here, before any work.

    Raises:
        ValueError: a missing input, or ``output_dir`` holds a run with other inputs.
    """

    def __init__(self, config_file, labels_json, image_root, output_dir, rounds, weights=None,
                 droploss=False, opts=(), register=(), overwrite=False):
        if rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {rounds}")
        if os.path.exists(output_dir) and not os.path.isdir(output_dir):
            raise ValueError(f"--output-dir {output_dir} is a file, not a folder; give a folder "
                             "(it is created if missing)")
        if weights and not os.path.isfile(weights):
            raise ValueError(f"round-0 checkpoint not found: {weights}")
        if not os.path.isfile(labels_json):
            raise ValueError(f"pseudo-label file not found: {labels_json}")
        self.config_file, self.rounds, self.droploss = config_file, rounds, droploss
        self.labels_json = os.path.abspath(labels_json)
        self.image_root = os.path.abspath(image_root)
        self.output_dir = os.path.abspath(output_dir)
        self.weights = os.path.abspath(weights) if weights else None
        self.opts, self.register = list(opts), [list(r) for r in register]
        # Dataset names are unique per output directory so two runs in one process never clash.
        self.tag = hashlib.sha1(self.output_dir.encode()).hexdigest()[:8]
        self.base_cfg = setup_cfg(config_file, self.opts, self.register)
        self.summary_path = os.path.join(self.output_dir, "self_train.json")
        self._refuse_writing_over_inputs()
        self.overwrite = overwrite
        # Set by preflight(): round 0's training set and config were checked (not again).
        self.round0_checked = False
        self.inputs = self._inputs()
        if overwrite:
            self._check_inputs_survive_start_over()
        else:
            self._check_recorded_inputs()

    def _inputs(self):
        """What decides this run's rounds; a rerun in the same output_dir must match it."""
        def file(path):
            return {"path": path, **file_fingerprint(path)} if path else None

        return {
            # The merged config (file, its _BASE_s, overrides, registered datasets).
            "config": hashlib.sha256(self.base_cfg.dump().encode()).hexdigest(),
            "labels": file(self.labels_json),
            "image_root": self.image_root,
            "weights": file(self.weights),
            "droploss_round0": self.droploss,
        }

    def _check_recorded_inputs(self):
        """Raise ValueError (one line) if ``output_dir`` holds a run with other inputs."""
        refuse = ("; pass --overwrite to start over (deletes its rounds), or choose another "
                  "--output-dir")
        if not self._work_done():
            return  # a refused or stopped run made nothing to resume: it binds nothing
        if not os.path.isfile(self.summary_path):
            rounds = [os.path.basename(folder) for folder in self._old_rounds()]
            if rounds:
                raise ValueError(f"{self.output_dir} holds {', '.join(rounds)} of a "
                                 f"self-training run with no record of its inputs{refuse}")
            return
        recorded = load_json(self.summary_path).get("inputs")
        if recorded is None:
            raise ValueError(f"{self.output_dir} holds a self-training run with no record of its "
                             f"inputs (an older zip_d2 wrote it){refuse}")
        for key, now in self.inputs.items():
            was = recorded.get(key)
            if was != now:
                raise ValueError(f"{self.output_dir} holds a self-training run with other inputs "
                                 f"({_difference(key, was, now)}){refuse}")

    def _refuse_writing_over_inputs(self):
        """OverwriteError if a file a round writes (or the summary) is one of the run's inputs."""
        outputs = [self.summary_path]
        for k in range(0 if self.weights is None else 1, self.rounds + 1):
            outputs += [os.path.join(self.round_dir(k), name)
                        for name in ("labels.json", "predictions.json", "model_final.pth")]
        refuse_overwriting_inputs(
            [("--output-dir", path) for path in outputs],
            [("--labels", self.labels_json), ("--weights", self.weights),
             ("--config-file", self.config_file),
             *(("--register-dataset", r[1]) for r in self.register if len(r) > 1)])

    def _work_done(self):
        """Whether an earlier run here made anything a rerun would resume: a checkpoint,
        predictions or labels in a round folder (not only logs and configs)."""
        for folder in self._old_rounds():
            for name in _listdir(folder):
                if name.endswith(".pth") or name in ("last_checkpoint", "predictions.json",
                                                     "labels.json"):
                    return True
        return False

    def _old_rounds(self):
        """The round folders an earlier run left in output_dir (what starting over deletes)."""
        return [os.path.join(self.output_dir, n) for n in sorted(_listdir(self.output_dir))
                if re.fullmatch(r"round\d+", n)]

    def _check_inputs_survive_start_over(self):
        for what, path in (("--labels", self.labels_json), ("--weights", self.weights)):
            for folder in self._old_rounds():
                if path and os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep):
                    raise ValueError(f"{what} {path} lies in {folder}, which --overwrite would "
                                     "delete; copy it elsewhere first, or choose another "
                                     "--output-dir")

    def _start_over(self):
        """Delete what an earlier run wrote here: its round folders and self_train.json."""
        for folder in self._old_rounds():
            logger.warning("--overwrite: deleting %s", folder)
            shutil.rmtree(folder)
        if os.path.isfile(self.summary_path):
            os.remove(self.summary_path)

    def dataset_name(self, k):
        return f"selftrain_{self.tag}_round{k}"

    def round_dir(self, k):
        return os.path.join(self.output_dir, f"round{k}")

    def labels_path(self, k):
        return self.labels_json if k == 0 else os.path.join(self.round_dir(k), "labels.json")

    def checkpoint(self, k):
        if k == 0 and self.weights:
            return self.weights
        return final_checkpoint(self.round_dir(k))

    def round_cfg(self, k, weights=None):
        """Round ``k``'s training config; ``weights`` replaces its MODEL.WEIGHTS (to predict
        with a trained checkpoint)."""
        opts = self.opts + [
            "DATASETS.TRAIN", f"('{self.dataset_name(k)}',)",
            "OUTPUT_DIR", self.round_dir(k),
        ]
        if weights:
            opts += ["MODEL.WEIGHTS", weights]
        elif k > 0:
            opts += ["MODEL.WEIGHTS", self.checkpoint(k - 1)]
        elif self.droploss:
            opts += droploss_opts(self.base_cfg)
        register = self.register + [[self.dataset_name(k), self.labels_path(k), self.image_root]]
        return setup_cfg(self.config_file, opts, register)

    def preflight(self):
        """Every check that can run before round 0, in the launching process, so that a refused
        run writes nothing: the weights the run does not make itself (round 0's MODEL.WEIGHTS
        when round 0 is trained here, CLIP weights of open-vocabulary heads), the labels
        validated as a training set of this config (classes against MODEL.ROI_HEADS.NUM_CLASSES
        and the test sets, masks, schedule, a resumed round 0's architecture), and with
        ``weights`` the classes that checkpoint records against the labels' (matched by name).

        Raises:
            SetupError, DatasetError: one line naming the file and the fix.
        """
        if self.weights:
            # Round 1 trains on the labels from these weights, which predict on the labels' images.
            cfg = self.round_cfg(0, weights=self.weights)
            preflight(cfg, train=True, resume=False)
            recorded = checkpoint_class_names(self.weights)
            num = cfg.MODEL.ROI_HEADS.NUM_CLASSES
            if recorded is not None and len(recorded) != num:
                raise SetupError(f"--weights {self.weights} was trained on {len(recorded)} classes "
                                 f"{recorded} but MODEL.ROI_HEADS.NUM_CLASSES is {num}; set "
                                 f"MODEL.ROI_HEADS.NUM_CLASSES {len(recorded)}")
            class_index(recorded, self.dataset_name(0), self.weights, num_classes=num)
        else:
            # --overwrite deletes round 0: nothing of it is resumed.
            preflight(self.round_cfg(0), train=True, resume=not self.overwrite)
        self.round0_checked = True

    def run(self):
        """Run (or resume) round 0 and ``rounds`` self-training rounds; return the summary.

        Call it in every process of a launch (or in the only one); every process returns the
        summary, which the main process writes after each step.
        """
        summary = run_on_main(self._start_summary)
        if self.weights:
            logger.info("round 0: using the given checkpoint %s", self.weights)
            summary["round_info"]["0"] = {"checkpoint": self.weights, "trained_here": False}
        else:
            with round_log_file(self.round_dir(0)):
                # update, not replace: a resumed run keeps what it recorded (AP, label count)
                summary["round_info"].setdefault("0", {}).update(self._train(0))
        self._save(summary)
        thresholds = list(self.base_cfg.ZIP.SELF_TRAIN.SCORE_THRESHOLDS)
        keep_iou = float(self.base_cfg.ZIP.SELF_TRAIN.KEEP_OLD_MAX_IOU)
        for k in range(1, self.rounds + 1):
            info = summary["round_info"].setdefault(str(k), {})
            with round_log_file(self.round_dir(k)):
                if not run_on_main(os.path.isfile, self.labels_path(k)):
                    info.update(self._make_labels(k, round_threshold(thresholds, k), keep_iou))
                    self._save(summary)
                else:
                    logger.info("round %d: labels exist, not redone: %s", k, self.labels_path(k))
                info.update(self._train(k))
            self._save(summary)
        round0 = summary["round_info"]["0"]
        if round0.get("trained_here") and "num_annotations" not in round0:
            # Round 1 counted round 0's labels when it merged them; else count them here.
            round0["num_annotations"] = summary["round_info"].get("1", {}).get(
                "labels_in", None) or run_on_main(
                    lambda: len(load_json(self.labels_json)["annotations"]))
            self._save(summary)
        return summary

    def _start_summary(self):
        """Main process: start over if asked, then record the inputs before any work (so a run
        killed inside round 0 is still recognised); returns the summary."""
        if self.overwrite:
            self._start_over()
        os.makedirs(self.output_dir, exist_ok=True)
        summary = load_json(self.summary_path) if os.path.isfile(self.summary_path) else {}
        summary.update({"config_file": os.path.abspath(self.config_file), "opts": self.opts,
                        "initial_labels": self.labels_json, "image_root": self.image_root,
                        "rounds": self.rounds, "droploss_round0": self.droploss,
                        "inputs": self.inputs})
        summary.setdefault("round_info", {})
        write_json_atomic(without_nan(summary), self.summary_path)
        return summary

    def _save(self, summary):
        run_on_main(write_json_atomic, without_nan(summary), self.summary_path)

    def _make_labels(self, k, threshold, keep_iou):
        parent_cfg = self.round_cfg(k - 1, weights=self.checkpoint(k - 1))
        self._prepare(parent_cfg, train=False, predict_on=self.dataset_name(k - 1))
        preds_path = os.path.join(self.round_dir(k), "predictions.json")
        predictions = None
        if not run_on_main(os.path.isfile, preds_path):
            logger.info("round %d: predicting with %s on %s", k, self.checkpoint(k - 1),
                        self.labels_path(k - 1))
            # Every process predicts its shard; the main process gets them all.
            predictions = predict_dataset(parent_cfg, self.checkpoint(k - 1),
                                          self.dataset_name(k - 1))
        return run_on_main(self._write_labels, k, threshold, keep_iou, preds_path, predictions)

    def _write_labels(self, k, threshold, keep_iou, preds_path, predictions):
        """Main process: save the predictions (or read saved ones), merge, write the labels."""
        os.makedirs(self.round_dir(k), exist_ok=True)
        if predictions is None:
            predictions = load_json(preds_path)
        else:
            write_json_atomic(predictions, preds_path)
        data = build_round_labels(self.labels_path(k - 1), predictions, k, self.checkpoint(k - 1),
                                  threshold, keep_iou)
        write_json_atomic(data, self.labels_path(k))
        stats = data["info"]["self_training"]
        logger.info("round %d labels: %d predictions >= %.2f kept, %d old labels kept, "
                    "%d replaced -> %s", k, stats["predictions_kept"], threshold,
                    stats["old_kept"], stats["old_replaced"], self.labels_path(k))
        return {"labels": self.labels_path(k), "score_threshold": threshold,
                "num_annotations": len(data["annotations"]),
                "labels_in": stats["parent_annotations"], "old_kept": stats["old_kept"],
                "old_replaced": stats["old_replaced"],
                "predictions_added": stats["predictions_kept"]}

    def _prepare(self, cfg, train, resume=False, predict_on=None, checked=False):
        """Register the config's datasets in this process; check them (unless ``checked``
        already) and the dataset ``predict_on``, if given, once, on the main process."""
        register_from_cfg(cfg)
        if not checked:
            run_on_main(preflight, cfg, train=train, resume=resume)
        if predict_on:
            run_on_main(check_datasets, cfg, [predict_on])

    def _train(self, k):
        final = self.checkpoint(k)
        if run_on_main(is_finished, self.round_dir(k)):
            logger.info("round %d: %s exists, training not redone", k, final)
            return {"checkpoint": final, "trained_here": True}
        cfg = self.round_cfg(k)
        self._prepare(cfg, train=True, resume=True, checked=k == 0 and self.round0_checked)
        # resume=True continues from round k's last_checkpoint if an earlier run was cut off;
        # otherwise it loads MODEL.WEIGHTS (the previous round's detector).
        results = train_detector(cfg, resume=True, seed=cfg.SEED if cfg.SEED < 0 else cfg.SEED + k,
                                 name=f"round {k}")
        result = {"checkpoint": final, "trained_here": True}
        if results:
            result["eval"] = {task: dict(v) for task, v in results.items()}
        return result
