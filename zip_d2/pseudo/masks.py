"""SAM refinement of discovered instances, scoring, and cross-class mask NMS."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from pycocotools import mask as mask_utils

__all__ = ["SamRefiner", "combine_scores", "mask_iou_matrix", "mask_nms", "masks_to_boxes"]


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

    @torch.no_grad()
    def refine(self, boxes: np.ndarray, points: Optional[np.ndarray] = None,
               index: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """Masks for box prompts on image ``index`` of the last :meth:`set_images` batch (the
        image given to :meth:`set_image` by default).

        boxes: (N, 4) float XYXY image pixels; points: (N, 2) float XY positive points or None.
        Returns masks (N, H, W) bool and SAM's predicted IoU (N,) float32.
        """
        self._select(index)
        p = self.predictor
        H, W = p.original_size
        n = len(boxes)
        if n == 0:
            return np.zeros((0, H, W), bool), np.zeros((0,), np.float32)
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
            all_masks.append(masks[rows, best].cpu().numpy())
            all_iou.append(iou.float()[rows, best].cpu().numpy())
        return np.concatenate(all_masks), np.concatenate(all_iou).astype(np.float32)


def combine_scores(clip_score: np.ndarray, sam_score: np.ndarray) -> np.ndarray:
    """Zip's score sqrt(s_clip * s_sam), both factors clipped to [0, 1]. (N,) float32."""
    a = np.clip(np.asarray(clip_score, np.float64), 0, 1)
    b = np.clip(np.asarray(sam_score, np.float64), 0, 1)
    return np.sqrt(a * b).astype(np.float32)


def _rles(masks: np.ndarray):
    return mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def mask_iou_matrix(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, N) float64 mask IoU (run-length encoded, so memory stays small)."""
    if len(masks) == 0:
        return np.zeros((0, 0))
    r = _rles(masks)
    return np.asarray(mask_utils.iou(r, r, [0] * len(r)), dtype=np.float64).reshape(len(r), len(r))


def mask_nms(masks: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5,
             max_keep: int = 100) -> np.ndarray:
    """Greedy NMS by mask IoU; returns indices kept, highest score first. (M,) int64.

    The greedy pass is inherently sequential over the sorted detections, but each step is one
    row of the precomputed IoU matrix.
    """
    n = len(scores)
    if n == 0:
        return np.zeros((0,), np.int64)
    order = np.argsort(-np.asarray(scores), kind="stable")
    iou = mask_iou_matrix(masks[order])
    suppressed = np.zeros(n, bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) >= max_keep:
            break
        suppressed |= iou[i] > iou_threshold
    return order[np.asarray(keep, np.int64)]


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) float32 XYXY pixels (x1, y1 exclusive); empty masks get zeros."""
    n = len(masks)
    out = np.zeros((n, 4), np.float32)
    if n == 0:
        return out
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    nonempty = rows.any(axis=1)
    H, W = masks.shape[1:]
    y0 = rows.argmax(axis=1)
    y1 = H - rows[:, ::-1].argmax(axis=1)
    x0 = cols.argmax(axis=1)
    x1 = W - cols[:, ::-1].argmax(axis=1)
    out[:] = np.stack([x0, y0, x1, y1], axis=1)
    out[~nonempty] = 0
    return out
