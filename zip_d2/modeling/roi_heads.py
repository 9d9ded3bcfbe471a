"""Standard and Cascade RoI heads with the open-vocabulary box predictor, registered in detectron2.

Select with ``MODEL.ROI_HEADS.NAME: OpenVocabROIHeads`` (Mask R-CNN) or
``OpenVocabCascadeROIHeads`` (Cascade R-CNN, CenterNet2's second stage). Everything except the
box predictor is detectron2's: pooling, box head, sampling, mask head. Masks must be
class-agnostic (``ROI_MASK_HEAD.CLS_AGNOSTIC_MASK``), because test classes need not be training
classes.
"""
from typing import List

import torch

from detectron2.config import configurable
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, CascadeROIHeads, StandardROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.structures import Instances, pairwise_iou

from .open_vocab_fast_rcnn import OpenVocabOutputLayers, multiply_proposal_scores
from .vocabulary import test_text_embeddings, train_text_embeddings

__all__ = ["OpenVocabROIHeads", "OpenVocabCascadeROIHeads", "set_test_vocabulary"]


def _check_class_agnostic(cfg):
    if cfg.MODEL.MASK_ON and not cfg.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK:
        raise ValueError(
            "Open-vocabulary RoI heads need MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK True: a mask per "
            "training class cannot serve a test vocabulary."
        )


def _mult_proposal_score(cfg) -> bool:
    return (
        cfg.MODEL.PROPOSAL_GENERATOR.NAME == "CenterNetProposalGenerator"
        and cfg.MODEL.CENTERNET.MULT_PROPOSAL_SCORE
    )


def set_test_vocabulary(roi_heads, embeddings) -> None:
    """Swap the vocabulary scored at inference in every predictor of ``roi_heads``.

    ``embeddings`` is a ``zip_d2.text.TextEmbeddings``; ValueError if it comes from another CLIP.
    """
    predictors = roi_heads.box_predictor
    if not isinstance(predictors, torch.nn.ModuleList):
        predictors = [predictors]
    for predictor in predictors:
        if not isinstance(predictor, OpenVocabOutputLayers):
            raise TypeError(f"{type(roi_heads).__name__} has no open-vocabulary predictor.")
        predictor.set_test_vocabulary(embeddings)


@ROI_HEADS_REGISTRY.register()
class OpenVocabROIHeads(StandardROIHeads):
    """detectron2's StandardROIHeads with :class:`OpenVocabOutputLayers` as box predictor."""

    # The marker ``vocabulary.uses_open_vocab_heads`` reads (it does not import the heads).
    open_vocabulary = True

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        _check_class_agnostic(cfg)
        ret = super()._init_box_head(cfg, input_shape)
        train_emb = train_text_embeddings(cfg)
        ret["box_predictor"] = OpenVocabOutputLayers(
            cfg,
            ret["box_head"].output_shape,
            train_embeddings=train_emb,
            test_embeddings=test_text_embeddings(cfg, train_emb),
            mult_proposal_score=_mult_proposal_score(cfg),
        )
        return ret

    def set_test_vocabulary(self, embeddings) -> None:
        set_test_vocabulary(self, embeddings)


@ROI_HEADS_REGISTRY.register()
class OpenVocabCascadeROIHeads(CascadeROIHeads):
    """detectron2's CascadeROIHeads with one :class:`OpenVocabOutputLayers` per stage.

    All stages score against the same text embeddings (built once). Later stages' proposals carry
    the matched annotations' ``gt_scores``, so the score-weighted loss applies at every stage.
    With a CenterNet proposal generator and ``CENTERNET.MULT_PROPOSAL_SCORE``, the averaged
    class scores are multiplied by the proposal score (geometric mean), as in CenterNet2.
    """

    # The marker ``vocabulary.uses_open_vocab_heads`` reads (it does not import the heads).
    open_vocabulary = True

    @configurable
    def __init__(self, *, mult_proposal_score: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.mult_proposal_score = mult_proposal_score

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["mult_proposal_score"] = _mult_proposal_score(cfg)
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        _check_class_agnostic(cfg)
        ret = super()._init_box_head(cfg, input_shape)
        train_emb = train_text_embeddings(cfg)
        test_emb = test_text_embeddings(cfg, train_emb)
        ret["box_predictors"] = [
            OpenVocabOutputLayers(
                cfg,
                head.output_shape,
                box2box_transform=Box2BoxTransform(weights=weights),
                train_embeddings=train_emb,
                test_embeddings=test_emb,
            )
            for head, weights in zip(
                ret["box_heads"], cfg.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS
            )
        ]
        return ret

    def set_test_vocabulary(self, embeddings) -> None:
        set_test_vocabulary(self, embeddings)

    def _forward_box(self, features, proposals, targets=None):
        if self.training or not self.mult_proposal_score:
            return super()._forward_box(features, proposals, targets)
        # CascadeROIHeads' inference, plus CenterNet2's product of the stage-averaged class
        # scores with the first stage's proposal score (inference keeps every box, so stage k's
        # boxes stay aligned with the first stage's proposals).
        first_stage_proposals = proposals
        features = [features[f] for f in self.box_in_features]
        head_outputs = []
        prev_pred_boxes = None
        image_sizes = [x.image_size for x in proposals]
        for k in range(self.num_cascade_stages):
            if k > 0:
                proposals = self._create_proposals_from_boxes(prev_pred_boxes, image_sizes)
            predictions = self._run_stage(features, proposals, k)
            prev_pred_boxes = self.box_predictor[k].predict_boxes(predictions, proposals)
            head_outputs.append((self.box_predictor[k], predictions, proposals))

        scores_per_stage = [h[0].predict_probs(h[1], h[2]) for h in head_outputs]
        scores = [
            sum(list(scores_per_image)) * (1.0 / self.num_cascade_stages)
            for scores_per_image in zip(*scores_per_stage)
        ]
        scores = multiply_proposal_scores(scores, first_stage_proposals)
        predictor, predictions, last_proposals = head_outputs[-1]
        boxes = predictor.predict_boxes(predictions, last_proposals)
        pred_instances, _ = fast_rcnn_inference(
            boxes,
            scores,
            image_sizes,
            predictor.test_score_thresh,
            predictor.test_nms_thresh,
            predictor.test_topk_per_image,
        )
        return pred_instances

    @torch.no_grad()
    def _match_and_label_boxes(self, proposals: List[Instances], stage: int, targets):
        proposals = super()._match_and_label_boxes(proposals, stage, targets)
        # The parent sets only gt_classes/gt_boxes; gt_scores must follow the same match.
        for proposals_per_image, targets_per_image in zip(proposals, targets):
            if not targets_per_image.has("gt_scores") or len(targets_per_image) == 0:
                continue
            iou = pairwise_iou(targets_per_image.gt_boxes, proposals_per_image.proposal_boxes)
            matched_idxs, _ = self.proposal_matchers[stage](iou)
            proposals_per_image.gt_scores = targets_per_image.gt_scores[matched_idxs]
        return proposals
