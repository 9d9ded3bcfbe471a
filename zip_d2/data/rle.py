"""The one place a binary mask becomes COCO's segmentation, area and box."""
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
