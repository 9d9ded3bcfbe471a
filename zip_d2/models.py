"""The one place zip_d2 builds its frozen foundation models (CLIP through open_clip, SAM).

In the spirit of ``open_clip.create_model(name, pretrained)``: a model name plus a weight source
(a pretrained tag such as ``"openai"``, or a local checkpoint file). Weights are never silently
replaced by random ones: missing weights raise :class:`MissingWeightsError` with one line per
missing model saying what is missing and how to provide it; random initialisation happens only
when the caller asks for it (test presets) and is announced with a loud banner every time.

Where weights come from is decided without the network (:class:`WeightSource`); a download is
tried only after one short probe of its host says the host answers, so a machine without
network learns in seconds, one line per model, every weight it lacks and the config key that
provides it (:func:`require_weights`). Set ``ZIP_D2_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) to skip
the probe and forbid downloads: weights must then already be in the caches or given as files.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "MissingWeightsError",
    "WeightSource",
    "clip_weight_source",
    "sam_weight_source",
    "checkpoint_weight_source",
    "require_weights",
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
        (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".pkl"))


# -- where weights come from, decided without the network ---------------------------------------

@dataclass(frozen=True)
class WeightSource:
    """One set of weights a model needs, resolved on this machine without the network.

    what: the model as a user names it ("CLIP ViT-B/16", "SAM ViT-H", "detector").
    key: the config key (or argument) whose value names the weights ("PSEUDO.SAM.CHECKPOINT").
    value: that value: a pretrained tag, a file, a URL.
    local: the file on this machine that holds the weights; "" when there is none yet.
    url: where a download would fetch them from when ``local`` is ""; "" when none can.
    cache: the plain file a download is kept in ("" when the cache is not one plain file).
    cache_dir: the folder a download is kept in when it is not one plain file (open_clip's
        Hugging Face hub downloads), else "".
    problem: why no download can provide them, whatever the network ("" when one can).
    """

    what: str
    key: str
    value: str
    local: str = ""
    url: str = ""
    cache: str = ""
    cache_dir: str = ""
    problem: str = ""


def _clip_display_name(name: str) -> str:
    """open_clip's "ViT-B-16" as OpenAI and the papers write it: "ViT-B/16"."""
    return re.sub(r"^(ViT-[A-Za-z]+)-(\d+)", r"\1/\2", name)


def _clip_cache_dir(cache_dir: str) -> str:
    return os.path.expanduser(cache_dir) if cache_dir else os.path.expanduser("~/.cache/clip")


def _clip_download_url(tag_cfg: dict) -> str:
    """The URL open_clip's ``download_pretrained`` fetches for a tag: the Hugging Face hub file
    when the hub client is installed (safetensors first), else the tag's plain URL."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME
    from open_clip.pretrained import has_hf_hub

    if tag_cfg.get("hf_hub") and has_hf_hub():
        from huggingface_hub import hf_hub_url  # honours HF_ENDPOINT (mirrors)

        model_id, filename = os.path.split(tag_cfg["hf_hub"])
        return hf_hub_url(model_id, filename or HF_SAFE_WEIGHTS_NAME)
    return tag_cfg.get("url", "")


def clip_weight_source(name: str, pretrained: str, cache_dir: str = "",
                       key: str = "pretrained") -> WeightSource:
    """Where open_clip model ``name``'s ``pretrained`` weights (a tag or a file) come from.

    cache_dir: "" = open_clip's default download cache, ``~/.cache/clip`` (the Hugging Face
    default cache is looked at too). No network access.
    """
    import open_clip

    what = f"CLIP {_clip_display_name(name)}"
    source = WeightSource(what, key, pretrained)
    if os.path.isfile(pretrained):
        return replace(source, local=pretrained)
    if name in TINY_CLIP_CONFIGS:
        return replace(source, problem=(
            f"{key} '{pretrained}' is not a file, and the test architecture {name} has no "
            "published weights; give a checkpoint file"))
    if _looks_like_path(pretrained):
        return replace(source, problem=(
            f"{key} names the file '{pretrained}', which does not exist; give an existing file "
            "or an open_clip tag such as 'openai'"))
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not tag_cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        return replace(source, problem=(
            f"{key} '{pretrained}' is neither a file nor one of open_clip's tags for {name} "
            f"({tags})"))
    cache_dir = _clip_cache_dir(cache_dir)
    url = _clip_download_url(tag_cfg)
    plain = url == tag_cfg.get("url")  # no hub client: open_clip keeps the file as it is named
    return replace(source, local=_cached_clip_file(tag_cfg, cache_dir), url=url,
                   cache=os.path.join(cache_dir, os.path.basename(url)) if plain else "",
                   cache_dir="" if plain else cache_dir)


def sam_weight_source(model_type: str, checkpoint: str = "", cache_dir: str = "",
                      key: str = "checkpoint") -> WeightSource:
    """Where a segment-anything checkpoint comes from: the file ``checkpoint``, or ("") the
    published one, downloaded into ``cache_dir`` ("" = :func:`default_cache_dir`). No network."""
    size = model_type[len("vit_"):].upper() if model_type.startswith("vit_") else ""
    what = f"SAM ViT-{size}" if size else f"SAM {model_type}"
    url = SAM_CHECKPOINT_URLS.get(model_type, "")
    source = WeightSource(what, key, checkpoint)
    if checkpoint:
        if os.path.isfile(checkpoint):
            return replace(source, local=checkpoint)
        return replace(source, problem=(
            f"{key} names the file '{checkpoint}', which does not exist; give an existing file"
            + (f" (published: {url})" if url else "")))
    if not url:
        return replace(source, problem=f"SAM {model_type} has no published checkpoint; set {key}")
    dst = os.path.join(default_cache_dir(cache_dir), os.path.basename(url))
    return replace(source, local=dst if os.path.isfile(dst) else "", url=url, cache=dst)


def checkpoint_weight_source(path: str, key: str = "MODEL.WEIGHTS",
                             what: str = "detector") -> WeightSource:
    """Where a detectron2 checkpoint comes from: a local file, an http(s) URL, or a
    ``detectron2://`` / ``catalog://`` model-zoo name, which detectron2 downloads into iopath's
    cache on first use (looked up here, not downloaded)."""
    source = WeightSource(what, key, path)
    url = path
    if url.startswith("catalog://"):
        from detectron2.checkpoint.catalog import ModelCatalog

        try:
            url = ModelCatalog.get(url[len("catalog://"):])
        except KeyError:
            return replace(source, problem=f"{key} '{path}' is not in detectron2's model catalog")
    from detectron2.utils.file_io import Detectron2Handler

    if url.startswith(Detectron2Handler.PREFIX):
        url = Detectron2Handler.S3_DETECTRON2_PREFIX + url[len(Detectron2Handler.PREFIX):]
    if url.startswith(("http://", "https://")):
        from iopath.common.file_io import get_cache_dir

        # The file iopath's HTTPURLHandler downloads the URL to (and reuses from then on).
        cached = os.path.join(get_cache_dir(),
                              os.path.dirname(urllib.parse.urlparse(url).path.lstrip("/")),
                              url.split("/")[-1])
        return replace(source, local=cached if os.path.isfile(cached) else "", url=url,
                        cache=cached)
    if os.path.isfile(path):
        return replace(source, local=path)
    return replace(source, problem=(
        f"{key} names the file '{path}', which does not exist; give an existing checkpoint "
        "(or a detectron2:// model-zoo name)"))


# -- can a missing file be downloaded? one short probe per host -----------------------------------

# Seconds the probe waits for a host's first answer. Any HTTP answer (even an error status)
# means downloads can start; no answer means none can, and the job stops at once instead of
# retrying each file for a minute.
PROBE_TIMEOUT_S = 5.0
_PROBED: Dict[str, str] = {}  # host -> "" (answers) or why not, for the life of the process


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect is an answer: the host is reachable


def _probe(url: str) -> str:
    """"" if ``url``'s host answers an HTTP HEAD request (through the environment's proxies,
    as downloads go), else a short reason. Non-HTTP URLs (file://) are not probed."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https"):
        return ""
    host = parsed.netloc
    if host not in _PROBED:
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            opener.open(urllib.request.Request(url, method="HEAD"),
                        timeout=PROBE_TIMEOUT_S).close()
            _PROBED[host] = ""
        except urllib.error.HTTPError:
            _PROBED[host] = ""
        except Exception as e:  # DNS, refused, timeout, proxy, TLS: no download can work
            reason = getattr(e, "reason", e)
            text = re.sub(r"^\[Errno -?\d+\] ", "", str(reason)) or type(reason).__name__
            _PROBED[host] = f"{host} unreachable: {text}"
    return _PROBED[host]


def _download_blockers(urls: Sequence[str]) -> Dict[str, str]:
    """{url: why it cannot be downloaded now} for the URLs that cannot (hosts probed at once)."""
    urls = [u for u in dict.fromkeys(urls) if u]
    if _offline():
        return {u: "downloads are off (ZIP_D2_OFFLINE/HF_HUB_OFFLINE)" for u in urls}
    if not urls:
        return {}
    by_host = {}  # one URL per host is probed; the others share its answer
    for u in urls:
        by_host.setdefault(urllib.parse.urlparse(u).netloc, u)
    with ThreadPoolExecutor(max_workers=len(by_host)) as pool:
        answers = dict(zip(by_host, pool.map(_probe, by_host.values())))
    return {u: answers[urllib.parse.urlparse(u).netloc] for u in urls
            if answers[urllib.parse.urlparse(u).netloc]}


def _checked(source: WeightSource) -> WeightSource:
    """``source``, or when its local file is unreadable, that file named as its problem."""
    why = unreadable_weights(source.local) if source.local else ""
    if not why:
        return source
    fix = ("delete it to download it again" if source.cache == source.local or source.url
           else f"give a good copy as {source.key}")
    return replace(source, local="", problem=(
        f"{source.key} file {source.local} is not a usable checkpoint: {why}; {fix}"))


def _home(path: str) -> str:
    """``path`` with the home directory written as ``~`` (shorter lines)."""
    home = os.path.expanduser("~")
    return "~" + path[len(home):] if home != "~" and path.startswith(home + os.sep) else path


def unreadable_weights(path: str) -> str:
    """Why the weight file ``path`` cannot be a checkpoint (empty, a safetensors file with a
    broken header, a truncated zip-format torch file), or "" when it may be one. Cheap: reads
    the header or the zip directory, never the tensors."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "it is empty"
        if path.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(path, framework="pt"):
                return ""
        with open(path, "rb") as f:
            zip_format = f.read(4) == b"PK\x03\x04"  # torch.save's format since torch 1.6
        if zip_format:
            import zipfile

            with zipfile.ZipFile(path):
                return ""
    except Exception as e:  # safetensors, zipfile and the OS each raise their own types
        return f"it cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:80]})"
    return ""


def require_weights(sources: Sequence[WeightSource]) -> None:
    """Return if every source is on this machine or can be downloaded now; otherwise raise
    :class:`MissingWeightsError`: a head line (why nothing can be downloaded), then ONE line
    per missing model naming the key that provides it, where to get it and where a download
    is kept. Costs at most one short probe per download host."""
    sources = [_checked(s) for s in sources]
    todo = [s for s in sources if not s.local]
    blocked = _download_blockers([s.url for s in todo if not s.problem])
    missing = [s for s in todo if s.problem or not s.url or s.url in blocked]
    if not missing:
        return
    fixes = []
    for s in missing:
        if s.problem:
            fixes.append(f"{s.what}: {s.problem}")
        else:
            keep = (f" (or save it as {_home(s.cache)})" if s.cache else
                    f" (downloads are kept in {_home(s.cache_dir)})" if s.cache_dir else "")
            fixes.append(f"{s.what}: set {s.key} to a local copy of {s.url}{keep}")
    reasons = sorted({blocked[s.url] for s in missing if s.url in blocked})
    what = "missing weights" if any(not s.problem or "not a usable checkpoint" not in s.problem
                                    for s in missing) else "unusable weights"
    head = f"{what} ({'; '.join(reasons)})" if reasons else what
    tail = "; run once with network access to fill the caches, or" if reasons else ";"
    raise MissingWeightsError("\n".join([f"{head}{tail} give files:"]
                                         + [f"  {fix}" for fix in fixes]))


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


def _resolve_clip_weights(name: str, pretrained: str, cache_dir: str, key: str) -> str:
    """Local file holding ``name``'s ``pretrained`` weights, downloading it if it can."""
    import open_clip
    from open_clip.pretrained import download_pretrained

    source = clip_weight_source(name, pretrained, cache_dir, key)
    if source.local and not unreadable_weights(source.local):
        return source.local
    require_weights([source])  # names an unreadable file, a missing one or a blocked host
    how = f"set {key} to a local copy of {source.url}"
    try:
        path = download_pretrained(open_clip.get_pretrained_cfg(name, pretrained),
                                   cache_dir=_clip_cache_dir(cache_dir))
    except Exception as e:  # network errors come in many types; all mean the same thing here
        raise MissingWeightsError(
            f"{source.what} ({name}/{pretrained}) could not be downloaded "
            f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); {how}."
        ) from e
    if not path or not os.path.isfile(path):
        raise MissingWeightsError(
            f"{source.what} ({name}/{pretrained}) was not found after download; {how}.")
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
    key: str = "pretrained",
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
        key: the config key that set ``pretrained``, named in the error when weights are missing.
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
            path = _resolve_clip_weights(name, pretrained, cache_dir, key)
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
            path = _resolve_clip_weights(name, pretrained, cache_dir, key)
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


def _resolve_sam_checkpoint(model_type: str, checkpoint: str, cache_dir: str, key: str) -> str:
    source = sam_weight_source(model_type, checkpoint, cache_dir, key)
    if source.local and not unreadable_weights(source.local):
        return source.local
    require_weights([source])
    os.makedirs(os.path.dirname(source.cache), exist_ok=True)
    logger.info("Downloading SAM %s checkpoint %s -> %s", model_type, source.url, source.cache)
    try:
        _download_checked(source.url, source.cache)
    except Exception as e:  # any network or checksum failure means: no weights
        raise MissingWeightsError(
            f"{source.what} checkpoint could not be downloaded ({type(e).__name__}); set {key} to "
            f"a local copy of {source.url} (or save it as {source.cache}).") from e
    return source.cache


def create_sam(
    model_type: str = "vit_h",
    checkpoint: str = "",
    cache_dir: str = "",
    device: str | torch.device = "cpu",
    random_weights: bool = False,
    key: str = "checkpoint",
) -> nn.Module:
    """Build a frozen segment-anything ``Sam``.

    Args:
        model_type: "vit_h", "vit_l", "vit_b", or "tiny" (toy size, for tests).
        checkpoint: local state-dict file; "" = the published checkpoint, downloaded once into
            ``cache_dir`` (progress bar, MD5 check) unless offline.
        cache_dir: "" = :func:`default_cache_dir`.
        random_weights: random initialisation, announced loudly. Only for tests.
        key: the config key that set ``checkpoint``, named in the error when it is missing.
    Raises:
        MissingWeightsError: no checkpoint available (one line, with the remedy).
        ValueError: the checkpoint's keys or shapes do not match ``model_type``.
    """
    if random_weights:
        announce_random_weights(f"SAM {model_type}")
        sam = _build_sam_architecture(model_type)
        weights = "random"
    else:
        path = _resolve_sam_checkpoint(model_type, checkpoint, cache_dir, key)
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
