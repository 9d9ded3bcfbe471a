"""Class vocabularies and CLIP text embeddings: the project's one implementation.

Both the pseudo-labeler (``zip_d2.pseudo``) and the open-vocabulary detector heads use these
embeddings; the CLIP model name and prompts are stored beside them so that a detector never
silently runs with embeddings from another text encoder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence, Union

import torch
import torch.nn.functional as F

from zip_d2.models import create_clip

__all__ = [
    "TEMPLATES",
    "SCENE_TEMPLATES",
    "load_vocabulary",
    "encode_text_ensemble",
    "TextEmbeddings",
    "build_text_embeddings",
]

Template = Union[str, Callable[[str], str]]


def _imagenet_templates() -> List[Template]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    # open_clip >= 2.x ships them as callables; older releases as "{}" format strings.
    return list(OPENAI_IMAGENET_TEMPLATES)


# The five scene prompts the Zip authors add to CLIP's ImageNet ensemble.
SCENE_TEMPLATES: List[str] = [
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
]

TEMPLATES: Dict[str, List[Template]] = {
    "ensemble": _imagenet_templates() + SCENE_TEMPLATES,
    "single": ["a photo of a {}."],
}


def _fill(template: Template, name: str) -> str:
    return template(name) if callable(template) else template.format(name)


_VOCABULARY_FORMS = ("a vocabulary is 'coco', 'lvis', an existing file with one class name a "
                     "line, or a comma-separated list 'a,b,c' ('a,' for a single class)")
# Extensions of a vocabulary file: a comma list ending in one is a file name with a comma in it.
_FILE_EXTENSIONS = (".txt", ".text", ".names", ".csv", ".tsv", ".json", ".yaml", ".yml", ".list")
_QUOTES = "'\""


def looks_like_path(spec: str) -> bool:
    """Whether a vocabulary spec that is no existing file was meant as one (a folder or an
    extension in it), so a typo is reported as a missing file, not taken as a class name."""
    return os.sep in spec or "/" in spec or bool(os.path.splitext(spec)[1])


def _list_looks_like_path(spec: str) -> bool:
    # Class names hold no path separator; a list ending in a file extension is a file name
    # ("classes,v2.txt"). A dot elsewhere is a class name's ("st. bernard,dog").
    return os.sep in spec or "/" in spec or spec.lower().endswith(_FILE_EXTENSIONS)


def _read_vocabulary_file(spec: str) -> List[str]:
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is not part of a class name.
        with open(spec, encoding="utf-8-sig") as f:
            return [line.strip() for line in f if line.strip()]
    except UnicodeDecodeError as e:
        raise ValueError(f"Vocabulary file {spec} is not UTF-8 text ({e.reason} at byte "
                         f"{e.start}); save it as UTF-8.") from None
    except OSError as e:
        raise ValueError(f"Vocabulary file {spec} cannot be read: {e.strerror or e}.") from None


def _list_names(spec: str) -> List[str]:
    """Class names of a comma list; a bracketed list "[a, b]" (optionally quoted items, as
    Python or JSON writes a list) means the same as "a, b"."""
    body = spec.rstrip(", ")
    bracketed = body.startswith("[") and body.endswith("]")
    if bracketed:
        body = body[1:-1]
    names = []
    for part in (n.strip() for n in body.split(",")):
        if bracketed and len(part) >= 2 and part[0] == part[-1] and part[0] in _QUOTES:
            part = part[1:-1].strip()
        if not part:
            continue
        if part[0] in "[]" + _QUOTES or part[-1] in "[]" + _QUOTES:
            raise ValueError(f"Vocabulary list {spec!r}: class name {part!r} starts or ends with "
                             f"a bracket or quote; write the list as a,b,c or [a, b, c].")
        names.append(part)
    return names


def load_vocabulary(spec: str) -> List[dict]:
    """COCO-style categories ``[{"id": int, "name": str}, ...]`` for a vocabulary spec.

    spec: "coco" (80 thing classes, COCO ids), "lvis" (LVIS v1, 1203 classes), a path to an
    existing UTF-8 text file (one name per non-empty line, ids 1..N; a byte-order mark is
    dropped), or a comma-separated list "a,b,c" (ids 1..N); a single class is a list with a
    trailing comma, "zebra,". A list may be written in brackets, "[a, b]" or "['a', 'b']".
    Raises ValueError for anything else (a missing file, also one whose name holds a comma; a
    folder; a file that is not UTF-8; a bare word that is none of these: never silently a
    one-class vocabulary), an empty vocabulary or duplicate names.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"Vocabulary spec is empty: {spec!r}; {_VOCABULARY_FORMS}.")
    spec = spec.strip()
    if spec.lower() == "coco":
        from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

        return [{"id": c["id"], "name": c["name"]} for c in COCO_CATEGORIES if c["isthing"] == 1]
    if spec.lower() == "lvis":
        from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES

        return [
            {"id": c["id"], "name": c["name"]}
            for c in sorted(LVIS_CATEGORIES, key=lambda c: c["id"])
        ]
    if os.path.isdir(spec):
        raise ValueError(f"Vocabulary {spec} is a folder; give a file with one class name a "
                         "line inside it.")
    if os.path.isfile(spec):
        names = _read_vocabulary_file(spec)
        where = f"file {spec}"
    elif os.path.exists(spec):
        raise ValueError(f"Vocabulary {spec} is not a regular file; {_VOCABULARY_FORMS}.")
    elif ("," in spec or spec.startswith("[")) and not _list_looks_like_path(spec):
        names = _list_names(spec)
        where = f"list {spec!r}"
    elif looks_like_path(spec):
        raise ValueError(f"Vocabulary file {spec} does not exist; {_VOCABULARY_FORMS}.")
    else:
        raise ValueError(f"Vocabulary {spec!r} is not a known name, an existing file or a "
                         f"comma-separated list; {_VOCABULARY_FORMS}.")
    if not names:
        raise ValueError(f"Vocabulary {where} has no class names.")
    seen, dups = set(), []
    for n in names:
        if n in seen:
            dups.append(n)
        seen.add(n)
    if dups:
        raise ValueError(f"Vocabulary {where} repeats class names: {', '.join(sorted(set(dups)))}.")
    return [{"id": i + 1, "name": n} for i, n in enumerate(names)]


def _resolve_templates(templates: Union[str, Sequence[Template]]) -> List[Template]:
    if isinstance(templates, str):
        if templates not in TEMPLATES:
            raise ValueError(f"Unknown template set '{templates}'; known: {', '.join(TEMPLATES)}.")
        return list(TEMPLATES[templates])
    templates = list(templates)
    if not templates:
        raise ValueError("Template list is empty.")
    return templates


@torch.no_grad()
def encode_text_ensemble(
    model: torch.nn.Module,
    tokenizer: Callable,
    names: Sequence[str],
    templates: Union[str, Sequence[Template]],
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 1024,
) -> torch.Tensor:
    """Prompt-ensemble text embeddings.

    Each class: mean over templates of the L2-normalised CLIP text embeddings, re-normalised.
    Returns (C, D) float32 on ``device``, unit rows. ``templates`` is a TEMPLATES key or a list
    of "{}" strings / callables.
    """
    templates = _resolve_templates(templates)
    prompts = [_fill(t, n) for n in names for t in templates]
    chunks = []
    for i in range(0, len(prompts), batch_size):
        tokens = tokenizer(prompts[i:i + batch_size]).to(device)
        chunks.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
    emb = torch.cat(chunks).view(len(names), len(templates), -1).mean(dim=1)
    return F.normalize(emb, dim=-1)


@dataclass
class TextEmbeddings:
    """Class text embeddings with the provenance a consumer must check.

    embeddings: (C, D) float32, unit rows, on CPU.
    class_names: the C names, in row order.
    clip_model / clip_pretrained: open_clip architecture and weight source that produced them.
    templates: template set name ("ensemble", "single") or the list of template strings.
    """

    embeddings: torch.Tensor
    class_names: List[str]
    clip_model: str
    clip_pretrained: str
    templates: Union[str, List[str]] = "ensemble"
    random_weights: bool = field(default=False)

    def __post_init__(self):
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != len(self.class_names):
            raise ValueError(f"Embeddings of shape {tuple(self.embeddings.shape)} do not match "
                             f"{len(self.class_names)} class names.")

    def save(self, path: str) -> None:
        """Write a torch file with the tensor and its metadata."""
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        templates = self.templates if isinstance(self.templates, str) else [
            t if isinstance(t, str) else t("{}") for t in self.templates]
        torch.save({
            "embeddings": self.embeddings.detach().float().cpu(),
            "class_names": list(self.class_names),
            "clip_model": self.clip_model,
            "clip_pretrained": self.clip_pretrained,
            "templates": templates,
            "random_weights": bool(self.random_weights),
            "format": "zip_d2.text_embeddings.v1",
        }, path)

    @classmethod
    def load(cls, path: str) -> "TextEmbeddings":
        if not os.path.isfile(path):
            raise ValueError(f"Text embeddings file {path} does not exist.")
        d = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(d, dict) or d.get("format") != "zip_d2.text_embeddings.v1":
            raise ValueError(f"{path} is not a zip_d2 text-embeddings file.")
        return cls(embeddings=d["embeddings"].float(), class_names=list(d["class_names"]),
                   clip_model=d["clip_model"], clip_pretrained=d["clip_pretrained"],
                   templates=d["templates"], random_weights=bool(d.get("random_weights", False)))

    def check_compatible(self, clip_model: str) -> None:
        """Raise ValueError if these embeddings did not come from ``clip_model``."""
        if clip_model != self.clip_model:
            raise ValueError(
                f"Text embeddings come from CLIP '{self.clip_model}' but '{clip_model}' "
                f"is configured; recompute them with '{clip_model}'."
            )


def build_text_embeddings(
    class_names: Sequence[str],
    clip_model: str,
    pretrained: str,
    templates: Union[str, Sequence[Template]] = "ensemble",
    device: Union[str, torch.device] = "cpu",
    random_weights: bool = False,
    key: str = "pretrained",
) -> TextEmbeddings:
    """Load ``clip_model`` through the project's factory and embed ``class_names``.

    Raises ``zip_d2.models.MissingWeightsError`` if the weights are unavailable (naming ``key``,
    the setting that chose ``pretrained``).
    """
    bundle = create_clip(clip_model, pretrained, device=device, random_weights=random_weights,
                         key=key)
    emb = encode_text_ensemble(bundle.model, bundle.tokenizer, list(class_names), templates, device)
    return TextEmbeddings(
        embeddings=emb.cpu(),
        class_names=list(class_names),
        clip_model=clip_model,
        clip_pretrained="random" if random_weights else pretrained,
        templates=templates if isinstance(templates, str) else list(templates),
        random_weights=random_weights,
    )
