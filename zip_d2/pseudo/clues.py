"""Semantic clues: which classes are in the image (CLIP classification) and roughly where
(CLIP Surgery dense activation on open_clip's ViT), ending in one semantic region per class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .params import StageParams, setting

__all__ = [
    "ClipParams",
    "RESIZE_METHODS",
    "resize_image",
    "normalize_batch",
    "image_to_tensor",
    "uint8_tensor",
    "interpolate_pos_embed",
    "surgery_tokens",
    "classify",
    "select_classes",
    "dense_activation",
    "semantic_regions",
]


# How a model input is resized from the (H, W, 3) uint8 image; PSEUDO.RESIZE picks one.
RESIZE_METHODS = ("pil", "opencv")


@dataclass(frozen=True)
class ClipParams(StageParams):
    """Settings of the semantic-clue stage (PSEUDO.CLIP; each key is explained in
    ``zip_d2/config.py``). The model and its weights (MODEL, PRETRAINED) are the labeler's."""

    config_key: ClassVar[str] = "PSEUDO.CLIP"

    input_size: int = setting(512, low=1)
    surgery_depth: int = setting(6, low=1)
    templates: str = setting("ensemble", choices=("ensemble", "single"))
    feature_norm_dim: int = setting(1, choices=(1, 2))
    classify: bool = True
    classify_size: int = setting(224, low=0)
    topk: int = setting(5, low=0)
    min_prob: float = setting(0.1, low=0.0, high=1.0)
    activation_ratio: float = setting(0.7, low=0.0)


def resize_image(image: np.ndarray, size_hw: Tuple[int, int], method: str = "pil") -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (h, w, 3) uint8 RGB, bicubic.

    "pil": PIL's BICUBIC (kernel a = -0.5, support widened by the scale when downscaling, i.e.
        antialiased). The authors' code applies torchvision ``Resize`` to PIL images, which calls
        exactly this, so the pixels are theirs bit for bit. Pure PIL and numpy: safe in forked
        loader workers.
    "opencv": ``cv2.INTER_CUBIC`` (a = -0.75, never antialiased), zip_d2's resize before issue
        20; on real photographs up to 26 grey levels from PIL at 512x512 and 110 at 224x224.
    An image already at (h, w) is returned as it is (PIL's resize is the identity there too).
    """
    h, w = int(size_hw[0]), int(size_hw[1])
    if image.shape[:2] == (h, w):
        return image
    if method == "pil":
        return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BICUBIC))
    if method == "opencv":
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC)
    raise ValueError(f"resize method must be one of {', '.join(RESIZE_METHODS)}; got {method!r}.")


def normalize_batch(pixels: torch.Tensor, mean, std, device="cpu") -> torch.Tensor:
    """(B, h, w, 3) uint8 RGB -> (B, 3, h, w) float32 on ``device``: ``x / 255``, then minus
    ``mean`` and over ``std`` per channel, the arithmetic of torchvision's ``ToTensor`` and
    ``Normalize``. The uint8 pixels travel to the device, a quarter of the float bytes."""
    x = pixels.to(device).permute(0, 3, 1, 2).float().div_(255)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return (x - m) / s


def image_to_tensor(image: np.ndarray, size_hw: Tuple[int, int], mean, std, device="cpu",
                    resize: str = "pil") -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, h, w) float32: resized (:func:`resize_image`) and
    normalised (:func:`normalize_batch`)."""
    return normalize_batch(uint8_tensor(resize_image(image, size_hw, resize))[None], mean, std,
                           device)


def uint8_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(h, w, 3) uint8 array -> the same pixels as a tensor (shared memory; a read-only or
    strided array is copied first, as torch cannot wrap it)."""
    if not (pixels.flags.writeable and pixels.flags.c_contiguous):
        pixels = np.array(pixels, order="C", copy=True)
    return torch.from_numpy(pixels)


def interpolate_pos_embed(pos: torch.Tensor, src_grid: Tuple[int, int],
                          dst_grid: Tuple[int, int]) -> torch.Tensor:
    """(1 + gh*gw, D) positional embedding -> (1 + dh*dw, D), patch part resized bilinearly."""
    if tuple(src_grid) == tuple(dst_grid):
        return pos
    cls, patches = pos[:1], pos[1:]
    d = patches.shape[-1]
    grid = patches.reshape(1, src_grid[0], src_grid[1], d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=tuple(dst_grid), mode="bilinear", align_corners=False)
    return torch.cat([cls, grid.to(pos.dtype).permute(0, 2, 3, 1).reshape(-1, d)], dim=0)


def _attention_pair(block, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Ordinary and value-value attention of an open_clip ResidualAttentionBlock on (B, L, D)."""
    attn = block.attn
    B, L, D = x.shape
    heads = attn.num_heads
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(B, L, heads, D // heads).transpose(1, 2) for t in (q, k, v))
    a_ori = F.scaled_dot_product_attention(q, k, v)
    a_vv = F.scaled_dot_product_attention(v, v, v)
    a_ori, a_vv = (
        F.linear(a.transpose(1, 2).reshape(B, L, D), attn.out_proj.weight, attn.out_proj.bias)
        for a in (a_ori, a_vv)
    )
    return a_ori, a_vv


def surgery_tokens(visual, images: torch.Tensor, depth: int = 6) -> torch.Tensor:
    """CLIP Surgery forward of an open_clip ``VisionTransformer``.

    images: (B, 3, H, W) normalised, H and W multiples of the patch size (any size: the
        positional embedding is interpolated to the patch grid).
    depth: number of final blocks that run the value-value stream beside the original one.
    Returns (B, 1 + gh*gw, E) projected tokens: token 0 is the ordinary CLIP image embedding
    (unnormalised), the rest are the surgery patch features, raster order.
    """
    blocks = visual.transformer.resblocks
    if not 0 < depth <= len(blocks):
        raise ValueError(f"Surgery depth {depth} must be in 1..{len(blocks)}.")
    ph, pw = visual.patch_size
    gh, gw = images.shape[-2] // ph, images.shape[-1] // pw
    dtype = visual.conv1.weight.dtype
    x = visual.conv1(images.to(dtype)).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1)
    x = x + interpolate_pos_embed(visual.positional_embedding, visual.grid_size, (gh, gw)).to(
        x.dtype
    )
    x = visual.ln_pre(x)
    start = len(blocks) - depth
    for blk in blocks[:start]:
        x = blk(x)
    x_new = x
    for blk in blocks[start:]:
        a_ori, a_vv = _attention_pair(blk, blk.ln_1(x))
        x_new = x_new + blk.ls_1(a_vv)
        x = x + blk.ls_1(a_ori)
        x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
    tokens = torch.cat([x[:, :1], x_new[:, 1:]], dim=1)
    tokens = visual.ln_post(tokens)
    return tokens @ visual.proj


def classify(image_embedding: torch.Tensor, text_embeddings: torch.Tensor,
             logit_scale: float) -> torch.Tensor:
    """(E,) image embedding, (C, E) unit text embeddings -> (C,) float32 softmax probabilities."""
    img = F.normalize(image_embedding.float(), dim=-1)
    return (logit_scale * img @ text_embeddings.float().T).softmax(dim=-1)


def select_classes(probs: torch.Tensor, topk: int, min_prob: float) -> np.ndarray:
    """Indices of the classes judged present: the ``topk`` most probable (0 = no limit) among
    those with probability >= ``min_prob``, most probable first. (K,) int64."""
    p = probs.detach().float().cpu().numpy()
    order = np.argsort(-p, kind="stable")
    order = order[p[order] >= min_prob]
    return order[:topk] if topk > 0 else order


def dense_activation(tokens: torch.Tensor, text_embeddings: torch.Tensor,
                     empty_embedding: torch.Tensor, grid_hw: Tuple[int, int],
                     norm_dim: int = 1) -> torch.Tensor:
    """Per-class activation maps on the patch grid.

    tokens: (1, 1 + N, E) surgery tokens of one image (:func:`surgery_tokens`): token 0 is the
        class token, then the N = gh*gw patch tokens in raster order.
    text_embeddings: (C, E) unit rows; empty_embedding: (E,) embedding of the empty prompt,
        subtracted as the "redundant feature" shared by every prompt.
    norm_dim: axis of ``tokens`` the L2 normalisation runs over. 1 (over tokens) is what the
        authors' demo does, kept as the faithful default: like the demo, it normalises each
        channel over the class token *and* the patches, then drops the class token. 2 is
        per-token unit vectors (the class token then plays no part).
    Returns (C, gh, gw) float32, each map min-max normalised to [0, 1] over the patches.
    """
    feats = F.normalize(tokens.float(), dim=norm_dim)[0, 1:]
    sim = feats @ (text_embeddings.float() - empty_embedding.float()).T
    lo, hi = sim.min(dim=0, keepdim=True).values, sim.max(dim=0, keepdim=True).values
    sim = (sim - lo) / (hi - lo).clamp_min(1e-12)
    return sim.T.reshape(-1, grid_hw[0], grid_hw[1])


def semantic_regions(activation: torch.Tensor, image_hw: Tuple[int, int], grid_hw: Tuple[int, int],
                     ratio: float = 0.7) -> Tuple[np.ndarray, np.ndarray]:
    """Activation at image size and the semantic regions on the clustering grid.

    activation: (C, gh, gw) in [0, 1] on the patch grid.
    Returns (C, H, W) float32 activation upsampled bilinearly to the image, and (C, h, w) bool
    regions A = activation > ratio * mean(activation), resized to the clustering grid with
    nearest neighbour.
    """
    up = F.interpolate(activation[None].float(), size=tuple(image_hw), mode="bilinear",
                       align_corners=False)[0]
    region = up > ratio * up.mean(dim=(1, 2), keepdim=True)
    region = F.interpolate(region[None].float(), size=tuple(grid_hw), mode="nearest")[0] > 0.5
    return up.cpu().numpy(), region.cpu().numpy()
