"""The one place COCO segmentations are encoded and decoded.

A binary mask becomes COCO's compressed RLE, area and box (``encode_mask``); any COCO
segmentation (polygons, uncompressed or compressed RLE) becomes a compressed RLE
(``segmentation_to_rle``) or a mask (``segmentation_to_mask``).
"""
from typing import List, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_util


def fortran_uint8(mask: np.ndarray) -> np.ndarray:
    """(H, W) mask (bool or 0/1) -> (H, W) 0/1 uint8 in the Fortran order COCO RLE reads.

    A Fortran-ordered bool mask (what a labeler on CUDA hands over) is only reinterpreted; a
    C-ordered one is transposed by OpenCV's blocked transpose, several times faster than numpy's
    strided copy.
    """
    m = np.asarray(mask)
    m = m.view(np.uint8) if m.dtype == bool else (m != 0).view(np.uint8)
    if m.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {m.shape}")
    if m.flags.f_contiguous:
        return m
    return cv2.transpose(np.ascontiguousarray(m)).T


def encode_mask(mask: np.ndarray) -> Tuple[dict, int, List[float]]:
    """RLE with string counts, area in pixels and tight XYWH box of an (H, W) bool mask."""
    rle = mask_util.encode(fortran_uint8(mask))
    area = int(mask_util.area(rle))
    bbox = [float(v) for v in mask_util.toBbox(rle)]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])],
            "counts": rle["counts"].decode("ascii")}, area, bbox


def segmentation_to_rle(segmentation, height: int, width: int) -> dict:
    """Compressed RLE (pycocotools' form, counts as bytes or str) of any COCO segmentation.

    segmentation: a list of polygons, an uncompressed RLE (``counts`` a list of ints) or a
    compressed RLE; height, width: the image size the polygons are drawn in.
    """
    if isinstance(segmentation, list):
        return mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_util.frPyObjects(segmentation, height, width)
    if isinstance(segmentation["counts"], str):
        return {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    return segmentation


def segmentation_to_mask(segmentation, height: int, width: int) -> np.ndarray:
    """(height, width) bool mask of any COCO segmentation."""
    return mask_util.decode(segmentation_to_rle(segmentation, height, width)).astype(bool)
