"""The one place zip_d2 builds its frozen foundation models (CLIP through open_clip, SAM).

In the spirit of ``open_clip.create_model(name, pretrained)``: a model name plus a weight source
(a pretrained tag such as ``"openai"``, or a local checkpoint file). Weights are never silently
replaced by random ones: missing weights raise :class:`MissingWeightsError` with one line saying
what is missing and how to provide it; random initialisation happens only when the caller asks
for it (test presets) and is announced with a loud banner every time.

Set ``ZIP_D2_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) to forbid download attempts: weights must
then already be in the caches or given as files.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import os
import urllib.request
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional, Tuple

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "MissingWeightsError",
    "ClipBundle",
    "create_clip",
    "create_sam",
    "announce_random_weights",
    "default_cache_dir",
    "SAM_CHECKPOINT_URLS",
    "TINY_CLIP_CONFIGS",
]


class MissingWeightsError(RuntimeError):
    """Weights that a non-random model needs are not available; the message says how to get them."""


# Small open_clip architectures for tests and smoke runs (random weights only in practice).
# The tokenizer is CLIP's, so the text vocabulary keeps CLIP's size.
TINY_CLIP_CONFIGS = {
    "zip-tiny-vit": dict(
        embed_dim=32,
        quick_gelu=True,
        vision_cfg=dict(image_size=64, layers=3, width=32, patch_size=16, head_width=16),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
    ),
    "zip-tiny-rn": dict(
        embed_dim=32,
        quick_gelu=True,
        vision_cfg=dict(image_size=64, layers=[1, 1, 1, 1], width=8, patch_size=None),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
    ),
}

# Published segment-anything checkpoints. The 6 hex digits in each file name are the start of
# the file's MD5, which is what the download is checked against.
SAM_CHECKPOINT_URLS = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}


def default_cache_dir(cache_dir: str = "") -> str:
    """The weight cache: ``cache_dir`` if given, else ``$ZIP_D2_CACHE`` or ``~/.cache/zip_d2``."""
    if cache_dir:
        return os.path.expanduser(cache_dir)
    return os.path.expanduser(os.environ.get("ZIP_D2_CACHE", "~/.cache/zip_d2"))


def _offline() -> bool:
    return any(os.environ.get(k, "") not in ("", "0") for k in ("ZIP_D2_OFFLINE", "HF_HUB_OFFLINE"))


def announce_random_weights(what: str) -> None:
    """Log a boxed warning that ``what`` runs with random weights (called on every build)."""
    line = f"!!! RANDOM WEIGHTS: {what} is randomly initialised; its outputs are noise. !!!"
    bar = "!" * len(line)
    logger.warning("\n%s\n%s\n%s", bar, line, bar)


def _looks_like_path(source: str) -> bool:
    return os.sep in source or source.startswith(".") or source.endswith(
        (".pt", ".pth", ".bin", ".safetensors", ".ckpt"))


@dataclass
class ClipBundle:
    """A frozen open_clip model with what is needed to feed it.

    model: ``open_clip.model.CLIP`` in eval mode, gradients off.
    tokenizer: callable list[str] -> (N, context_length) int64 tensor.
    name / pretrained: the architecture name and the weight source as given.
    weights: where the weights came from, stable across machines: "open_clip:<name>/<tag>"
        for a pretrained tag, the file path as given, or "random".
    mean / std: per-channel RGB normalisation for images in [0, 1].
    """

    model: nn.Module
    tokenizer: Callable
    name: str
    pretrained: str
    weights: str
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]


def _resolve_clip_weights(name: str, pretrained: str, cache_dir: str) -> str:
    """Local file holding ``name``'s ``pretrained`` weights, downloading it unless offline."""
    import open_clip
    from open_clip.pretrained import download_pretrained

    how = (f"pass a local checkpoint file as the pretrained value, or run once with network access "
           f"so open_clip can download '{pretrained}' into {cache_dir}")
    if os.path.isfile(pretrained):
        return pretrained
    if _looks_like_path(pretrained):
        raise MissingWeightsError(
            f"CLIP weights for {name}: checkpoint file '{pretrained}' does not exist; give an "
            f"existing file or a pretrained tag such as 'openai'.")
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not tag_cfg:
        raise MissingWeightsError(
            f"CLIP weights for {name}: '{pretrained}' is neither a file nor one of open_clip's "
            f"tags for it ({', '.join(open_clip.list_pretrained_tags_by_model(name)) or 'none'}).")
    cached = _cached_clip_file(tag_cfg, cache_dir)
    if cached:
        return cached
    if _offline():
        raise MissingWeightsError(
            f"CLIP weights {name}/{pretrained} are not in the cache ({cache_dir}) and downloads "
            f"are off (ZIP_D2_OFFLINE/HF_HUB_OFFLINE); {how}.")
    try:
        path = download_pretrained(tag_cfg, cache_dir=cache_dir)
    except Exception as e:  # network errors come in many types; all mean the same thing here
        raise MissingWeightsError(
            f"CLIP weights {name}/{pretrained} could not be downloaded "
            f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); {how}."
        ) from e
    if not path or not os.path.isfile(path):
        raise MissingWeightsError(
            f"CLIP weights {name}/{pretrained} were not found after download; {how}."
        )
    return path


def _cached_clip_file(tag_cfg: dict, cache_dir: str) -> str:
    """The already-downloaded file for an open_clip tag, or "" (no network access)."""
    url = tag_cfg.get("url", "")
    if url:
        candidate = os.path.join(cache_dir, os.path.basename(url))
        if os.path.isfile(candidate):
            return candidate
    hub = tag_cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return ""
        model_id, filename = os.path.split(hub)
        names = (
            [filename]
            if filename
            else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        )
        # Our cache first, then the Hugging Face default one a user may already have filled.
        for hub_cache in dict.fromkeys([cache_dir or None, None]):
            for fname in names:
                found = try_to_load_from_cache(model_id, fname, cache_dir=hub_cache)
                if isinstance(found, str) and os.path.isfile(found):
                    return found
    return ""


def create_clip(
    name: str,
    pretrained: str = "openai",
    device: str | torch.device = "cpu",
    random_weights: bool = False,
    cache_dir: str = "",
    quick_gelu: Optional[bool] = None,
) -> ClipBundle:
    """Build a frozen open_clip model.

    Args:
        name: open_clip architecture ("ViT-B-16", "RN50x64", ...) or one of
            :data:`TINY_CLIP_CONFIGS` (test presets).
        pretrained: open_clip tag ("openai") or a local checkpoint file. Ignored with
            ``random_weights``.
        device: where the model lives.
        random_weights: build with random initialisation (announced loudly). Only for tests.
        cache_dir: download cache for tags ("" = open_clip's default, ``~/.cache/clip``).
        quick_gelu: activation of the checkpoint; None = what the "openai" tag uses for this
            architecture (True for all OpenAI CLIPs), which is right for OpenAI weights given as a
            local file too.
    Raises:
        MissingWeightsError: the weights are not available (one line, with the remedy).
    """
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    if quick_gelu is None:
        openai_cfg = open_clip.get_pretrained_cfg(name, "openai") or {}
        quick_gelu = bool(
            openai_cfg.get("quick_gelu", TINY_CLIP_CONFIGS.get(name, {}).get("quick_gelu", False))
        )
    if name in TINY_CLIP_CONFIGS:
        cfg = copy.deepcopy(TINY_CLIP_CONFIGS[name])
        cfg["quick_gelu"] = quick_gelu
        model = open_clip.model.CLIP(**cfg)
        tokenizer = open_clip.tokenizer.SimpleTokenizer(
            context_length=cfg["text_cfg"]["context_length"]
        )
        if random_weights:
            announce_random_weights(f"CLIP {name}")
            weights = "random"
        else:
            path = pretrained if os.path.isfile(pretrained) else None
            if path is None:
                raise MissingWeightsError(
                    f"CLIP weights for test architecture {name}: '{pretrained}' is not a file; "
                    f"give a checkpoint file or set random weights.")
            model.load_state_dict(open_clip.factory.load_state_dict(path), strict=True)
            weights = path
    else:
        if name not in open_clip.list_models():
            raise ValueError(
                f"Unknown open_clip model '{name}'; known: "
                f"{', '.join(open_clip.list_models()[:10])}, ..."
            )
        if random_weights:
            announce_random_weights(f"CLIP {name}")
            model = open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu)
            weights = "random"
        else:
            resolved_cache = cache_dir or os.path.expanduser("~/.cache/clip")
            path = _resolve_clip_weights(name, pretrained, resolved_cache)
            model = open_clip.create_model(name, pretrained=path, force_quick_gelu=quick_gelu)
            weights = pretrained if os.path.isfile(pretrained) else f"open_clip:{name}/{pretrained}"
        tokenizer = open_clip.get_tokenizer(name)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return ClipBundle(
        model=model,
        tokenizer=tokenizer,
        name=name,
        pretrained=pretrained,
        weights=weights,
        mean=tuple(OPENAI_DATASET_MEAN),
        std=tuple(OPENAI_DATASET_STD),
    )


def _build_tiny_sam() -> nn.Module:
    """A segment-anything ``Sam`` with SAM's structure at toy size (256 input, 2 encoder blocks)."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    image_size, patch, dim = 256, 16, 32
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=2, embed_dim=32, img_size=image_size, mlp_ratio=2,
            norm_layer=partial(nn.LayerNorm, eps=1e-6), num_heads=2, patch_size=patch,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=[1], window_size=4, out_chans=dim),
        prompt_encoder=PromptEncoder(
            embed_dim=dim, image_embedding_size=(image_size // patch, image_size // patch),
            input_image_size=(image_size, image_size), mask_in_chans=8),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
            transformer_dim=dim, iou_head_depth=2, iou_head_hidden_dim=32),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def _build_sam_architecture(model_type: str) -> nn.Module:
    if model_type == "tiny":
        return _build_tiny_sam()
    from segment_anything import sam_model_registry

    if model_type not in SAM_CHECKPOINT_URLS:
        raise ValueError(
            f"Unknown SAM model type '{model_type}'; use vit_h, vit_l, vit_b (or tiny for tests)."
        )
    return sam_model_registry[model_type](checkpoint=None)


def _download_checked(url: str, dst: str) -> None:
    """Download ``url`` to ``dst`` with a progress bar; the MD5 must start with the name's tag."""
    from tqdm import tqdm

    expected = os.path.splitext(os.path.basename(url))[0].rsplit("_", 1)[-1]
    tmp = dst + ".part"
    md5 = hashlib.md5()
    with urllib.request.urlopen(url, timeout=60) as src, open(tmp, "wb") as out:
        total = int(src.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(dst)) as bar:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                md5.update(chunk)
                bar.update(len(chunk))
    if not md5.hexdigest().startswith(expected):
        os.remove(tmp)
        raise RuntimeError(
            f"checksum mismatch for {url}: md5 {md5.hexdigest()} does not start with {expected}"
        )
    os.replace(tmp, dst)


def _resolve_sam_checkpoint(model_type: str, checkpoint: str, cache_dir: str) -> str:
    if checkpoint:
        if not os.path.isfile(checkpoint):
            raise MissingWeightsError(
                f"SAM {model_type} checkpoint '{checkpoint}' does not exist; give an existing file "
                f"(published: {SAM_CHECKPOINT_URLS.get(model_type, 'n/a')}).")
        return checkpoint
    if model_type not in SAM_CHECKPOINT_URLS:
        raise MissingWeightsError(
            f"SAM {model_type} has no published checkpoint; give a checkpoint file."
        )
    url = SAM_CHECKPOINT_URLS[model_type]
    dst = os.path.join(cache_dir, os.path.basename(url))
    if os.path.isfile(dst):
        return dst
    how = f"download {url} to {dst} (or give PSEUDO.SAM.CHECKPOINT)"
    if _offline():
        raise MissingWeightsError(
            f"SAM {model_type} checkpoint is not in the cache and downloads are off "
            f"(ZIP_D2_OFFLINE/HF_HUB_OFFLINE); {how}.")
    os.makedirs(cache_dir, exist_ok=True)
    logger.info("Downloading SAM %s checkpoint %s -> %s", model_type, url, dst)
    try:
        _download_checked(url, dst)
    except Exception as e:  # any network or checksum failure means: no weights
        raise MissingWeightsError(
            f"SAM {model_type} checkpoint could not be downloaded ({type(e).__name__}); {how}."
        ) from e
    return dst


def create_sam(
    model_type: str = "vit_h",
    checkpoint: str = "",
    cache_dir: str = "",
    device: str | torch.device = "cpu",
    random_weights: bool = False,
) -> nn.Module:
    """Build a frozen segment-anything ``Sam``.

    Args:
        model_type: "vit_h", "vit_l", "vit_b", or "tiny" (toy size, for tests).
        checkpoint: local state-dict file; "" = the published checkpoint, downloaded once into
            ``cache_dir`` (progress bar, MD5 check) unless offline.
        cache_dir: "" = :func:`default_cache_dir`.
        random_weights: random initialisation, announced loudly. Only for tests.
    Raises:
        MissingWeightsError: no checkpoint available (one line, with the remedy).
        ValueError: the checkpoint's keys or shapes do not match ``model_type``.
    """
    if random_weights:
        announce_random_weights(f"SAM {model_type}")
        sam = _build_sam_architecture(model_type)
        weights = "random"
    else:
        path = _resolve_sam_checkpoint(model_type, checkpoint, default_cache_dir(cache_dir))
        sam = _build_sam_architecture(model_type)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        try:
            sam.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"SAM checkpoint {path} does not fit SAM {model_type}: "
                             f"{str(e).splitlines()[0]}") from e
        # The published URL, not the cache path, so records agree across machines.
        weights = checkpoint or SAM_CHECKPOINT_URLS[model_type]
    sam = sam.to(device).eval()
    for p in sam.parameters():
        p.requires_grad_(False)
    sam.zip_weights = weights  # "random", the checkpoint path as given, or the published URL
    return sam
