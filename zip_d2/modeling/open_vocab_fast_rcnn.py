"""Fast R-CNN output layers whose classifier is a ZeroShotClassifier over CLIP text embeddings.

A drop-in replacement for detectron2's ``FastRCNNOutputLayers`` (same ``forward``/``losses``/
``inference`` interface, so Standard and Cascade RoI heads use it unchanged), with:

- class-agnostic box regression (the number of classes changes with the vocabulary);
- a training vocabulary (its size defines the background label) and a test vocabulary that can
  be swapped at any time with :meth:`set_test_vocabulary`;
- optional weighting of each foreground RoI's classification loss by the ``score`` of the
  pseudo-label it matched (``gt_scores``, put there by ``zip_d2.data.mapper.ScoredDatasetMapper``).
"""
from typing import List, Optional

import torch
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, _log_classification_stats
from detectron2.structures import Instances

from zip_d2.text import TextEmbeddings

from .zero_shot_classifier import ZeroShotClassifier

__all__ = ["OpenVocabOutputLayers", "multiply_proposal_scores"]

# The CLIP model name travels in checkpoints as a fixed-size byte tensor (checkpointers accept
# only tensors), so a head trained in one text space refuses to load into another.
_NAME_BYTES = 64


def _encode_name(name: str) -> torch.Tensor:
    data = name.encode("utf-8")
    if len(data) > _NAME_BYTES:
        raise ValueError(f"CLIP model name {name!r} is longer than {_NAME_BYTES} bytes.")
    code = torch.zeros(_NAME_BYTES, dtype=torch.uint8)
    code[: len(data)] = torch.tensor(list(data), dtype=torch.uint8)
    return code


def _decode_name(code: torch.Tensor) -> str:
    return bytes(code.cpu().tolist()).rstrip(b"\0").decode("utf-8")


def multiply_proposal_scores(scores: List[torch.Tensor], proposals: List[Instances]):
    """Per image, (Ri, C + 1) class probabilities -> sqrt(p * sigmoid(objectness_logits))."""
    return [
        (s * p.objectness_logits.sigmoid()[:, None]).sqrt() for s, p in zip(scores, proposals)
    ]


class OpenVocabOutputLayers(FastRCNNOutputLayers):
    """Box predictor scoring RoIs against text embeddings; see the module docstring.

    Args (beyond ``FastRCNNOutputLayers``'s):
        train_embeddings: TextEmbeddings of the training classes, in dataset class order.
        test_embeddings: TextEmbeddings scored in eval mode (None = the training ones).
        clip_model: the CLIP text model this head's projection is trained for; embeddings from
            another model, and checkpoints of a head trained for another, are rejected
            (ValueError). The name is saved in checkpoints (buffer ``clip_model_code``).
        temperature, use_bias, background: see :class:`ZeroShotClassifier`.
        score_weighted_loss: weight each foreground RoI's cross-entropy by its matched
            annotation's ``gt_scores``; background RoIs keep weight 1.
        mult_proposal_score: at inference, class probability = sqrt(p * sigmoid(proposal
            objectness)), CenterNet2's two-stage score (for proposal generators with calibrated
            objectness).
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        train_embeddings: TextEmbeddings,
        test_embeddings: Optional[TextEmbeddings] = None,
        clip_model: str,
        temperature: float = 50.0,
        use_bias: bool = False,
        background: str = "zero",
        score_weighted_loss: bool = False,
        mult_proposal_score: bool = False,
        **kwargs,
    ):
        if kwargs.pop("use_sigmoid_ce", False) or kwargs.pop("use_fed_loss", False):
            raise ValueError("Open-vocabulary head supports softmax cross-entropy only.")
        if "num_classes" in kwargs and kwargs["num_classes"] != len(train_embeddings.class_names):
            raise ValueError(
                f"num_classes={kwargs['num_classes']} but the training vocabulary has "
                f"{len(train_embeddings.class_names)} classes."
            )
        kwargs["num_classes"] = len(train_embeddings.class_names)
        kwargs["cls_agnostic_bbox_reg"] = True
        super().__init__(input_shape, **kwargs)
        self.clip_model = clip_model
        train_embeddings.check_compatible(clip_model)
        self.register_buffer("clip_model_code", _encode_name(clip_model))
        input_size = self.cls_score.in_features
        self.cls_score = ZeroShotClassifier(
            input_size,
            train_embeddings.embeddings,
            temperature=temperature,
            use_bias=use_bias,
            background=background,
        )
        self.train_class_names = list(train_embeddings.class_names)
        self.score_weighted_loss = score_weighted_loss
        self.mult_proposal_score = mult_proposal_score
        self.register_buffer("test_text_embeddings", None, persistent=False)
        self.test_class_names = self.train_class_names
        self.set_test_vocabulary(test_embeddings or train_embeddings)

    @classmethod
    def from_config(cls, cfg, input_shape, *, train_embeddings, test_embeddings=None, **overrides):
        ov = cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB
        ret = super().from_config(cfg, input_shape)
        ret.pop("get_fed_loss_cls_weights")
        # The vocabulary sets the number of classes. vocabulary.train_text_embeddings checks it
        # against MODEL.ROI_HEADS.NUM_CLASSES for training; a model built for inference only
        # scores the test vocabulary, whatever NUM_CLASSES says.
        ret.pop("num_classes")
        ret.update(
            {
                "train_embeddings": train_embeddings,
                "test_embeddings": test_embeddings,
                "clip_model": ov.CLIP_MODEL,
                "temperature": ov.TEMPERATURE,
                "use_bias": ov.USE_BIAS,
                "background": ov.BACKGROUND,
                "score_weighted_loss": ov.SCORE_WEIGHTED_LOSS,
            }
        )
        ret.update(overrides)
        return ret

    def set_test_vocabulary(self, embeddings: TextEmbeddings) -> None:
        """Score ``embeddings``' classes in eval mode from now on (no retraining).

        Raises ValueError if they come from another CLIP model or have another dimension.
        """
        embeddings.check_compatible(self.clip_model)
        if embeddings.embeddings.shape[1] != self.cls_score.embed_dim:
            raise ValueError(
                f"Test embeddings have dimension {embeddings.embeddings.shape[1]}, the head "
                f"projects to {self.cls_score.embed_dim}."
            )
        device = self.cls_score.linear.weight.device
        self.test_text_embeddings = F.normalize(embeddings.embeddings.float(), dim=1).to(device)
        self.test_class_names = list(embeddings.class_names)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "clip_model_code"
        if key in state_dict:
            trained_with = _decode_name(state_dict[key])
            if trained_with != self.clip_model:
                raise ValueError(
                    f"This checkpoint's open-vocabulary head was trained on CLIP '{trained_with}' "
                    f"text embeddings, but MODEL.ROI_BOX_HEAD.OPEN_VOCAB.CLIP_MODEL is "
                    f"'{self.clip_model}'; its scores would be meaningless."
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def num_test_classes(self) -> int:
        return len(self.test_class_names)

    def predict_probs(self, predictions, proposals: List[Instances]):
        probs = super().predict_probs(predictions, proposals)
        return multiply_proposal_scores(probs, proposals) if self.mult_proposal_score else probs

    def forward(self, x):
        """(R, ...) RoI features -> ((R, C + 1) logits, (R, 4) class-agnostic deltas).

        C is the training vocabulary's size in training mode and the test vocabulary's in eval.
        """
        if x.dim() > 2:
            x = torch.flatten(x, start_dim=1)
        embeddings = None if self.training else self.test_text_embeddings
        return self.cls_score(x, embeddings), self.bbox_pred(x)

    def losses(self, predictions, proposals: List[Instances]):
        if not self.score_weighted_loss:
            return super().losses(predictions, proposals)
        scores, proposal_deltas = predictions
        gt_classes = (
            cat([p.gt_classes for p in proposals], dim=0) if len(proposals) else torch.empty(0)
        )
        _log_classification_stats(scores, gt_classes)
        weights = self._classification_weights(proposals, gt_classes, scores)
        per_roi = F.cross_entropy(scores, gt_classes.long(), reduction="none", ignore_index=-1)
        loss_cls = (per_roi * weights).sum() / max(gt_classes.numel(), 1)

        proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        gt_boxes = cat(
            [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals],
            dim=0,
        )
        losses = {
            "loss_cls": loss_cls,
            "loss_box_reg": self.box_reg_loss(
                proposal_boxes, gt_boxes, proposal_deltas, gt_classes
            ),
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    def _classification_weights(self, proposals, gt_classes, scores):
        """(R,) weight per RoI: the matched annotation's score for foreground, 1 otherwise."""
        weights = scores.new_ones(gt_classes.shape[0])
        if not len(proposals):
            return weights
        parts = []
        for p in proposals:
            if p.has("gt_scores"):
                parts.append(p.gt_scores.to(scores.dtype))
            elif p.has("gt_boxes"):
                raise ValueError(
                    "SCORE_WEIGHTED_LOSS is on but the annotations carry no gt_scores; train "
                    "with zip_d2.data.mapper.ScoredDatasetMapper."
                )
            else:
                # An image without annotations has no gt_* fields: all its RoIs are background.
                parts.append(scores.new_ones(len(p)))
        matched = cat(parts, dim=0)
        foreground = (gt_classes >= 0) & (gt_classes < self.num_classes)
        return torch.where(foreground, matched, weights)
