"""Detectron2 extensions of zip_d2, registered on import.

- ``OpenVocabROIHeads`` / ``OpenVocabCascadeROIHeads`` (ROI_HEADS_REGISTRY): RoI heads whose
  classifier is cosine similarity to frozen CLIP text embeddings (``zero_shot_classifier``,
  ``open_vocab_fast_rcnn``, ``vocabulary``).
- ``CenterNetProposalGenerator`` (PROPOSAL_GENERATOR_REGISTRY): CenterNet2's first stage.
"""
from . import (  # noqa: F401  (imported for their registrations)
    centernet,
    droploss,  # noqa: F401  (registers the DropLoss RoI heads)
    roi_heads,
)
from .centernet import CenterNetProposalGenerator
from .open_vocab_fast_rcnn import OpenVocabOutputLayers
from .roi_heads import OpenVocabCascadeROIHeads, OpenVocabROIHeads, set_test_vocabulary
from .zero_shot_classifier import ZeroShotClassifier

__all__ = [
    "CenterNetProposalGenerator",
    "OpenVocabCascadeROIHeads",
    "OpenVocabOutputLayers",
    "OpenVocabROIHeads",
    "ZeroShotClassifier",
    "set_test_vocabulary",
]
