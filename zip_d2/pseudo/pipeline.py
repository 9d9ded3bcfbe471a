"""The labelers: Zip, and the baselines it is compared with, behind one interface.

A labeler takes an (H, W, 3) uint8 RGB image (and optionally the classes known to be in it) and
returns a list of detections ``{"category", "score", "mask", "box"}``; it knows its
``categories`` and can ``describe()`` itself for the output's ``info`` block. Writing files is
the job's business, not the labeler's.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from typing import ClassVar, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from zip_d2.models import (
    ClipBundle,
    WeightSource,
    clip_weight_source,
    create_clip,
    create_sam,
    sam_weight_source,
)
from zip_d2.text import encode_text_ensemble, load_vocabulary

from . import clues, clusters, instances, masks
from .clues import ClipParams
from .clusters import BoundaryParams
from .instances import DiscoveryParams
from .masks import SamParams, ScoreParams
from .params import StageParams, setting

logger = logging.getLogger(__name__)

__all__ = ["ZipLabeler", "SamClipLabeler", "ZipInputs", "ZipPreprocess", "LabelerParams",
           "SamClipParams", "build_labeler", "check_config", "required_weights", "METHODS"]

_PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def _resolve_device(spec: str) -> torch.device:
    if not spec:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def _mask_activation(act_img: np.ndarray, class_of: np.ndarray, det_masks) -> np.ndarray:
    """Mean activation of each detection's class inside its mask. (N,) float.

    act_img: (C, H, W) float32; class_of: (N,) indices into it; det_masks: (N, H, W) bool numpy
    array, or a device tensor (the product then runs on the device).
    """
    n = len(class_of)
    if isinstance(det_masks, torch.Tensor):
        per_class = torch.as_tensor(act_img, device=det_masks.device)[torch.as_tensor(class_of)]
        flat = det_masks.reshape(n, -1).float()
        score = (per_class.reshape(n, -1) * flat).sum(dim=1) / flat.sum(dim=1).clamp_min(1)
        return score.cpu().numpy()
    per_class = act_img[class_of].reshape(n, -1)
    flat_masks = det_masks.reshape(n, -1)
    return (per_class * flat_masks).sum(1) / np.maximum(flat_masks.sum(1), 1)


def _kept_masks_to_host(det_masks, keep: np.ndarray) -> List[np.ndarray]:
    """The kept (H, W) bool masks as numpy arrays, with no per-mask copy.

    A device tensor leaves the GPU in one transfer, transposed there, so each mask arrives in
    the Fortran order that COCO run-length encoding reads (the writer thread then encodes it
    without a copy). A numpy array gives views.
    """
    if isinstance(det_masks, torch.Tensor):
        if len(keep) == 0:
            return []
        idx = torch.as_tensor(keep, device=det_masks.device)
        host = det_masks[idx].bool().transpose(1, 2).contiguous().cpu().numpy()
        return list(host.transpose(0, 2, 1))
    det_masks = np.asarray(det_masks, dtype=bool)
    return [det_masks[i] for i in keep]


@dataclass
class ZipInputs:
    """One image resized for each of Zip's models: (h, w, 3) uint8 RGB tensors, not yet
    normalised (the labeler does that on its device).

    clip: (INPUT_SIZE, INPUT_SIZE) surgery input; classify: (CLASSIFY_SIZE, CLASSIFY_SIZE)
    classification input, or None when the class token of ``clip`` is used; boundary: the
    boundary trunk's input (short side BOUNDARY.SHORT_SIDE).
    """

    clip: torch.Tensor
    classify: Optional[torch.Tensor]
    boundary: torch.Tensor


@dataclass(frozen=True)
class ZipPreprocess:
    """How an image becomes :class:`ZipInputs` (the sizes and the resize of PSEUDO.CLIP,
    PSEUDO.BOUNDARY and PSEUDO.RESIZE). Small and picklable: the job calls it in its loader
    workers when :attr:`worker_safe`, so the resizing stays off the labelling loop's thread.
    """

    input_size: int
    classify_size: int
    short_side: int
    size_rule: str = "truncate"
    resize: str = "pil"

    @classmethod
    def from_config(cls, p) -> "ZipPreprocess":
        """From ``cfg.PSEUDO``."""
        return cls(int(p.CLIP.INPUT_SIZE), int(p.CLIP.CLASSIFY_SIZE), int(p.BOUNDARY.SHORT_SIDE),
                   p.BOUNDARY.SIZE_RULE, p.RESIZE)

    @property
    def worker_safe(self) -> bool:
        """Whether it may run in forked loader workers: only PIL and numpy there (cv2's thread
        pool, inherited through fork, can deadlock a worker)."""
        return self.resize == "pil"

    def boundary_size(self, image_hw) -> tuple:
        """(h, w) of the boundary input for an image of size ``image_hw``."""
        return clusters.short_side_size(image_hw, self.short_side, self.size_rule)

    def __call__(self, image: np.ndarray) -> ZipInputs:
        """(H, W, 3) uint8 RGB -> :class:`ZipInputs`; each input is resized from the image
        itself, as the authors' transforms are."""
        def resized(size_hw):
            return clues.uint8_tensor(clues.resize_image(image, size_hw, self.resize))

        size = self.input_size
        small = self.classify_size
        return ZipInputs(
            clip=resized((size, size)),
            classify=resized((small, small)) if small and small != size else None,
            boundary=resized(self.boundary_size(image.shape[:2])),
        )


class _ClipLabelerBase:
    """What every labeler shares: vocabulary, the semantic CLIP, its text embeddings, scoring."""

    method = ""

    def __init__(self, cfg):
        p = cfg.PSEUDO
        self.cfg = cfg.clone()
        check_config(cfg)
        # Each stage's settings, built (and checked) once from their config sections.
        self.clip_params = ClipParams.from_config(p.CLIP)
        self.score_params = ScoreParams.from_config(p.SCORE)
        self.device = _resolve_device(p.DEVICE)
        self.precision = p.PRECISION if self.device.type == "cuda" else "fp32"
        self.autocast_dtype = _PRECISIONS[self.precision]
        if self.device.type == "cuda":
            # "Same seed, same output" on GPU: no autotuned, run-dependent convolution kernels.
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        self.class_agnostic = bool(p.CLASS_AGNOSTIC)
        self.vocabulary = load_vocabulary(p.VOCABULARY)
        self.class_names = [c["name"] for c in self.vocabulary]
        self._name_to_index = {n: i for i, n in enumerate(self.class_names)}
        self.categories = (
            [{"id": 1, "name": "object"}] if self.class_agnostic else list(self.vocabulary)
        )
        # Random-weight models are drawn from this seed, so a preset is reproducible.
        torch.manual_seed(p.SEED)
        self.clip = create_clip(p.CLIP.MODEL, p.CLIP.PRETRAINED, self.device,
                                random_weights=p.RANDOM_WEIGHTS, cache_dir=p.CACHE_DIR,
                                key="PSEUDO.CLIP.PRETRAINED")
        with torch.no_grad():
            self.text_embeddings = encode_text_ensemble(
                self.clip.model,
                self.clip.tokenizer,
                self.class_names,
                self.clip_params.templates,
                self.device,
            )
            # The "redundant feature" every prompt shares, removed from the dense similarity.
            self.empty_embedding = encode_text_ensemble(
                self.clip.model, self.clip.tokenizer, [""], self.clip_params.templates,
                self.device)[0]
        self.logit_scale = float(self.clip.model.logit_scale.exp().item())

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @staticmethod
    def _check_image(image: np.ndarray) -> None:
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
                and image.dtype == np.uint8):
            raise ValueError(
                "image must be an (H, W, 3) uint8 RGB numpy array, got "
                f"{getattr(image, 'shape', None)} {getattr(image, 'dtype', type(image))}."
            )

    def _candidates(self, classes: Optional[Sequence[str]]) -> np.ndarray:
        """Vocabulary indices the image is scored against. (K,) int64."""
        if classes is None:
            if not self.clip_params.classify:
                raise ValueError(
                    "PSEUDO.CLIP.CLASSIFY is False: pass the image's classes to the labeler."
                )
            return np.arange(len(self.class_names))
        unknown = [c for c in classes if c not in self._name_to_index]
        if unknown:
            raise ValueError(
                f"Classes not in the vocabulary ({self.cfg.PSEUDO.VOCABULARY}): {unknown}."
            )
        if not classes:
            return np.zeros((0,), np.int64)
        return np.array(sorted({self._name_to_index[c] for c in classes}), np.int64)

    def _finish(self, image_hw, det_masks, scores: np.ndarray, class_idx: np.ndarray,
                parts: Optional[tuple] = None) -> List[dict]:
        """Threshold, cross-class mask NMS, cap, boxes and formatting of one image's detections.

        det_masks: (N, H, W) bool, a numpy array or a tensor on the labeler's device: on a GPU,
        NMS and boxes run there and only the kept masks are copied to the host.
        scores: (N,) float; class_idx: (N,) int64 vocabulary indices.
        parts: None, or the score's factors (clip_score (N,), sam_score (N,)) that
        :func:`masks.combine_scores` made ``scores`` of; each detection then carries them,
        clipped to [0, 1] as the product uses them.
        """
        s = self.score_params
        H, W = image_hw
        keep, boxes = masks.select_masks(det_masks, scores, iou_threshold=s.nms_iou,
                                         max_keep=s.max_detections, min_score=s.min_score)
        kept = _kept_masks_to_host(det_masks, keep)
        names = ["object"] * len(keep) if self.class_agnostic else [
            self.class_names[int(class_idx[i])] for i in keep]
        out = []
        for j, i in enumerate(keep):
            out.append({"category": names[j], "score": float(np.clip(scores[i], 0.0, 1.0)),
                        "mask": kept[j],
                        "box": boxes[j].astype(np.float64).clip([0, 0, 0, 0], [W, H, W, H])})
            if parts is not None:
                out[-1].update(clip_score=float(np.clip(parts[0][i], 0.0, 1.0)),
                               sam_score=float(np.clip(parts[1][i], 0.0, 1.0)))
        return out

    # PSEUDO sections this labeler reads (so only they decide its labels); set per class.
    config_sections = ("CLIP", "SCORE")

    def _weights(self) -> dict:
        """{section: where its weights came from}, stable across machines."""
        return {"CLIP": self.clip.weights}

    def describe(self) -> dict:
        """Everything that decides this labeler's labels, as plain JSON values.

        Built from the config: PSEUDO's top-level keys and the sections this labeler reads, keys
        lower-cased, with what the config alone does not say (the method, the device and
        precision actually used, the number of classes, each model's weight source). Leaves out
        PSEUDO.CACHE_DIR (where weights are cached, not which weights).
        """
        p = self.cfg.PSEUDO
        out = {k.lower(): _plain(v) for k, v in p.items()
               if not isinstance(v, CfgNode) and k != "CACHE_DIR"}
        for section in self.config_sections:
            out[section.lower()] = {k.lower(): _plain(v) for k, v in p[section].items()}
        for section, weights in self._weights().items():
            out[section.lower()]["weights"] = weights
        out.update(method=self.method, num_classes=len(self.class_names), device=str(self.device),
                   precision=self.precision)
        return out


def _plain(value):
    """A config value as JSON would give it back (tuples become lists)."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


class ZipLabeler(_ClipLabelerBase):
    """Zip: CLIP classification and surgery activation, RN50x64 layer3 clusters, fragment
    discovery, then SAM refinement (``use_sam=True``, method "zip") or the discovered grid
    masks themselves, upsampled to the image (method "zip-no-sam", where SAM's factor of the
    score is 1, so score = sqrt(s_clip)).

    Call: ``labeler(image, classes=None)`` with image (H, W, 3) uint8 RGB, or
    ``labeler.label_batch(images, classes=None)`` for a list (one detection list per image,
    the same as single calls, with the models run on the batch); a call returns a list of
    ``{"category": str, "score": float in [0, 1], "mask": (H, W) bool,
    "box": (4,) float64 XYXY image pixels, x1/y1 exclusive (so w = x1 - x0),
    "clip_score": float, "sam_score": float}``, best first, where score =
    sqrt(clip_score * sam_score).
    ``classes`` (vocabulary names) replaces image-level classification for this image; their
    CLIP score is still the probability over the whole vocabulary, as in classification.
    """

    def __init__(self, cfg, use_sam: bool = True):
        self.method = "zip" if use_sam else "zip-no-sam"
        self.config_sections = ("CLIP", "BOUNDARY", "DISCOVERY", "SCORE") + (
            ("SAM",) if use_sam else ())
        super().__init__(cfg)
        p = cfg.PSEUDO
        self.boundary_params = BoundaryParams.from_config(p.BOUNDARY)
        self.discovery_params = DiscoveryParams.from_config(p.DISCOVERY)
        self.sam_params = SamParams.from_config(p.SAM) if use_sam else None
        if not hasattr(self.clip.model.visual, "transformer"):
            raise ValueError(
                f"PSEUDO.CLIP.MODEL must be a ViT for CLIP Surgery, got {p.CLIP.MODEL}."
            )
        patch = self.clip.model.visual.patch_size[0]
        if p.CLIP.INPUT_SIZE % patch:
            raise ValueError(
                f"PSEUDO.CLIP.INPUT_SIZE {p.CLIP.INPUT_SIZE} is not a multiple of the patch "
                f"size {patch}."
            )
        if not 0 < p.CLIP.SURGERY_DEPTH <= len(self.clip.model.visual.transformer.resblocks):
            raise ValueError(
                f"PSEUDO.CLIP.SURGERY_DEPTH {p.CLIP.SURGERY_DEPTH} exceeds the ViT's blocks."
            )
        self.boundary = create_clip(p.BOUNDARY.MODEL, p.BOUNDARY.PRETRAINED, self.device,
                                    random_weights=p.RANDOM_WEIGHTS, cache_dir=p.CACHE_DIR,
                                    key="PSEUDO.BOUNDARY.PRETRAINED")
        if not hasattr(self.boundary.model.visual, "layer3"):
            raise ValueError(
                f"PSEUDO.BOUNDARY.MODEL must be an open_clip ResNet, got {p.BOUNDARY.MODEL}."
            )
        # Every model input is resized from the image as the authors' transforms do (PIL
        # bicubic, torchvision's short-side rule) unless PSEUDO.RESIZE / SIZE_RULE say otherwise.
        self.preprocess = ZipPreprocess.from_config(p)
        self.refiner = None
        if use_sam:
            sp = self.sam_params
            sam = create_sam(sp.model_type, sp.checkpoint, p.CACHE_DIR, self.device,
                             random_weights=p.RANDOM_WEIGHTS, key="PSEUDO.SAM.CHECKPOINT")
            self.sam_weights = sam.zip_weights
            self.refiner = masks.SamRefiner(
                sam,
                multimask=sp.multimask,
                batch_size=sp.batch_size,
                autocast_dtype=self.autocast_dtype,
            )

    # -- stages (each runs on a batch of images; the heavy models see the batch at once) ---------
    def _stack(self, pixels: Sequence[torch.Tensor], bundle: ClipBundle) -> torch.Tensor:
        """(B, 3, h, w) float32 on the device: same-size (h, w, 3) uint8 inputs, normalised for
        ``bundle``."""
        # Each image goes to the device as uint8 and the batch is stacked there (no host copy).
        return clues.normalize_batch(torch.stack([p.to(self.device) for p in pixels]),
                                     bundle.mean, bundle.std, self.device)

    def _inputs(self, images: Sequence[np.ndarray],
                inputs: Optional[Sequence[Optional[ZipInputs]]]) -> List[ZipInputs]:
        """Each image's :class:`ZipInputs`: the given ones (prepared in the job's loader
        workers), the others prepared here."""
        if inputs is None:
            inputs = [None] * len(images)
        if len(inputs) != len(images):
            raise ValueError(f"inputs has {len(inputs)} entries for {len(images)} images.")
        return [self.preprocess(im) if x is None else x for im, x in zip(images, inputs)]

    @torch.no_grad()
    def semantic_clues(self, images: Sequence[np.ndarray], candidates: Sequence[np.ndarray],
                       classes_given: Sequence[bool],
                       inputs: Optional[Sequence[ZipInputs]] = None) -> List[tuple]:
        """Per image: kept vocabulary indices (K,), their CLIP probabilities (K,) (softmax over
        the whole vocabulary), and activations (K, g, g) float32 in [0, 1] on the ViT patch grid.

        Every image is resized to the same square input, so the ViT runs once per batch (and
        once more at CLASSIFY_SIZE); class selection and activation maps are per image because
        each image has its own candidates. inputs: the images' :class:`ZipInputs` when already
        prepared.
        """
        c = self.clip_params
        size = int(c.input_size)
        visual = self.clip.model.visual
        inputs = self._inputs(images, inputs)
        with self._autocast():
            tokens = clues.surgery_tokens(
                visual, self._stack([x.clip for x in inputs], self.clip), c.surgery_depth
            )
        tokens = tokens.float()
        global_emb = tokens[:, 0]
        if c.classify_size and c.classify_size != size:
            small = self._stack([x.classify for x in inputs], self.clip)
            with self._autocast():
                global_emb = clues.surgery_tokens(visual, small, c.surgery_depth)[:, 0].float()
        ps = visual.patch_size
        grid = (size // ps[0], size // ps[1])
        out = []
        for i, (cands, given) in enumerate(zip(candidates, classes_given)):
            # The softmax runs over the whole vocabulary in both modes, so a class's s_clip is
            # the same whether it was classified or given (over the given classes alone, one
            # given class would always score 1).
            probs = clues.classify(global_emb[i], self.text_embeddings, self.logit_scale)[cands]
            local = (
                np.arange(len(cands)) if given else clues.select_classes(probs, c.topk, c.min_prob)
            )
            kept = cands[local]
            act = clues.dense_activation(
                tokens[i : i + 1],
                self.text_embeddings[kept],
                self.empty_embedding,
                grid,
                c.feature_norm_dim,
            )
            out.append((kept, probs[local].cpu().numpy(), act))
        return out

    @torch.no_grad()
    def boundary_clusters(self, images: Sequence[np.ndarray],
                          activations: Optional[Sequence[torch.Tensor]] = None,
                          inputs: Optional[Sequence[ZipInputs]] = None) -> List[np.ndarray]:
        """Per image, the (h, w) int64 k-means cluster map of its layer3 features (stride 16).

        The trunk keeps each image's aspect, so it runs once per group of images sharing a
        resized (h, w) (most of COCO is 640x480); k-means runs per image.
        activations: per image (K, g, g) class activations, used by the semantic initialisation.
        inputs: the images' :class:`ZipInputs` when already prepared.
        """
        inputs = self._inputs(images, inputs)
        groups = {}
        for i, x in enumerate(inputs):
            groups.setdefault(tuple(x.boundary.shape[:2]), []).append(i)
        out = [None] * len(images)
        for _, members in groups.items():
            x = self._stack([inputs[i].boundary for i in members], self.boundary)
            with self._autocast():
                feats = clusters.layer3_features(self.boundary.model.visual, x)
            for j, i in enumerate(members):
                out[i] = clusters.cluster_features(
                    feats[j], self.boundary_params,
                    None if activations is None else activations[i],
                    self.clip_params.activation_ratio)
        return out

    def discover(self, cluster_map: np.ndarray, regions: np.ndarray) -> List[instances.Instances]:
        """One :class:`Instances` per class region (K, h, w) bool, sharing one fragment
        labelling."""
        frags = instances.split_fragments(cluster_map)
        return [instances.discover_instances(frags, r, self.discovery_params) for r in regions]

    def _proposals(self, image_hw, act: torch.Tensor, cluster_map: np.ndarray):
        """Discovered instances of one image: (C, H, W) activation at image size, the class of
        each instance (N,), its grid mask (N, h, w) bool and box (N, 4) in image pixels; None
        when nothing is found."""
        grid_hw = cluster_map.shape
        act_img, regions = clues.semantic_regions(
            act, image_hw, grid_hw, self.clip_params.activation_ratio
        )
        found = self.discover(cluster_map, regions)
        counts = np.array([len(f) for f in found], np.int64)
        if counts.sum() == 0:
            return None
        class_of = np.repeat(np.arange(len(found)), counts)
        grid_masks = np.concatenate([f.masks() for f in found if len(f)])
        boxes = instances.grid_boxes_to_image(
            np.concatenate([f.boxes for f in found]), grid_hw, image_hw
        )
        return act_img, class_of, grid_masks, boxes

    # -- whole images --------------------------------------------------------------------------
    def __call__(self, image: np.ndarray, classes: Optional[List[str]] = None) -> List[dict]:
        """Detections for one (H, W, 3) uint8 RGB image; see the module docstring."""
        return self.label_batch([image], None if classes is None else [classes])[0]

    def label_batch(
        self, images: List[np.ndarray], classes: Optional[list] = None,
        inputs: Optional[List[Optional[ZipInputs]]] = None,
    ) -> List[List[dict]]:
        """Detections for each image of a batch, the same as calling the labeler on each.

        images: (H, W, 3) uint8 RGB arrays, sizes may differ.
        classes: None, or one entry per image: None (classify) or that image's class names.
        inputs: None, or one entry per image: None or its :class:`ZipInputs`, already made by
            ``self.preprocess`` (the job makes them in its loader workers).
        The CLIP ViT, the boundary trunk (per resized size) and SAM's image encoder run on the
        batch; discovery, prompt decoding and NMS run per image.
        """
        if classes is None:
            classes = [None] * len(images)
        if len(classes) != len(images):
            raise ValueError(f"classes has {len(classes)} entries for {len(images)} images.")
        for image in images:
            self._check_image(image)
        candidates = [self._candidates(c) for c in classes]
        prepared = self._inputs(images, inputs)
        out: List[List[dict]] = [[] for _ in images]
        todo = [i for i, c in enumerate(candidates) if len(c)]
        if not todo:
            return out
        per_image = self.semantic_clues([images[i] for i in todo], [candidates[i] for i in todo],
                                        [classes[i] is not None for i in todo],
                                        [prepared[i] for i in todo])
        clued = {i: f for i, f in zip(todo, per_image) if len(f[0])}
        todo = list(clued)
        if not todo:
            return out
        maps = self.boundary_clusters([images[i] for i in todo], [clued[i][2] for i in todo],
                                      [prepared[i] for i in todo])
        proposals = {}
        for i, cluster_map in zip(todo, maps):
            prop = self._proposals(images[i].shape[:2], clued[i][2], cluster_map)
            if prop is not None:
                proposals[i] = prop
        todo = list(proposals)
        if self.refiner is not None and todo:
            self.refiner.set_images([images[i] for i in todo])
        for j, i in enumerate(todo):
            kept, probs, _ = clued[i]
            out[i] = self._detections(images[i].shape[:2], kept, probs, *proposals[i], sam_index=j)
        return out

    def _detections(self, image_hw, kept: np.ndarray, probs: np.ndarray, act_img: np.ndarray,
                    class_of: np.ndarray, grid_masks: np.ndarray, boxes: np.ndarray,
                    sam_index: int) -> List[dict]:
        """Masks (SAM's, or the grid instances upsampled), scores and NMS for one image whose
        SAM embedding is ``sam_index`` of the refiner's current batch."""
        if self.refiner is not None:
            points = None
            if self.sam_params.point_prompt:
                points = self._peak_points(act_img, class_of, grid_masks, image_hw)
            det_masks, sam_score = self.refiner.refine_tensors(boxes, points, index=sam_index)
            sam_score = sam_score.cpu().numpy()
            if det_masks.device.type == "cpu":
                # On the CPU, run-length encoded NMS beats matrix products several times over.
                det_masks = det_masks.numpy()
        else:
            det_masks = instances.grid_masks_to_image(grid_masks, image_hw)
            sam_score = np.ones(len(det_masks), np.float32)

        if self.score_params.clip_score == "image_prob":
            clip_score = probs[class_of]
        else:
            clip_score = _mask_activation(act_img, class_of, det_masks)
        scores = masks.combine_scores(clip_score, sam_score)
        return self._finish(image_hw, det_masks, scores, kept[class_of],
                            parts=(clip_score, sam_score))

    @staticmethod
    def _peak_points(
        act_img: np.ndarray, class_of: np.ndarray, grid_masks: np.ndarray, image_hw
    ) -> np.ndarray:
        """(N, 2) XY image pixels: each instance's most activated pixel inside its mask."""
        H, W = image_hw
        up = instances.grid_masks_to_image(grid_masks, image_hw)
        scored = np.where(up, act_img[class_of], -1.0).reshape(len(up), -1)
        idx = scored.argmax(axis=1)
        return np.stack([idx % W, idx // W], axis=1).astype(np.float32) + 0.5

    def _weights(self) -> dict:
        weights = {"CLIP": self.clip.weights, "BOUNDARY": self.boundary.weights}
        if self.refiner is not None:
            weights["SAM"] = self.sam_weights
        return weights


@dataclass(frozen=True)
class SamClipParams(StageParams):
    """Settings of the "sam-clip" baseline's automatic mask generator (PSEUDO.SAM_CLIP)."""

    config_key: ClassVar[str] = "PSEUDO.SAM_CLIP"

    points_per_side: int = setting(32, low=1)
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95


class SamClipLabeler(_ClipLabelerBase):
    """Baseline "sam-clip": SAM's automatic masks, each labelled by CLIP on its box crop."""

    method = "sam-clip"
    config_sections = ("CLIP", "SAM", "SAM_CLIP", "SCORE")

    def __init__(self, cfg):
        super().__init__(cfg)
        from segment_anything import SamAutomaticMaskGenerator

        p = cfg.PSEUDO
        sp = SamParams.from_config(p.SAM)
        g = SamClipParams.from_config(p.SAM_CLIP)
        sam = create_sam(sp.model_type, sp.checkpoint, p.CACHE_DIR, self.device,
                         random_weights=p.RANDOM_WEIGHTS, key="PSEUDO.SAM.CHECKPOINT")
        self.sam_weights = sam.zip_weights
        self.generator = SamAutomaticMaskGenerator(
            sam, points_per_side=g.points_per_side, points_per_batch=sp.batch_size,
            pred_iou_thresh=g.pred_iou_thresh, stability_score_thresh=g.stability_score_thresh,
            output_mode="binary_mask")

    @torch.no_grad()
    def __call__(self, image: np.ndarray, classes: Optional[List[str]] = None) -> List[dict]:
        """Detections for one (H, W, 3) uint8 RGB image; see the module docstring."""
        self._check_image(image)
        H, W = image.shape[:2]
        candidates = self._candidates(classes)
        if len(candidates) == 0:
            return []
        with self._autocast():
            proposals = self.generator.generate(image)
        if not proposals:
            return []
        seg = np.stack([r["segmentation"] for r in proposals]).astype(bool)
        sam_score = np.array([r["predicted_iou"] for r in proposals], np.float32)
        p = self.cfg.PSEUDO
        size = self.clip.model.visual.image_size
        crops = []
        for r in proposals:  # one crop per proposal: the list comes from SAM's generator
            x, y, w, h = [int(round(v)) for v in r["bbox"]]
            crop = image[y:y + max(h, 1), x:x + max(w, 1)]
            crops.append(clues.image_to_tensor(crop, tuple(size), self.clip.mean, self.clip.std,
                                               self.device, p.RESIZE))
        crops = torch.cat(crops)
        feats = []
        for i in range(0, len(crops), 64):
            with self._autocast():
                feats.append(self.clip.model.encode_image(crops[i:i + 64]).float())
        feats = F.normalize(torch.cat(feats), dim=-1)
        probs = (self.logit_scale * feats @ self.text_embeddings[candidates].float().T).softmax(
            dim=-1
        )
        best_p, best = probs.max(dim=1)
        clip_score = best_p.cpu().numpy()
        scores = masks.combine_scores(clip_score, sam_score)
        return self._finish((H, W), seg, scores, candidates[best.cpu().numpy()],
                            parts=(clip_score, sam_score))

    def _weights(self) -> dict:
        return {"CLIP": self.clip.weights, "SAM": self.sam_weights}


METHODS = {
    "zip": lambda cfg: ZipLabeler(cfg, use_sam=True),
    "zip-no-sam": lambda cfg: ZipLabeler(cfg, use_sam=False),
    "sam-clip": SamClipLabeler,
}


# The frozen models each method loads, by PSEUDO section (the keys of its labeler's _weights()).
METHOD_MODELS = {"zip": ("CLIP", "BOUNDARY", "SAM"), "zip-no-sam": ("CLIP", "BOUNDARY"),
                 "sam-clip": ("CLIP", "SAM")}


def required_weights(cfg) -> List[WeightSource]:
    """Where every model ``build_labeler(cfg)`` loads gets its weights, found without the network
    (none with PSEUDO.RANDOM_WEIGHTS); ``zip_d2.models.require_weights`` says at once, in one
    line, which are missing."""
    p = cfg.PSEUDO
    if p.RANDOM_WEIGHTS or p.METHOD not in METHOD_MODELS:
        return []
    sources = []
    for section in METHOD_MODELS[p.METHOD]:
        if section == "SAM":
            sources.append(sam_weight_source(p.SAM.MODEL_TYPE, p.SAM.CHECKPOINT, p.CACHE_DIR,
                                             key="PSEUDO.SAM.CHECKPOINT"))
        else:
            sources.append(clip_weight_source(p[section].MODEL, p[section].PRETRAINED,
                                              p.CACHE_DIR, key=f"PSEUDO.{section}.PRETRAINED"))
    return sources


@dataclass(frozen=True)
class LabelerParams(StageParams):
    """PSEUDO's own keys that have a fixed set of values (each explained in zip_d2/config.py)."""

    config_key: ClassVar[str] = "PSEUDO"

    method: str = setting("zip", choices=tuple(METHODS))
    precision: str = setting("fp32", choices=tuple(_PRECISIONS))
    resize: str = setting("pil", choices=clues.RESIZE_METHODS)


# Every settings object of the PSEUDO config, with its section ("" = PSEUDO itself).
STAGE_PARAMS = (("", LabelerParams), ("CLIP", ClipParams), ("BOUNDARY", BoundaryParams),
                ("DISCOVERY", DiscoveryParams), ("SAM", SamParams), ("SCORE", ScoreParams),
                ("SAM_CLIP", SamClipParams))


def check_config(cfg) -> None:
    """Raise ValueError (one line) for a PSEUDO value outside what the labelers accept: builds
    every stage's settings object (:data:`STAGE_PARAMS`), whose fields declare their bounds.

    Cheap and model-free, so a typo is reported before any weight is looked for or any file is
    written; what depends on the models themselves (a ViT for Surgery, its patch size) is
    checked when they are built.
    """
    p = cfg.PSEUDO
    for section, params in STAGE_PARAMS:
        params.from_config(p[section] if section else p)


def build_labeler(cfg):
    """The labeler for ``cfg.PSEUDO.METHOD`` ("zip", "zip-no-sam" or "sam-clip").

    Raises ValueError for a bad config value (:func:`check_config`), MissingWeightsError
    (before producing anything) when a model's weights are missing.
    """
    check_config(cfg)
    return METHODS[cfg.PSEUDO.METHOD](cfg)
