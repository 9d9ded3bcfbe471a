"""Test oracle: the labeler's post-processing as it was before NMS and boxes moved off the
Fortran copy (commit a44ae20): every mask copied to Fortran order for pycocotools, greedy NMS
over the full IoU matrix, boxes from numpy reductions, each kept mask copied. New code must give
exactly these labels."""
import numpy as np
from pycocotools import mask as mask_utils


def old_mask_nms(masks, scores, iou_threshold, max_keep):
    n = len(scores)
    if n == 0:
        return np.zeros((0,), np.int64)
    order = np.argsort(-np.asarray(scores), kind="stable")
    ordered = masks[order]
    rles = mask_utils.encode(np.asfortranarray(ordered.transpose(1, 2, 0).astype(np.uint8)))
    iou = np.asarray(mask_utils.iou(rles, rles, [0] * n), np.float64).reshape(n, n)
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


def old_masks_to_boxes(masks):
    n = len(masks)
    out = np.zeros((n, 4), np.float32)
    if n == 0:
        return out
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    H, W = masks.shape[1:]
    out[:] = np.stack([cols.argmax(axis=1), rows.argmax(axis=1),
                       W - cols[:, ::-1].argmax(axis=1), H - rows[:, ::-1].argmax(axis=1)], axis=1)
    out[~rows.any(axis=1)] = 0
    return out


def old_select(masks, scores, iou_threshold, max_keep, min_score):
    """(indices into ``masks`` kept, best first; their (K, 4) float32 boxes)."""
    ok = (scores >= min_score) & masks.reshape(len(masks), -1).any(axis=1)
    index = np.flatnonzero(ok)
    keep = old_mask_nms(masks[ok], scores[ok], iou_threshold, max_keep)
    return index[keep], old_masks_to_boxes(masks[ok][keep])
