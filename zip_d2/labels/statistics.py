"""How the labels of a pseudo-label file are spread over classes and images: the labelling job's
closing summary and the gallery's per-class score histograms, so an over- or under-labelled
class shows at a glance."""
from __future__ import annotations

import html
import os
from array import array
from dataclasses import dataclass
from typing import List

import numpy as np

__all__ = ["ClassStats", "LabelStats", "LabelStatsBuilder", "label_statistics", "statistics_lines",
           "write_score_histograms"]


@dataclass
class ClassStats:
    """One category: its labels, the images holding at least one, and their (N,) scores."""

    id: int
    name: str
    labels: int
    images: int
    scores: np.ndarray  # (labels,) float64; 1.0 for labels without a score

    @property
    def mean_score(self) -> float:
        return float(self.scores.mean()) if len(self.scores) else float("nan")


@dataclass
class LabelStats:
    """per_class: every category of the file, most labelled first; per_image: (images,) int64
    labels of each image that was labelled (skipped images excluded); skipped: their number."""

    per_class: List[ClassStats]
    per_image: np.ndarray
    skipped: int


def label_statistics(data: dict) -> LabelStats:
    """Statistics of a COCO instances dict (a pseudo-label file or any ground truth)."""
    builder = LabelStatsBuilder()
    builder.categories(data["categories"])
    for im in data["images"]:
        builder.image(im)
    for ann in data["annotations"]:
        builder.annotation(ann)
    return builder.finish(len(data.get("skipped_images", [])))


class LabelStatsBuilder:
    """:func:`label_statistics` fed one record at a time (the categories, then the images and
    annotations in any order), as a streaming merge writes them: 8 bytes per image and 24 per
    annotation, never the records."""

    def __init__(self):
        self._categories: List[dict] = []
        self._images = array("q")
        self._ann_category, self._ann_image, self._scores = array("q"), array("q"), array("d")

    def categories(self, categories: List[dict]) -> None:
        self._categories = [{"id": c["id"], "name": c["name"]} for c in categories]

    def image(self, im: dict) -> None:
        self._images.append(im["id"])

    def annotation(self, ann: dict) -> None:
        self._ann_category.append(ann["category_id"])
        self._ann_image.append(ann["image_id"])
        self._scores.append(ann.get("score", 1.0))

    def finish(self, skipped: int = 0) -> LabelStats:
        cats = np.frombuffer(self._ann_category, np.int64) if self._ann_category \
            else np.zeros(0, np.int64)
        imgs = np.frombuffer(self._ann_image, np.int64) if self._ann_image \
            else np.zeros(0, np.int64)
        scores = np.frombuffer(self._scores, np.float64) if self._scores \
            else np.zeros(0, np.float64)
        order = np.argsort(cats, kind="stable")  # each class's scores in annotation order
        cats, imgs, scores = cats[order], imgs[order], scores[order]
        starts = np.searchsorted(cats, [c["id"] for c in self._categories], "left")
        ends = np.searchsorted(cats, [c["id"] for c in self._categories], "right")
        per_class = [ClassStats(c["id"], c["name"], int(e - s), len(np.unique(imgs[s:e])),
                                scores[s:e].copy())
                     for c, s, e in zip(self._categories, starts, ends)]
        per_class.sort(key=lambda c: (-c.labels, c.name))
        image_ids = np.frombuffer(self._images, np.int64) if self._images \
            else np.zeros(0, np.int64)
        # labels of each image, in the images' order (annotations of unknown images ignored)
        sorter = np.argsort(image_ids, kind="stable")
        where = np.searchsorted(image_ids, imgs, sorter=sorter) if len(image_ids) else imgs * 0
        where = np.minimum(where, max(len(image_ids) - 1, 0))
        known = image_ids[sorter[where]] == imgs if len(image_ids) else np.zeros(0, bool)
        per_image_sorted = np.bincount(where[known], minlength=len(image_ids))
        per_image = np.zeros(len(image_ids), np.int64)
        per_image[sorter] = per_image_sorted[:len(image_ids)]
        return LabelStats(per_class, per_image, skipped)


def _fmt(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.2f}"


def statistics_lines(stats: LabelStats, max_classes: int = 20) -> List[str]:
    """Human-readable lines: labels per image, then a per-class table (the ``max_classes`` most
    labelled classes when there are more, and the classes that got no label at all)."""
    n = stats.per_image
    lines = []
    if len(n):
        lines.append(
            f"labels per image: mean {n.mean():.1f}, median {np.median(n):g}, 90th percentile "
            f"{np.percentile(n, 90):g}, max {n.max()}; {int((n == 0).sum())} of {len(n)} "
            f"labelled images have none ({stats.skipped} skipped)")
    else:
        lines.append(f"labels per image: no labelled image ({stats.skipped} skipped)")
    labelled = [c for c in stats.per_class if c.labels]
    empty = [c.name for c in stats.per_class if not c.labels]
    total = max(sum(c.labels for c in labelled), 1)
    shown = labelled[:max_classes]
    width = max([len(c.name) for c in shown] + [5])
    lines.append(f"  {'class':<{width}}  labels  share  images  mean score")
    for c in shown:
        lines.append(f"  {c.name:<{width}}  {c.labels:>6}  {100 * c.labels / total:>4.0f}%  "
                     f"{c.images:>6}  {_fmt(c.mean_score):>10}")
    if len(labelled) > len(shown):
        rest = labelled[len(shown):]
        lines.append(f"  ... {len(rest)} more classes with {rest[-1].labels} to "
                     f"{rest[0].labels} labels each")
    if empty:
        names = ", ".join(empty[:20]) + (f", ... ({len(empty) - 20} more)" if len(empty) > 20
                                         else "")
        lines.append(f"  {len(empty)} of {len(stats.per_class)} classes got no label: {names}")
    return lines


def write_score_histograms(stats: LabelStats, out_dir: str, bins: int = 20) -> str:
    """One small PNG per labelled class (``scores_<category id>.png``: a histogram of its label
    scores over [0, 1]) and an HTML table section pointing at them; returns that section."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    os.makedirs(out_dir, exist_ok=True)
    # One figure redrawn per class: a thousand LVIS classes cost seconds, not minutes.
    fig = Figure(figsize=(2.4, 1.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.14, 0.2, 0.82, 0.62))
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for c in stats.per_class:
        if not c.labels:
            rows.append(f"<tr><td>{html.escape(c.name)}</td><td>0</td><td>0</td><td>n/a</td>"
                        "<td></td></tr>")
            continue
        ax.cla()
        ax.hist(np.clip(c.scores, 0.0, 1.0), bins=edges, color="#3572b0")
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=6)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
        ax.set_title(f"{c.name} ({c.labels})", fontsize=7, parse_math=False)  # "$" is text
        name = f"scores_{c.id}.png"
        fig.savefig(os.path.join(out_dir, name))
        rows.append(f"<tr><td>{html.escape(c.name)}</td><td>{c.labels}</td><td>{c.images}</td>"
                    f"<td>{_fmt(c.mean_score)}</td><td><img src='{name}' "
                    f"alt='score histogram of {html.escape(c.name)}'></td></tr>")
    return ("<h2>Labels per class</h2><table><tr><th>class</th><th>labels</th><th>images</th>"
            "<th>mean score</th><th>scores (0 to 1)</th></tr>" + "".join(rows) + "</table>")
