"""Overlays of pseudo-masks (detectron2's Visualizer) and an HTML page indexing them, with the
labels per image and a score histogram per class."""
from __future__ import annotations

import html
import os
import random
import zlib
from collections import defaultdict
from typing import List, Optional, Sequence

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


# Small images are enlarged for display (integer factor, nearest neighbour) until their short
# side reaches this; text and lines follow the displayed size (detectron2's Visualizer scales
# them with the canvas).
DISPLAY_MIN_SIDE = 480
# At most this many instances get a text label (the highest scores); the legend below the
# picture names every class with its colour and count.
MAX_LABELS = 12


def display_factor(height: int, width: int) -> int:
    """The integer factor a ``height`` x ``width`` image is enlarged by for display."""
    return max(1, -(-DISPLAY_MIN_SIDE // max(1, min(height, width))))


def _class_color(category_id) -> tuple:
    """A fixed, fairly saturated RGB colour in [0, 1] per category (same in every picture)."""
    seed = category_id if isinstance(category_id, int) else zlib.crc32(str(category_id).encode())
    rng = np.random.default_rng(abs(seed))
    color = rng.uniform(0.15, 1.0, 3)
    color[rng.integers(3)] = 1.0
    return tuple(float(c) for c in color)


def _label(name: str, score: Optional[float]) -> str:
    """"name 0.87" for a scored instance; the bare name for ground truth (no fake score)."""
    # A "$" is escaped: matplotlib reads text between two of them as math, and fails on most.
    name = str(name).replace("$", r"\$")
    return name if score is None else f"{name} {score:.2f}"


def _strip(width: int, lines: List[tuple], unit: int) -> np.ndarray:
    """A white (N, width, 3) strip of text lines, each [(text, rgb in [0, 1] or None)...]."""
    import cv2

    font, thick = cv2.FONT_HERSHEY_SIMPLEX, max(1, unit // 12)
    line_h = int(unit * 1.5)
    strip = np.full((line_h * len(lines) + unit // 2, width, 3), 255, np.uint8)
    for row, parts in enumerate(lines):
        x, y = unit // 2, line_h * (row + 1) - unit // 3
        # A line wider than the picture is written smaller (swatches keep their size).
        scale = unit / 22
        text_w = sum(cv2.getTextSize(t, font, scale, thick)[0][0] for t, _ in parts)
        room = width - unit - sum(2 * unit if c is not None else unit for _, c in parts)
        if text_w > room > 0:
            scale *= room / text_w
        for text, color in parts:
            if color is not None:  # a colour swatch before the text
                c = tuple(int(255 * v) for v in color)
                cv2.rectangle(strip, (x, y - unit + 2), (x + unit - 2, y), c, -1)
                x += unit + unit // 3
            cv2.putText(strip, text, (x, y), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
            x += cv2.getTextSize(text, font, scale, thick)[0][0] + unit
    return strip


def _stamp(picture: np.ndarray, stamp: str, unit: int) -> None:
    """``stamp`` in white on a red band across the bottom of ``picture`` (in place; text labels
    sit at the tops of their boxes), its font shrunk until it fits the width."""
    import cv2

    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, unit / 22, max(1, unit // 10)
    room = picture.shape[1] - unit
    width = cv2.getTextSize(stamp, font, scale, thick)[0][0]
    if width > room:
        scale *= room / width
    band = int(unit * 1.6)
    picture[-band:] = (picture[-band:] * 0.3 + np.array([200, 0, 0]) * 0.7).astype(np.uint8)
    cv2.putText(picture, stamp, (unit // 2, picture.shape[0] - unit // 2), font, scale,
                (255, 255, 255), thick, cv2.LINE_AA)


def draw_instances(image: np.ndarray, masks: Sequence[Optional[np.ndarray]], boxes: np.ndarray,
                   classes: Sequence, names: dict, scores: Optional[Sequence[float]] = None,
                   title: str = "", stamp: str = "", max_labels: int = MAX_LABELS,
                   legend_classes: Optional[Sequence] = None, empty: str = "no labels"
                   ) -> np.ndarray:
    """The one drawing of instances over an image: pseudo-labels, ground truth, demo detections.

    image: (H, W, 3) uint8 RGB; masks: N (H, W) bool arrays (or None for a box-only instance);
    boxes: (N, 4) float XYXY in image pixels; classes: N class ids, named by ``names`` (id ->
    name) and coloured one colour per class; scores: N floats, or None (ground truth: labels
    without a score). Returns (H', W', 3) uint8 RGB: the image enlarged for display
    (:func:`display_factor`), masks and boxes, text labels ("name score") on the ``max_labels``
    best-scored instances, then a legend below (class, colour, count, and how many instances
    carry no text label); ``title`` above and ``stamp`` (e.g. RANDOM WEIGHTS) in red across the
    picture's bottom. Text and lines scale with the displayed size. ``legend_classes``: list
    exactly these classes in the legend (count 0 included) and always keep its last line, so
    that every picture of one image size has one size (video frames); ``empty``: the legend's
    text when there is no instance.
    """
    from detectron2.utils.visualizer import ColorMode, Visualizer

    factor = display_factor(*image.shape[:2])
    big = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image
    order = (sorted(range(len(classes)), key=lambda i: -scores[i]) if scores is not None
             else list(range(len(classes))))
    unit = max(12, min(big.shape[:2]) // 24)  # text height of the title, stamp and legend
    vis = Visualizer(big, metadata=None, scale=1.0, instance_mode=ColorMode.IMAGE)
    # Detectron2 sizes label text (0.6-1x) and box lines (1/4) from this; its own default,
    # sqrt(H * W) / 90 px, is unreadable on all but the largest pictures.
    vis._default_font_size = unit * 0.75
    out = vis.output
    if order:
        enlarged = [None if m is None else
                    np.repeat(np.repeat(m, factor, 0), factor, 1) if factor > 1 else m
                    for m in (masks[i] for i in order)]
        drawn = None if any(m is None for m in enlarged) else enlarged
        sorted_boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[order] * factor
        colors = [_class_color(classes[i]) for i in order]
        labels = [_label(names.get(classes[i], str(classes[i])),
                         None if scores is None else scores[i]) for i in order]
        labelled = min(max_labels, len(order))
        if len(order) > labelled:  # the rest: masks and boxes only, drawn first (underneath)
            vis.overlay_instances(masks=None if drawn is None else drawn[labelled:],
                                  boxes=sorted_boxes[labelled:],
                                  assigned_colors=colors[labelled:], alpha=0.4)
        out = vis.overlay_instances(masks=None if drawn is None else drawn[:labelled],
                                    boxes=sorted_boxes[:labelled],
                                    assigned_colors=colors[:labelled], labels=labels[:labelled],
                                    alpha=0.4)
    picture = out.get_image()
    if stamp:
        _stamp(picture, stamp, unit)
    counts = defaultdict(int)
    for c in classes:
        counts[c] += 1
    listed = (sorted(counts, key=lambda c: -counts[c]) if legend_classes is None
              else list(legend_classes))
    legend = [[(f"{names.get(c, str(c))} x{counts.get(c, 0)}", _class_color(c))]
              for c in listed]
    if not len(classes) and legend_classes is None:
        legend = [[(empty, None)]]
    # Legend entries side by side while they fit, so a picture stays about as tall as wide.
    per_row = max(1, picture.shape[1] // (unit * 12))
    rows = [sum(legend[i:i + per_row], []) for i in range(0, len(legend), per_row)]
    if len(classes) > max_labels:
        rows.append([(f"{len(classes) - max_labels} more without a text label "
                      f"({max_labels} best-scored labelled)", None)])
    elif legend_classes is not None:
        rows.append([(f"{len(classes)} labelled" if len(classes) else empty, None)])
    parts = ([_strip(picture.shape[1], [[(title, None)]], unit)] if title else []) + [
        picture, _strip(picture.shape[1], rows, unit)]
    return np.concatenate(parts, axis=0)


def draw_overlay(image: np.ndarray, annotations: List[dict], names: dict,
                 score_thresh: float = 0.0, title: str = "", stamp: str = "",
                 max_labels: int = MAX_LABELS) -> np.ndarray:
    """COCO annotations (RLE masks, XYWH boxes; ground truth without scores) scored at least
    ``score_thresh`` drawn over ``image`` with :func:`draw_instances`."""
    anns = [a for a in annotations if a.get("score", 1.0) >= score_thresh]
    masks = [segmentation_to_mask(a["segmentation"], *a["segmentation"]["size"]) for a in anns]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                     dtype=np.float64).reshape(-1, 4)
    scored = all("score" in a for a in anns)
    return draw_instances(image, masks, boxes, [a["category_id"] for a in anns], names,
                          scores=[a["score"] for a in anns] if scored else None, title=title,
                          stamp=stamp, max_labels=max_labels,
                          empty="no labels" + (f" scored >= {score_thresh}" if score_thresh
                                               else ""))


def _side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two panels next to each other (white padding below the shorter one)."""
    height = max(left.shape[0], right.shape[0])
    pad = [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0)), constant_values=255)
           for p in (left, right)]
    gap = np.full((height, max(8, left.shape[1] // 60), 3), 255, np.uint8)
    return np.concatenate([pad[0], gap, pad[1]], axis=1)


def display_name(name: str) -> str:
    """A file name as text that can be written anywhere: bytes that are not UTF-8 (kept by
    Python as surrogates) are shown as ``\\xff`` escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def write_overlays(data: dict, image_root: str, out_dir: str, num: int = 20,
                   seed: Optional[int] = None, score_thresh: float = 0.0,
                   json_path: Optional[str] = None, gt: Optional[dict] = None) -> str:
    """Render ``num`` images' pseudo-masks into ``out_dir`` and write ``out_dir/index.html``.

    With ``gt`` (a ground-truth COCO dict), each picture shows the labels and the image's
    ground truth side by side (images matched by file_name, categories by name). Labels made
    with random weights are stamped as such on every picture.
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
    gt_by_file, gt_names = {}, {}
    if gt is not None:
        gt_names = {c["id"]: c["name"] for c in gt["categories"]}
        gt_ids = {im["file_name"]: im["id"] for im in gt["images"]}
        gt_anns = defaultdict(list)
        for ann in gt["annotations"]:
            gt_anns[ann["image_id"]].append({k: v for k, v in ann.items() if k != "score"})
        gt_by_file = {f: gt_anns[i] for f, i in gt_ids.items()}
    info = data.get("info")
    stamp = ("RANDOM WEIGHTS: noise labels"
             if isinstance(info, dict) and info.get("random_weights") else "")
    scored = any("score" in a for a in data["annotations"])
    rows = []
    for img in chosen:
        try:
            # Full size and EXIF orientation, exactly as the labels were written.
            pixels = decode_image(sources[img["id"]], max_side=0, max_pixels=2**62, min_side=0,
                                  data=read_image_bytes(sources[img["id"]])).pixels
        except (OSError, ImageSkip) as e:  # PIL's decoding errors are OSErrors
            rows.append((None, img, 0, [f"cannot read: {e}"]))
            continue
        title = ("pseudo-labels" if scored else "labels") if gt is not None else ""
        overlay = draw_overlay(pixels, by_image[img["id"]], names, score_thresh, title=title,
                               stamp=stamp)
        if gt is not None:
            truth = gt_by_file.get(img["file_name"])
            right = draw_overlay(pixels, truth or [], gt_names,
                                 title="ground truth" if truth is not None
                                 else "ground truth: image not in the --gt file")
            overlay = _side_by_side(overlay, right)
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
        f.write(_index_html(data, rows, score_thresh, statistics_lines(stats)[0], per_class,
                            heading="Pseudo-labels" if scored else "Labels (no scores)"))
    return path


def _card(name: Optional[str], img: dict, n: int, cats: List[str]) -> str:
    caption = (f"{html.escape(display_name(img['file_name']))} (id {img['id']}, "
               f"{img['width']}x{img['height']})<br>")
    if name is None:  # the image could not be read: its reason instead of an overlay
        return f"<figure><figcaption>{caption}{html.escape(cats[0])}</figcaption></figure>"
    return (f"<figure><a href='{html.escape(name)}'><img src='{html.escape(name)}' loading=lazy>"
            f"</a><figcaption>{caption}{n} instances: {html.escape(', '.join(cats)) or '-'}"
            "</figcaption></figure>")


def _index_html(data: dict, rows, score_thresh: float, per_image: str, per_class: str,
                heading: str = "Pseudo-labels") -> str:
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
<html><head><meta charset="utf-8"><title>{heading}: {method}</title>
<style>body{{font-family:sans-serif;margin:1em}} figure{{display:inline-block;margin:.5em;
width:320px;vertical-align:top}} img{{width:320px}} figcaption{{font-size:12px}}
.warn{{color:#b00;font-weight:bold}} td{{padding:0 .6em;font-size:13px}}</style></head><body>
<h1>{heading} ({html.escape(str(info.get("description", "")))})</h1>{warn}
<p>{len(data["images"])} images, {len(data["annotations"])} annotations, {len(skipped)} skipped;
showing {len(rows)}; score threshold {score_thresh}; created {created}.</p>
<p>{html.escape(per_image)}</p>
{cards}
{per_class}
{skipped_html}
</body></html>
"""
