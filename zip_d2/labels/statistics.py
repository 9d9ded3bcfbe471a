"""How the labels of a pseudo-label file are spread over classes and images: the labelling job's
closing summary and the gallery's per-class score histograms, so an over- or under-labelled
class shows at a glance."""
from __future__ import annotations

import html
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

__all__ = ["ClassStats", "LabelStats", "label_statistics", "statistics_lines",
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
    scores: Dict[int, list] = defaultdict(list)
    images: Dict[int, set] = defaultdict(set)
    per_image: Dict[int, int] = {im["id"]: 0 for im in data["images"]}
    for ann in data["annotations"]:
        scores[ann["category_id"]].append(ann.get("score", 1.0))
        images[ann["category_id"]].add(ann["image_id"])
        if ann["image_id"] in per_image:
            per_image[ann["image_id"]] += 1
    per_class = [ClassStats(c["id"], c["name"], len(scores[c["id"]]), len(images[c["id"]]),
                            np.asarray(scores[c["id"]], np.float64))
                 for c in data["categories"]]
    per_class.sort(key=lambda c: (-c.labels, c.name))
    return LabelStats(per_class, np.fromiter(per_image.values(), np.int64, len(per_image)),
                      len(data.get("skipped_images", [])))


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
