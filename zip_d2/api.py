"""Zip from Python, in the style of segment-anything's ``SamAutomaticMaskGenerator``::

    import zip_d2
    labeler = zip_d2.load_labeler("zip_paper", vocabulary="coco", device="cuda")
    results = labeler("photo.jpg")  # or an (H, W, 3) uint8 RGB array; a list gives a list of lists

Each result is the annotation ``tools/generate_pseudo_labels.py`` writes for that image and
settings (made by the same code, ``zip_d2.labels.coco_output``), plus the category's name.
Only the standard library is imported here: ``import zip_d2`` stays cheap, and torch, the models
and detectron2's config load on the first :func:`load_labeler`.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence

__all__ = ["Labeler", "load_labeler", "preset_names", "PRESET_DIR"]

# The presets ship in the repository beside the package (``pip install -e .``, the supported
# install); a preset name resolves to PRESET_DIR/<name>.yaml.
PRESET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "configs", "pseudo")

OUTPUT_MODES = ("binary_mask", "coco_rle")


def preset_names() -> List[str]:
    """The preset names :func:`load_labeler` accepts (configs/pseudo/*.yaml)."""
    if not os.path.isdir(PRESET_DIR):
        return []
    return sorted(f[:-5] for f in os.listdir(PRESET_DIR) if f.endswith(".yaml"))


def config_path(config: str) -> str:
    """The YAML file for a preset name or a path; ValueError (one line) when there is none."""
    config = os.fspath(config)
    if os.path.isfile(config):
        return config
    if not config.endswith((".yaml", ".yml")) and os.sep not in config:
        path = os.path.join(PRESET_DIR, f"{config}.yaml")
        if os.path.isfile(path):
            return path
        names = ", ".join(preset_names()) or f"none: {PRESET_DIR} is missing"
        raise ValueError(f"unknown labeler preset {config!r}: give a YAML file or one of "
                         f"{names}")
    raise ValueError(f"config file not found: {config}")


def load_labeler(config: str = "zip_paper", *, vocabulary: Optional[str] = None,
                 device: Optional[str] = None, method: Optional[str] = None,
                 class_agnostic: bool = False, opts: Sequence[str] = (),
                 output_mode: str = "binary_mask", batch_size: int = 4,
                 max_side: int = 4096) -> "Labeler":
    """A ready :class:`Labeler` for a preset (configs/pseudo/<config>.yaml) or a YAML path.

    Args:
        config: preset name ("zip_paper", "zip_plus", "tiny_random") or a YAML file.
        vocabulary: sets PSEUDO.VOCABULARY: "coco", "lvis", a file of class names or "a,b,c".
        device: sets PSEUDO.DEVICE ("cuda", "cuda:1", "cpu"); default: the config's.
        method: sets PSEUDO.METHOD ("zip", "zip-no-sam", "sam-clip").
        class_agnostic: one category, "object" (PSEUDO.CLASS_AGNOSTIC).
        opts: further config overrides as KEY VALUE strings, applied last, as the tools'
            trailing arguments (e.g. ``["PSEUDO.SCORE.MIN_SCORE", "0.2"]``).
        output_mode: "binary_mask" ((H, W) bool arrays) or "coco_rle" (compressed RLE dicts), as
            in SAM's automatic mask generator.
        batch_size: images per labeler call (one model forward per batch), as the job's
            ``--batch-size``.
        max_side: an image read from a file with a longer side is labeled downscaled to it and
            its labels scaled back, as the job's ``--max-side`` (0: never). Arrays are labeled
            at their own size.

    Raises ValueError (a bad preset, key or value; one line) or
    ``zip_d2.models.MissingWeightsError`` (one line naming every missing model) before any
    model is built. Random-weight presets log the same boxed warning as the tools.
    """
    from zip_d2.config import setup_cfg
    from zip_d2.models import require_weights
    from zip_d2.pseudo import build_labeler, check_config, required_weights

    if output_mode not in OUTPUT_MODES:
        raise ValueError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}; "
                         f"got {output_mode!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be an integer of at least 1, got {batch_size!r}")
    if not (isinstance(max_side, int) and max_side >= 0):
        raise ValueError(f"max_side must be an integer of at least 0, got {max_side!r}")
    settings = {"PSEUDO.VOCABULARY": vocabulary, "PSEUDO.DEVICE": device,
                "PSEUDO.METHOD": method, "PSEUDO.CLASS_AGNOSTIC": class_agnostic or None}
    cfg = setup_cfg(config_path(config), list(opts),
                    settings={k: v for k, v in settings.items() if v is not None})
    check_config(cfg)
    require_weights(required_weights(cfg))
    return Labeler(build_labeler(cfg), output_mode=output_mode, batch_size=batch_size,
                   max_side=max_side)


class Labeler:
    """``labeler(image)`` -> a list of result dicts, best first; ``labeler([images])`` -> a list
    of such lists.

    An image is an (H, W, 3) uint8 RGB array or a file path (decoded as the job decodes it:
    EXIF orientation applied, 16-bit scaled, alpha dropped). Each result has ``segmentation``
    ((H, W) bool, or COCO compressed RLE with ``output_mode="coco_rle"``), ``bbox`` (XYWH, the
    tight box of the mask), ``area`` (mask pixels), ``score`` = sqrt(``clip_score`` *
    ``sam_score``), ``category_id``, ``category_name`` and ``iscrowd`` 0.
    """

    def __init__(self, engine, output_mode: str = "binary_mask", batch_size: int = 4,
                 max_side: int = 4096):
        """engine: a labeler from ``zip_d2.pseudo.build_labeler``."""
        self.engine = engine
        self.cfg = engine.cfg
        self.categories = list(engine.categories)
        self.output_mode = output_mode
        self.batch_size = batch_size
        self.max_side = max_side
        self._category_ids = {c["name"]: c["id"] for c in self.categories}
        self._category_names = {c["id"]: c["name"] for c in self.categories}

    def describe(self) -> dict:
        """Everything that decides the labels (the ``labeler`` entry of the job's info block)."""
        return self.engine.describe()

    def __call__(self, images, classes: Optional[list] = None):
        """images: one image or a list of them. classes: for one image, None (classify) or its
        class names; for a list, None or one such entry per image."""
        single = not isinstance(images, (list, tuple))
        batch = [images] if single else list(images)
        if classes is not None and single:
            classes = [classes]
        if classes is not None and len(classes) != len(batch):
            raise ValueError(f"classes has {len(classes)} entries for {len(batch)} images")
        out = []
        for start in range(0, len(batch), self.batch_size):
            chunk = [self._read(x) for x in batch[start:start + self.batch_size]]
            given = None if classes is None else list(classes[start:start + self.batch_size])
            pixels = [c[0] for c in chunk]
            if hasattr(self.engine, "label_batch"):
                detections = self.engine.label_batch(pixels, given)
            else:
                detections = [self.engine(p, None if given is None else given[i])
                              for i, p in enumerate(pixels)]
            for (image, width, height), dets in zip(chunk, detections):
                out.append(self._results(dets, image.shape[:2], width, height))
        return out[0] if single else out

    def _read(self, image):
        """(pixels at the working size, full width, full height)."""
        import numpy as np

        if isinstance(image, (str, os.PathLike)):
            from zip_d2.labels.images import decode_image

            decoded = decode_image(os.fspath(image), max_side=self.max_side)
            return decoded.pixels, decoded.width, decoded.height
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
                and image.dtype == np.uint8):
            raise ValueError("an image must be a file path or an (H, W, 3) uint8 RGB array, got "
                             f"{getattr(image, 'shape', None)} "
                             f"{getattr(image, 'dtype', type(image).__name__)}")
        return image, image.shape[1], image.shape[0]

    def _results(self, detections, work_shape, width, height) -> List[dict]:
        from zip_d2.labels.coco_output import detections_to_annotations

        annotations, _ = detections_to_annotations(detections, work_shape, width, height,
                                                   self._category_ids)
        if self.output_mode == "binary_mask":
            from pycocotools import mask as mask_util

            for ann in annotations:
                ann["segmentation"] = mask_util.decode(ann["segmentation"]).astype(bool)
        for ann in annotations:
            ann["category_name"] = self._category_names[ann["category_id"]]
        return annotations
