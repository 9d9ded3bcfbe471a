"""Overlays of pseudo-masks (detectron2's Visualizer) and an HTML page indexing them, with the
labels per image and a score histogram per class."""
from __future__ import annotations

import html
import os
import random
from collections import defaultdict
from typing import List, Optional

import numpy as np

from zip_d2.data.paths import refuse_overwriting_inputs
from zip_d2.data.rle import segmentation_to_mask

from .images import ImageSkip, decode_image, read_image_bytes
from .statistics import label_statistics, statistics_lines, write_score_histograms


class VisualizeError(ValueError):
    """Overlays that cannot be drawn as asked; the message is one line."""


def choose_images(data: dict, num: int, seed: Optional[int] = None) -> List[dict]:
    """``num`` image records: the first by id, or a seeded random sample when ``seed`` is set."""
    if not isinstance(num, int) or num < 0:
        raise VisualizeError(f"--num must be 0 or more images, got {num}")
    images = sorted(data["images"], key=lambda im: im["id"])
    if seed is not None:
        images = random.Random(seed).sample(images, min(num, len(images)))
    return images[:num]


def draw_overlay(image: np.ndarray, annotations: List[dict], names: dict,
                 score_thresh: float = 0.0) -> np.ndarray:
    """(H, W, 3) uint8 RGB: masks, boxes and "name score" labels drawn over ``image``."""
    from detectron2.utils.visualizer import ColorMode, Visualizer

    anns = sorted((a for a in annotations if a.get("score", 1.0) >= score_thresh),
                  key=lambda a: -a.get("score", 1.0))
    vis = Visualizer(image, metadata=None, scale=1.0, instance_mode=ColorMode.IMAGE)
    if not anns:
        return vis.output.get_image()
    masks = [segmentation_to_mask(a["segmentation"], *a["segmentation"]["size"]) for a in anns]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
    # A "$" is escaped: matplotlib reads text between two of them as math, and fails on most.
    labels = [f"{names.get(a['category_id'], a['category_id'])} {a.get('score', 1.0):.2f}"
              .replace("$", r"\$") for a in anns]
    # Deterministic colours so two renderings of the same labels look the same.
    rng = np.random.default_rng(0)
    colors = [tuple(rng.uniform(0.2, 1.0, 3)) for _ in anns]
    out = vis.overlay_instances(masks=masks, boxes=boxes, labels=labels, assigned_colors=colors,
                                alpha=0.45)
    return out.get_image()


def display_name(name: str) -> str:
    """A file name as text that can be written anywhere: bytes that are not UTF-8 (kept by
    Python as surrogates) are shown as ``\\xff`` escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def write_overlays(data: dict, image_root: str, out_dir: str, num: int = 20,
                   seed: Optional[int] = None, score_thresh: float = 0.0,
                   json_path: Optional[str] = None) -> str:
    """Render ``num`` images' pseudo-masks into ``out_dir`` and write ``out_dir/index.html``.

    Nothing is written over an input (an image, ``json_path``): an ``out_dir`` whose overlay
    names (``<image id>.jpg``), ``index.html`` or ``scores_<id>.png`` are inputs is refused
    with OverwriteError. An image that cannot be read is listed with the reason, not drawn.
    Returns the path of index.html; VisualizeError for a bad ``num`` or ``out_dir``.
    """
    from PIL import Image

    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise VisualizeError(f"--out-dir {out_dir} is a file, not a folder; choose another "
                             "--out-dir")
    chosen = choose_images(data, num, seed)
    sources = {img["id"]: os.path.join(image_root, img["file_name"]) for img in chosen}
    outputs = [("--out-dir", os.path.join(out_dir, f"{i:08d}.jpg")) for i in sources]
    outputs += [("--out-dir", os.path.join(out_dir, name)) for name in
                ["index.html", *(f"scores_{c['id']}.png" for c in data["categories"])]]
    refuse_overwriting_inputs(outputs, [("the labels", json_path),
                                        *(("image", path) for path in sources.values())])
    os.makedirs(out_dir, exist_ok=True)
    by_image = defaultdict(list)
    for ann in data["annotations"]:
        by_image[ann["image_id"]].append(ann)
    names = {c["id"]: c["name"] for c in data["categories"]}
    rows = []
    for img in chosen:
        try:
            # Full size and EXIF orientation, exactly as the labels were written.
            pixels = decode_image(sources[img["id"]], max_side=0, max_pixels=2**62, min_side=0,
                                  data=read_image_bytes(sources[img["id"]])).pixels
        except (OSError, ImageSkip) as e:  # PIL's decoding errors are OSErrors
            rows.append((None, img, 0, [f"cannot read: {e}"]))
            continue
        overlay = draw_overlay(pixels, by_image[img["id"]], names, score_thresh)
        name = f"{img['id']:08d}.jpg"
        Image.fromarray(overlay).save(os.path.join(out_dir, name), quality=90)
        kept = [a for a in by_image[img["id"]] if a.get("score", 1.0) >= score_thresh]
        cats = sorted({names.get(a["category_id"], str(a["category_id"])) for a in kept})
        rows.append((name, img, len(kept), cats))
    stats = label_statistics(data)
    per_class = write_score_histograms(stats, out_dir)
    path = os.path.join(out_dir, "index.html")
    # backslashreplace: a class name with a lone surrogate must not stop the page.
    with open(path, "w", encoding="utf-8", errors="backslashreplace") as f:
        f.write(_index_html(data, rows, score_thresh, statistics_lines(stats)[0], per_class))
    return path


def _card(name: Optional[str], img: dict, n: int, cats: List[str]) -> str:
    caption = (f"{html.escape(display_name(img['file_name']))} (id {img['id']}, "
               f"{img['width']}x{img['height']})<br>")
    if name is None:  # the image could not be read: its reason instead of an overlay
        return f"<figure><figcaption>{caption}{html.escape(cats[0])}</figcaption></figure>"
    return (f"<figure><a href='{html.escape(name)}'><img src='{html.escape(name)}' loading=lazy>"
            f"</a><figcaption>{caption}{n} instances: {html.escape(', '.join(cats)) or '-'}"
            "</figcaption></figure>")


def _index_html(data: dict, rows, score_thresh: float, per_image: str, per_class: str) -> str:
    info = data.get("info", {})
    warn = ""
    if info.get("random_weights"):
        warn = "<p class=warn>RANDOM WEIGHTS: these labels come from untrained models.</p>"
    cards = "\n".join(_card(*row) for row in rows)
    skipped = data.get("skipped_images", [])
    skipped_html = ""
    if skipped:
        items = "".join(f"<li>{html.escape(display_name(s['file_name']))}: "
                        f"{html.escape(s['reason'])}</li>"
                        for s in skipped)
        skipped_html = f"<h2>Skipped images ({len(skipped)})</h2><ul>{items}</ul>"
    method = html.escape(str(info.get("method")))
    created = html.escape(str(info.get("date_created")))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Pseudo-labels: {method}</title>
<style>body{{font-family:sans-serif;margin:1em}} figure{{display:inline-block;margin:.5em;
width:320px;vertical-align:top}} img{{width:320px}} figcaption{{font-size:12px}}
.warn{{color:#b00;font-weight:bold}} td{{padding:0 .6em;font-size:13px}}</style></head><body>
<h1>Pseudo-labels ({html.escape(str(info.get("description", "")))})</h1>{warn}
<p>{len(data["images"])} images, {len(data["annotations"])} annotations, {len(skipped)} skipped;
showing {len(rows)}; score threshold {score_thresh}; created {created}.</p>
<p>{html.escape(per_image)}</p>
{cards}
{per_class}
{skipped_html}
</body></html>
"""
