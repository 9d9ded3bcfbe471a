"""Boundary prior: k-means over a CLIP ResNet's layer3 ("conv4_x") features.

The clusters of this mid-layer follow object parts and, importantly, the boundaries between
touching objects; ``instances.py`` turns them into instances.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .params import StageParams, setting

__all__ = ["BoundaryParams", "SIZE_RULES", "short_side_size", "layer3_features", "uniform_init",
           "semantic_init", "kmeans", "cluster_features"]


# How the boundary input's size follows from the image's; PSEUDO.BOUNDARY.SIZE_RULE picks one.
SIZE_RULES = ("truncate", "round16")


@dataclass(frozen=True)
class BoundaryParams(StageParams):
    """Settings of the boundary-prior stage (PSEUDO.BOUNDARY; each key is explained in
    ``zip_d2/config.py``). The trunk and its weights (MODEL, PRETRAINED) are the labeler's."""

    config_key: ClassVar[str] = "PSEUDO.BOUNDARY"

    short_side: int = setting(2048, low=16)
    size_rule: str = setting("truncate", choices=SIZE_RULES)
    num_clusters: int = setting(20, low=1)
    max_iters: int = setting(100, low=1)
    init: str = setting("uniform", choices=("uniform", "semantic"))
    min_clusters: int = setting(8, low=1)
    max_clusters: int = setting(40, low=1)

    def validate(self) -> None:
        super().validate()
        if self.min_clusters > self.max_clusters:
            raise ValueError(f"{self.key('min_clusters')} is larger than MAX_CLUSTERS.")


def short_side_size(image_hw: Tuple[int, int], short_side: int,
                    rule: str = "truncate") -> Tuple[int, int]:
    """(h, w) of the boundary input: the short side is ``short_side``, the aspect kept.

    "truncate": the long side is ``int(short_side * long / short)``, torchvision's
        ``Resize(short_side)`` as the authors' code uses it (480x640 -> 2048x2730; layer3 then
        floors to a 128x170 grid).
    "round16": both sides rounded to multiples of 16 (480x640 -> 2048x2736, grid 128x171),
        zip_d2's rule before issue 20: every grid cell covers exactly 16x16 input pixels.
    """
    H, W = (int(v) for v in image_hw)
    if rule == "truncate":
        # torchvision's own arithmetic (int of the float product), so the sizes agree exactly.
        if H <= W:
            return short_side, int(short_side * W / H)
        return int(short_side * H / W), short_side
    if rule == "round16":
        s = short_side / min(H, W)
        return max(16, int(round(H * s / 16)) * 16), max(16, int(round(W * s / 16)) * 16)
    raise ValueError(f"size rule must be one of {', '.join(SIZE_RULES)}; got {rule!r}.")


def layer3_features(visual, images: torch.Tensor) -> torch.Tensor:
    """open_clip ``ModifiedResNet`` trunk up to layer3 (layer4 and attention pool unused).

    images: (B, 3, H, W) normalised. Returns (B, 16 * width, H/16, W/16) (2048 channels for
    RN50x64).
    """
    x = visual.stem(images.to(visual.conv1.weight.dtype))
    x = visual.layer1(x)
    x = visual.layer2(x)
    return visual.layer3(x)


def uniform_init(x: torch.Tensor, k: int) -> torch.Tensor:
    """The authors' deterministic seeding: K pixels evenly spaced in raster order, from the
    first to the last (rounded; duplicates, possible only when N < K, collapse). (K, D)."""
    n = x.shape[0]
    idx = torch.linspace(0, n - 1, k, device=x.device).round().long().unique()
    return x[idx].clone()


def semantic_init(x: torch.Tensor, activation: torch.Tensor, grid_hw: Tuple[int, int],
                  min_k: int = 8, max_k: int = 40, background_seeds: int = 8,
                  ratio: float = 0.7) -> torch.Tensor:
    """Semantic-aware seeding with automatic K (our reading of the paper's option; its
    equations are not available to the project).

    Every local maximum (3x3) of the strongest class activation that lies inside the semantic
    region seeds one centroid, so K grows with the number of activated object parts; another
    ``background_seeds`` come from raster-uniform cells outside the region. K is clamped to
    [min_k, max_k], peaks taken strongest first; missing seeds are filled raster-uniformly.

    x: (N, D) features of the h*w grid cells in raster order.
    activation: (C, h, w) class activations in [0, 1] on the same grid.
    Returns (K, D) initial centroids.
    """
    h, w = grid_hw
    act = (
        activation.float().amax(dim=0) if activation.numel() else torch.zeros(h, w, device=x.device)
    )
    region = act > ratio * act.mean()
    peaks = (act == F.max_pool2d(act[None, None], 3, 1, 1)[0, 0]) & region
    peak_idx = torch.nonzero(peaks.flatten()).flatten()
    peak_idx = peak_idx[torch.argsort(-act.flatten()[peak_idx], stable=True)][
        : max_k - background_seeds
    ]
    outside = torch.nonzero(~region.flatten()).flatten()
    if outside.numel():
        step = max(1, outside.numel() // background_seeds)
        bg_idx = outside[::step][:background_seeds]
    else:
        bg_idx = outside
    idx = torch.cat([peak_idx, bg_idx])
    k = int(min(max(idx.numel(), min_k), max_k))
    if idx.numel() < k:
        fill = torch.arange(k, device=x.device) * (x.shape[0] // k)
        fill = fill[~torch.isin(fill, idx)]
        idx = torch.cat([idx, fill[: k - idx.numel()]])
    return x[idx[:k]].clone()


@torch.no_grad()
def kmeans(
    x: torch.Tensor,
    k: int = 20,
    max_iters: int = 100,
    init: Optional[torch.Tensor] = None,
    rtol: float = 1e-5,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means, Euclidean, fully batched on ``x``'s device.

    x: (N, D) features. Float16/bfloat16 features stay in that dtype for the two matrix
        products per iteration (on CUDA accumulated in float32), which halves the memory
        traffic that bounds this step; everything else runs in float32. Half-precision
        features are first divided by their largest row norm, so every product |x . c| is at
        most 1: unscaled, RN50x64's 2048-channel ReLU features give products beyond float16's
        65504 (inf, and a meaningless argmin). k-means is invariant to a global scale, so the
        labels are unchanged and the centroids are scaled back. CPU half matmul is slow; the
        labelers pass half features on CUDA only.
    init: (K, D) initial centroids in the units of ``x``; None = :func:`uniform_init` with ``k``.
    Stops when no centroid moves by more than ``rtol`` relative (``torch.allclose``, as the
    authors' code) or after ``max_iters``; an empty cluster keeps its centroid.
    Returns labels (N,) int64 of the last assignment and centroids (K, D) float32.
    Raises ValueError when ``x`` holds inf or nan (e.g. a trunk that overflowed in float16).
    """
    half = x.dtype in (torch.float16, torch.bfloat16)
    dtype = x.dtype if half else torch.float32
    scale = 1.0
    if half:
        norms = x.float().pow(2).sum(dim=1)
        top = norms.max() if norms.numel() else norms.new_ones(())
        if not torch.isfinite(top):
            raise ValueError("k-means features contain inf or nan (a half-precision overflow "
                             "upstream?); run PSEUDO.PRECISION bf16 or fp32.")
        scale = float(top.sqrt().item()) or 1.0
        x = (x.float() / scale).to(dtype)
    else:
        x = x.float()
    c = (uniform_init(x, k) if init is None else init / scale).float().clone()
    k = c.shape[0]
    # allclose's absolute tolerance (1e-8) is in the caller's units: scale it with the data.
    atol = 1e-8 / scale
    x_sq = x.float().pow(2).sum(dim=1, keepdim=True)
    labels = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for _ in range(max_iters):
        # ||x - c||^2 as one matrix product; ||x||^2 is constant per row but kept so the
        # distances are true ones (argmin ties resolve as in a direct computation).
        d = (x_sq + c.pow(2).sum(dim=1)[None]) - 2.0 * (x @ c.to(dtype).T).float()
        labels = d.argmin(dim=1)
        # Means as one product with the count-normalised one-hot matrix: no loop over clusters,
        # no float atomics (index_add_ on CUDA sums in a run-dependent order), and no large
        # partial sums that could overflow in float16. Dividing by the weights' own sum undoes
        # the rounding of 1/count in half precision (every member carries the same weight).
        onehot = F.one_hot(labels, k).float()
        counts = onehot.sum(dim=0)
        w = (onehot / counts.clamp_min(1)).to(dtype)
        means = (w.T @ x).float() / w.float().sum(dim=0).clamp_min(1e-30)[:, None]
        new_c = torch.where(counts[:, None] > 0, means, c)
        settled = torch.allclose(new_c, c, rtol=rtol, atol=atol)
        c = new_c
        if settled:
            break
    return labels, c * scale


def cluster_features(feats: torch.Tensor, params: BoundaryParams,
                     activation: Optional[torch.Tensor] = None,
                     activation_ratio: float = 0.7) -> np.ndarray:
    """(C, h, w) layer3 features of one image -> (h, w) int64 cluster map.

    activation: (K, g, g) class activations of the image, used by ``params.init == "semantic"``
    (resized to the feature grid, thresholded at ``activation_ratio`` x mean); None or empty
    falls back to the uniform seeding.
    """
    h, w = feats.shape[-2:]
    flat = feats.flatten(1).T  # half precision stays half for k-means on CUDA
    init = None
    if params.init == "semantic" and activation is not None and len(activation):
        act = F.interpolate(
            activation[None].float(), size=(h, w), mode="bilinear", align_corners=False
        )[0]
        init = semantic_init(flat.float(), act, (h, w), params.min_clusters, params.max_clusters,
                             ratio=activation_ratio)
    labels, _ = kmeans(flat, params.num_clusters, params.max_iters, init=init)
    return labels.view(h, w).cpu().numpy()
