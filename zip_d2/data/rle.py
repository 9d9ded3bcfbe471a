"""The one place COCO segmentations are encoded and decoded.

A binary mask becomes COCO's compressed RLE, area and box (``encode_mask``); any COCO
segmentation (polygons, uncompressed or compressed RLE) becomes a compressed RLE
(``segmentation_to_rle``) or a mask (``segmentation_to_mask``).
"""
from typing import List, Tuple

import numpy as np
from pycocotools import mask as mask_util


def encode_mask(mask: np.ndarray) -> Tuple[dict, int, List[float]]:
    """RLE with string counts, area in pixels and tight XYWH box of an (H, W) bool mask."""
    rle = mask_util.encode(np.asfortranarray(mask, dtype=np.uint8))
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
