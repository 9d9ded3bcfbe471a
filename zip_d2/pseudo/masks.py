"""SAM refinement of discovered instances, scoring, and cross-class mask NMS."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Sequence, Tuple

import numpy as np
import torch
import torchvision
from pycocotools import mask as mask_utils

from zip_d2.models import SAM_CHECKPOINT_URLS

from .params import StageParams, setting

__all__ = ["SamParams", "ScoreParams", "SamRefiner", "combine_scores", "mask_iou_matrix",
           "mask_nms", "masks_to_boxes", "select_masks"]


@dataclass(frozen=True)
class SamParams(StageParams):
    """Settings of SAM refinement (PSEUDO.SAM; each key is explained in ``zip_d2/config.py``)."""

    config_key: ClassVar[str] = "PSEUDO.SAM"

    model_type: str = setting("vit_h", choices=(*SAM_CHECKPOINT_URLS, "tiny"))
    checkpoint: str = ""
    multimask: bool = True
    point_prompt: bool = False
    batch_size: int = setting(64, low=1)


@dataclass(frozen=True)
class ScoreParams(StageParams):
    """Scoring and selection of one image's detections (PSEUDO.SCORE): the CLIP factor of the
    score, cross-class mask NMS, the cap and the floor (:func:`select_masks`)."""

    config_key: ClassVar[str] = "PSEUDO.SCORE"

    clip_score: str = setting("image_prob", choices=("image_prob", "mask_activation"))
    nms_iou: float = setting(0.5, low=0.0, high=1.0)
    max_detections: int = setting(100, low=1)
    min_score: float = setting(0.0, low=0.0, high=1.0)


class SamRefiner:
    """Prompts SAM with many boxes (and optional points) through one image embedding per image;
    the image encoder runs once for a whole batch of images (:meth:`set_images`).

    sam: a segment-anything ``Sam`` (from ``create_sam``).
    multimask: ask for 3 masks per prompt and keep the one SAM scores highest.
    batch_size: prompts per mask-decoder call.
    autocast_dtype: torch dtype for CUDA autocast (None = model dtype).
    """

    def __init__(self, sam, multimask: bool = True, batch_size: int = 64,
                 autocast_dtype: Optional[torch.dtype] = None):
        from segment_anything import SamPredictor

        self.predictor = SamPredictor(sam)
        self.multimask = multimask
        self.batch_size = batch_size
        self.autocast_dtype = autocast_dtype
        self._embeddings = []  # (features, original size, resized size) per image of the last batch

    def _autocast(self):
        dev = self.predictor.device
        if self.autocast_dtype is None or dev.type != "cuda":
            return torch.autocast(dev.type, enabled=False)
        return torch.autocast("cuda", dtype=self.autocast_dtype)

    def set_image(self, image: np.ndarray) -> None:
        """(H, W, 3) uint8 RGB; runs the image encoder once."""
        self.set_images([image])

    def set_images(self, images: Sequence[np.ndarray]) -> None:
        """(H, W, 3) uint8 RGB images, sizes may differ; runs the image encoder once on all of
        them as one (B, 3, S, S) batch (SAM pads every image to its square input S), then keeps
        one embedding per image for :meth:`refine`'s ``index``."""
        p = self.predictor
        model = p.model
        inputs, sizes = [], []
        for image in images:
            if model.image_format != "RGB":
                image = image[..., ::-1]
            # SamPredictor.set_image's own transform, so a batch of one is what it computes.
            x = torch.as_tensor(p.transform.apply_image(image), device=p.device)
            x = x.permute(2, 0, 1).contiguous()[None]
            sizes.append((tuple(image.shape[:2]), tuple(x.shape[-2:])))
            inputs.append(model.preprocess(x))
        self._embeddings = []
        if not inputs:
            p.reset_image()
            return
        with torch.no_grad(), self._autocast():
            features = model.image_encoder(torch.cat(inputs))
        self._embeddings = [(features[i:i + 1], original, resized)
                            for i, (original, resized) in enumerate(sizes)]
        self._select(0)

    def _select(self, index: int) -> None:
        """Point the predictor's single-image state at image ``index`` of the last batch."""
        if not 0 <= index < len(self._embeddings):
            raise IndexError(f"no image {index} in the last set_images batch")
        p = self.predictor
        p.features, p.original_size, p.input_size = self._embeddings[index]
        p.is_image_set = True

    def refine(self, boxes: np.ndarray, points: Optional[np.ndarray] = None,
               index: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """Masks for box prompts on image ``index`` of the last :meth:`set_images` batch (the
        image given to :meth:`set_image` by default).

        boxes: (N, 4) float XYXY image pixels; points: (N, 2) float XY positive points or None.
        Returns masks (N, H, W) bool and SAM's predicted IoU (N,) float32, numpy.
        """
        masks, iou = self.refine_tensors(boxes, points, index)
        return masks.cpu().numpy(), iou.cpu().numpy()

    @torch.no_grad()
    def refine_tensors(self, boxes: np.ndarray, points: Optional[np.ndarray] = None,
                       index: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`refine` leaving the results on the model's device: masks (N, H, W) bool and
        predicted IoU (N,) float32 tensors (so NMS can run before the masks leave a GPU)."""
        self._select(index)
        p = self.predictor
        H, W = p.original_size
        n = len(boxes)
        if n == 0:
            return (torch.zeros((0, H, W), dtype=torch.bool, device=p.device),
                    torch.zeros((0,), dtype=torch.float32, device=p.device))
        all_masks, all_iou = [], []
        for i in range(0, n, self.batch_size):
            b = torch.as_tensor(
                np.asarray(boxes[i : i + self.batch_size], np.float32), device=p.device
            )
            b = p.transform.apply_boxes_torch(b, (H, W))
            pc = pl = None
            if points is not None:
                pc = torch.as_tensor(
                    np.asarray(points[i : i + self.batch_size], np.float32), device=p.device
                )
                pc = p.transform.apply_coords_torch(pc[:, None, :], (H, W))
                pl = torch.ones(pc.shape[:2], dtype=torch.int, device=p.device)
            with self._autocast():
                masks, iou, _ = p.predict_torch(pc, pl, boxes=b, multimask_output=self.multimask)
            best = iou.float().argmax(dim=1)
            rows = torch.arange(len(best), device=best.device)
            all_masks.append(masks[rows, best])
            all_iou.append(iou.float()[rows, best])
        return torch.cat(all_masks), torch.cat(all_iou)


def combine_scores(clip_score: np.ndarray, sam_score: np.ndarray) -> np.ndarray:
    """Zip's score sqrt(s_clip * s_sam), both factors clipped to [0, 1]. (N,) float32."""
    a = np.clip(np.asarray(clip_score, np.float64), 0, 1)
    b = np.clip(np.asarray(sam_score, np.float64), 0, 1)
    return np.sqrt(a * b).astype(np.float32)


# -- cross-class mask NMS and boxes ------------------------------------------------------------
# One computation, run where the masks are:
# - numpy arrays (a labeler on the CPU): COCO run-length encoding of each mask's *transpose*.
#   A C-ordered (N, H, W) array is, byte for byte, the Fortran-ordered (W, H, N) array that
#   pycocotools encodes, so nothing is copied (copying the masks to Fortran order used to be
#   80 % of the NMS time); IoU and area do not change under transposition, a box swaps x and y.
# - torch tensors (a labeler on CUDA): intersections as matrix products on the device, so the
#   masks NMS removes never leave the GPU; only (N,) and (N, N) results do.
# Both compute each IoU as the double intersection / union of exact pixel counts, as
# pycocotools does, so they keep the same detections in the same order.

# Pixels per float32 matrix-product chunk times masks: bounds the float copy to 64 MiB.
_IOU_CHUNK_ELEMENTS = 2 ** 24


def _rles_of_transposes(masks: np.ndarray) -> list:
    """(N, H, W) masks (bool or 0/1) -> N COCO RLEs of their (W, H) transposes; no copy for a
    C-contiguous bool array."""
    m = np.ascontiguousarray(masks)
    m = m.view(np.uint8) if m.dtype == bool else (m != 0).view(np.uint8)
    return mask_utils.encode(m.transpose(2, 1, 0))


def _rle_iou(rles: list) -> np.ndarray:
    """(M, M) float64 IoU of the masks the RLEs encode."""
    if not rles:
        return np.zeros((0, 0))
    iou = mask_utils.iou(rles, rles, [0] * len(rles))
    return np.asarray(iou, np.float64).reshape(len(rles), -1)


def _rle_boxes(rles: list) -> np.ndarray:
    """(M, 4) float32 XYXY boxes of the masks whose *transposes* the RLEs encode."""
    if not rles:
        return np.zeros((0, 4), np.float32)
    y0, x0, h, w = np.asarray(mask_utils.toBbox(rles), np.float64).reshape(-1, 4).T
    return np.stack([x0, y0, x0 + w, y0 + h], axis=1).astype(np.float32)


def _torch_iou(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool tensor -> (N, N) float64 IoU on its device (0 where both are empty).

    Intersections are float32 products of 0/1 values, exact whatever the matmul precision
    setting (TF32 and bf16 hold 0 and 1 exactly and accumulate in float32) as long as a chunk
    sums fewer than 2**24 pixels.
    """
    n = masks.shape[0]
    flat = masks.bool().reshape(n, -1)
    area = flat.sum(dim=1).double()
    inter = torch.zeros((n, n), dtype=torch.float64, device=masks.device)
    step = max(1, min(2 ** 24 - 1, _IOU_CHUNK_ELEMENTS // max(n, 1)))
    for start in range(0, flat.shape[1], step):
        f = flat[:, start:start + step].float()
        inter += (f @ f.T).double()
    union = area[:, None] + area[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter))


def _torch_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) tensor -> (N, 4) float32 XYXY on its device (x1, y1 exclusive; zeros for an
    empty mask): torchvision's boxes, whose x1, y1 are the last pixel's index."""
    boxes = torchvision.ops.masks_to_boxes(masks)
    boxes[:, 2:] += 1
    boxes[~masks.flatten(1).any(dim=1)] = 0
    return boxes


def _greedy(n: int, max_keep: int, removes) -> np.ndarray:
    """Greedy NMS over ``n`` detections sorted best first. ``removes(i, js)`` -> (len(js),)
    bool: which of the later, still present detections ``js`` the kept detection ``i``
    removes. The pass is sequential by nature. Returns the kept positions (K,) int64."""
    suppressed = np.zeros(n, bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) >= max_keep:
            break
        later = np.flatnonzero(~suppressed[i + 1:]) + i + 1
        if len(later):
            suppressed[later[removes(i, later)]] = True
    return np.asarray(keep, np.int64)


def _rle_removes(rles: list, iou_threshold: float):
    """``removes`` for :func:`_greedy` on RLEs sorted best first, computing only the IoUs that
    can exceed the threshold: an upper bound from areas and box overlap (intersection <=
    min(areas, box overlap), union >= the areas' sum minus that) rules out the rest, exactly,
    since rounding a quotient of integers is monotonic."""
    area = mask_utils.area(rles).astype(np.float64)
    x0, y0, w, h = np.asarray(mask_utils.toBbox(rles), np.float64).reshape(-1, 4).T
    overlap_w = np.minimum((x0 + w)[:, None], x0 + w) - np.maximum(x0[:, None], x0)
    overlap_h = np.minimum((y0 + h)[:, None], y0 + h) - np.maximum(y0[:, None], y0)
    inter_max = np.minimum(np.minimum(area[:, None], area[None, :]),
                           overlap_w.clip(0) * overlap_h.clip(0))
    union_min = area[:, None] + area[None, :] - inter_max
    bound = np.divide(inter_max, union_min, out=np.zeros_like(union_min), where=union_min > 0)
    possible = bound > iou_threshold

    def removes(i, later):
        out = np.zeros(len(later), bool)
        check = possible[i, later]
        if check.any():
            others = later[check]
            iou = mask_utils.iou([rles[i]], [rles[j] for j in others], [0] * len(others))
            out[check] = np.asarray(iou, np.float64).reshape(-1) > iou_threshold
        return out

    return removes


def select_masks(masks, scores, iou_threshold: float = 0.5, max_keep: int = 100,
                 min_score: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
    """One image's last step: drop empty masks and masks scored below ``min_score``, greedy
    mask NMS across classes (best score first, ties in input order; a detection goes when its
    IoU with a kept one exceeds ``iou_threshold``), at most ``max_keep``, and each kept mask's
    tight box.

    masks: (N, H, W) bool numpy array (run-length encoded on the CPU) or torch tensor (on its
        device; only the kept masks need to leave it afterwards).
    scores: (N,) float.
    min_score: None keeps every mask for NMS, empty ones included (they overlap nothing).
    Returns keep (K,) int64 indices into ``masks``, best first, and boxes (K, 4) float32 XYXY
    pixels (x1, y1 exclusive; zeros for an empty mask).
    """
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    scores = np.asarray(scores).reshape(-1)
    n = len(scores)
    if len(masks) != n:
        raise ValueError(f"{len(masks)} masks for {n} scores")
    on_device = isinstance(masks, torch.Tensor)
    if on_device:
        areas = masks.reshape(n, -1).sum(dim=1).cpu().numpy() if n else np.zeros(0, np.int64)
    else:
        rles = _rles_of_transposes(masks) if n else []
        areas = mask_utils.area(rles) if n else np.zeros(0, np.int64)
    valid = np.ones(n, bool) if min_score is None else (scores >= min_score) & (areas > 0)
    candidates = np.flatnonzero(valid)
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    if len(order) == 0:
        return np.zeros((0,), np.int64), np.zeros((0, 4), np.float32)
    if on_device:
        ordered = masks[torch.as_tensor(order, device=masks.device)]
        over = (_torch_iou(ordered) > iou_threshold).cpu().numpy()
        removes = lambda i, later: over[i, later]  # noqa: E731
    else:
        removes = _rle_removes([rles[i] for i in order], iou_threshold)
    keep = order[_greedy(len(order), max_keep, removes)]
    if on_device:
        boxes = _torch_boxes(masks[torch.as_tensor(keep, device=masks.device)]).cpu().numpy()
    else:
        boxes = _rle_boxes([rles[i] for i in keep])
    return keep, boxes


def mask_nms(masks, scores, iou_threshold: float = 0.5, max_keep: int = 100) -> np.ndarray:
    """Greedy NMS by mask IoU over all masks (none dropped first); returns the indices kept,
    highest score first. masks: (N, H, W) bool numpy array or torch tensor. (K,) int64."""
    return select_masks(masks, scores, iou_threshold, max_keep, min_score=None)[0]


def mask_iou_matrix(masks) -> np.ndarray:
    """(N, H, W) bool numpy array or torch tensor -> (N, N) float64 mask IoU (0 between two
    empty masks)."""
    if isinstance(masks, torch.Tensor):
        return _torch_iou(masks).cpu().numpy()
    if len(masks) == 0:
        return np.zeros((0, 0))
    return _rle_iou(_rles_of_transposes(masks))


def masks_to_boxes(masks) -> np.ndarray:
    """(N, H, W) bool numpy array or torch tensor -> (N, 4) float32 XYXY pixels (x1, y1
    exclusive); empty masks get zeros."""
    if not isinstance(masks, torch.Tensor):
        masks = torch.from_numpy(np.ascontiguousarray(masks, dtype=bool))
    return _torch_boxes(masks).cpu().numpy()
