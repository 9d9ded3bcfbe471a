#!/usr/bin/env python
"""Tables (markdown, printed) and one figure per experiment (PNG) from the stored results.

Reads ROOT/results/e{1,2,3,4}/*.json as written by the experiment scripts; an experiment without
results is left out. Every number is the mean over seeds ± half their range, with each seed's
value in brackets. Pseudo-label sources are named as common.SOURCES names them.

    python tools/experiments/report.py --root work/exp15 --figures docs/figures
"""
import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)

# isort: split
import argparse
import glob
import os
from collections import defaultdict

import common
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

FOOTER = ("\nSynthetic shapes, CPU. Discovery-made = zip_d2's discovery on CONSTRUCTED features "
          "(not CLIP); SIMULATED = degraded ground truth. Bars: mean; dots: seeds.")


def load(root, experiment):
    return [common.load_json(p) for p in sorted(glob.glob(
        os.path.join(root, "results", experiment, "*.json")))]


def cell(values):
    """'mean ± half-range (seed values)'."""
    if not values:
        return "—"
    m, s = common.mean_spread(values)
    seeds = ", ".join(f"{v:.1f}" for v in values)
    return f"{m:.1f} ± {s:.1f} ({seeds})"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def bars(ax, groups, series, title, ylabel):
    """Grouped bars of means with each seed as a dot; series = {label: [values per group]}."""
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (label, per_group) in enumerate(series.items()):
        pos = x - 0.4 + width * (i + 0.5)
        means = [np.mean(v) if v else np.nan for v in per_group]
        ax.bar(pos, means, width, label=label)
        for p, v in zip(pos, per_group):
            ax.plot([p] * len(v), v, "k.", ms=4)
    ax.set_xticks(x, groups, fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def by_key(records, key):
    out = defaultdict(list)
    for r in sorted(records, key=lambda r: r["seed"]):
        out[r[key]].append(r)
    return out


def experiment1(root, fig_dir):
    records = load(root, "e1")
    runs = by_key([r for r in records if "val" in r], "source")
    labels = by_key([r for r in records if "vs_train_gt" in r], "source")
    if not runs and not labels:
        return None
    order = [s for s in common.SOURCES if s in runs or s in labels]
    rows = []
    for s in order:
        lab = labels.get(s, [])
        det = runs.get(s, [])
        rows.append([common.SOURCES[s], ", ".join(str(r["seed"]) for r in det or lab),
                     cell([r["vs_train_gt"]["mask"]["AP50"] for r in lab]) if lab else "100",
                     cell([r["vs_train_gt"]["mask"]["AP"] for r in lab]) if lab else "100",
                     cell([r["val"]["box"]["AP50"] for r in det]),
                     cell([r["val"]["box"]["AP"] for r in det]),
                     cell([r["val"]["mask"]["AP50"] for r in det]),
                     cell([r["val"]["mask"]["AP"] for r in det])])
    text = table(["labels (source)", "seeds", "labels: mask AP50 (train GT)",
                  "labels: mask AP", "detector: box AP50 (val)", "box AP", "mask AP50",
                  "mask AP"], rows)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    names = [common.SHORT_NAMES[s] for s in order]
    bars(axes[0], names, {
        "labels vs train GT": [[r["vs_train_gt"]["mask"]["AP50"] for r in labels.get(s, [])]
                               for s in order],
        "detector on val": [[r["val"]["mask"]["AP50"] for r in runs.get(s, [])] for s in order],
    }, "Mask AP50", "AP50 (%)")
    bars(axes[1], names, {
        "detector box AP50": [[r["val"]["box"]["AP50"] for r in runs.get(s, [])] for s in order],
        "detector box AP": [[r["val"]["box"]["AP"] for r in runs.get(s, [])] for s in order],
    }, "Detector on val (600 it.)", "%")
    fig.suptitle("Experiment 1: Mask R-CNN trained on each label source. " + FOOTER, fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(fig_dir, "exp1_annotation_free.png"), dpi=110)
    plt.close(fig)
    return text


def experiment2(root, fig_dir):
    records = load(root, "e2")
    if not records:
        return None
    text = []
    for source, recs in by_key(records, "source").items():
        seeds = ", ".join(str(r["seed"]) for r in recs)
        rows = []
        for arm, key in (("round 0 (experiment 1's detector)", "round0_val"),
                         (f"round 1 (CutLER rule, t = {recs[0]['threshold']})", "round1_val"),
                         ("control: round 0 + same iterations on round-0 labels",
                          "control_val")):
            rows.append([arm, seeds] + [cell([r[key][t][m] for r in recs])
                                        for t in ("box", "mask") for m in ("AP50", "AP")])
        text.append(f"Detectors ({common.SOURCES[source]}), scored on val; round 1 and control "
                    f"train {recs[0]['round_iterations']} iterations from round 0:\n")
        text.append(table(["detector", "seeds", "box AP50", "box AP", "mask AP50", "mask AP"],
                          rows))
        lrows = [[name, seeds] + [cell([r[key][t][m] for r in recs])
                                  for t in ("box", "mask") for m in ("AP50", "AP")]
                 for name, key in (("round-0 labels", "round0_labels_vs_train_gt"),
                                   ("round-1 labels", "round1_labels_vs_train_gt"))]
        text.append("\nLabels, scored against the train ground truth:\n")
        text.append(table(["labels", "seeds", "box AP50", "box AP", "mask AP50", "mask AP"],
                          lrows))
        prow = [[str(r["seed"]), str(r["predictions_on_train"]["predictions"]),
                 str(r["predictions_on_train"][">=0.5"]), str(r["predictions_on_train"][">=0.7"]),
                 str(r["predictions_on_train"]["max"]), str(r["merge"]["predictions_kept"]),
                 str(r["merge"]["old_kept"]), str(r["merge"]["old_replaced"])] for r in recs]
        text.append("\nRound-0 predictions on the 400 train images and the merge:\n")
        text.append(table(["seed", "predictions", ">= 0.5", ">= 0.7 (passed)", "max score",
                           "kept as labels", "old labels kept", "old labels replaced"], prow))
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        arms = ["round 0", "round 1", "control"]
        bars(axes[0], arms, {m: [[r[k]["box"][m] for r in recs] for k in
                                 ("round0_val", "round1_val", "control_val")]
                             for m in ("AP50", "AP")}, "Detectors: box AP on val", "%")
        bars(axes[1], ["round-0 labels", "round-1 labels"],
             {m: [[r[k]["mask"][m] for r in recs] for k in
                  ("round0_labels_vs_train_gt", "round1_labels_vs_train_gt")]
              for m in ("AP50", "AP")}, "Labels: mask AP vs train GT", "%")
        fig.suptitle(f"Experiment 2: self-training, {common.SOURCES[source]}. " + FOOTER,
                     fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(fig_dir, f"exp2_self_training_{source}.png"), dpi=110)
        plt.close(fig)
    return "\n".join(text)


def experiment3(root, fig_dir):
    records = load(root, "e3")
    if not records:
        return None
    groups = defaultdict(list)
    for r in sorted(records, key=lambda r: r["seed"]):
        groups[(r["percent"], r["start"])].append(r)
    percents = sorted({p for p, _ in groups})
    starts = [s for s in ("self_trained", "control", "round0", "scratch")
              if any(k[1] == s for k in groups)]
    names = {"self_trained": "self-trained (round 1)", "round0": "round 0",
             "scratch": "scratch", "control": "control (added after)"}
    rows = []
    for p in percents:
        for s in starts:
            recs = groups.get((p, s), [])
            if not recs:
                continue
            rows.append([f"{p:g} %", names[s], ", ".join(str(r["seed"]) for r in recs),
                         "/".join(str(r["num_images"]) for r in recs)]
                        + [cell([r["val"][t][m] for r in recs])
                           for t in ("box", "mask") for m in ("AP50", "AP")])
    text = table(["labels", "start", "seeds", "images", "box AP50", "box AP", "mask AP50",
                  "mask AP"], rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("AP50", "AP")):
        for s in starts:
            xs = [p for p in percents if (p, s) in groups]
            vals = [[r["val"]["box"][metric] for r in groups[(p, s)]] for p in xs]
            means = [np.mean(v) for v in vals]
            lo = [m - min(v) for m, v in zip(means, vals)]
            hi = [max(v) - m for m, v in zip(means, vals)]
            ax.errorbar(xs, means, yerr=[lo, hi], marker="o", capsize=3, label=names[s])
        for label, value, style in start_lines(root, records[0], metric):
            ax.axhline(value, ls=style, lw=0.8, color="gray")
            ax.text(percents[0], value, label, fontsize=6, va="bottom", color="gray")
        ax.set_xscale("log")
        ax.set_xticks(percents, [f"{p:g}%" for p in percents])
        ax.set_xlabel("ground truth used (% of 400 train images)")
        ax.set_ylabel(f"box {metric} on val (%)")
        ax.legend(fontsize=7)
    src = records[0].get("start_trained_on", "")
    fig.suptitle(f"Experiment 3: label-efficient finetuning, same schedule; starts trained on "
                 f"{src}. Lines: starts before finetuning."
                 + FOOTER, fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(fig_dir, "exp3_label_efficient.png"), dpi=110)
    plt.close(fig)
    return text


def start_lines(root, record, metric):
    """(label, mean box ``metric`` on val, line style) of experiment 3's pseudo-label starts
    before finetuning: experiment 1's round-0 and experiment 2's round-1 detectors."""
    source = next((k for k, v in common.SOURCES.items() if v == record["start_trained_on"]), None)
    out = []
    e1 = [r["val"]["box"][metric] for r in load(root, "e1") if r.get("source") == source
          and "val" in r]
    e2 = [r["round1_val"]["box"][metric] for r in load(root, "e2") if r.get("source") == source]
    if e1:
        out.append(("round 0, no finetuning", float(np.mean(e1)), "--"))
    if e2:
        out.append(("self-trained, no finetuning", float(np.mean(e2)), ":"))
    return out


SHAPES6 = ("circle", "square", "triangle", "hexagon", "star", "cross")  # category ids 1-6


def predicted_classes(root, records, min_score=0.3):
    """Which class each run's val detections (score >= min_score) were given, against the
    val objects per class: where the detections of a generalised evaluation went."""
    val = common.load_json(os.path.join(root, "d2_datasets", "coco", "annotations",
                                        "instances_val2017_ov_all.json"))
    objects = defaultdict(int)
    for a in val["annotations"]:
        objects[a["category_id"]] += 1
    rows = [["val objects", "—"] + [str(objects[i]) for i in range(1, 7)]]
    for r in sorted(records, key=lambda r: (r["run"], r["seed"])):
        found = glob.glob(os.path.join(os.path.dirname(r["checkpoint"]), "eval_ov_coco",
                                       "inference", "*", "coco_instances_results.json"))
        if not found:
            continue
        given = defaultdict(int)
        for d in common.load_json(found[0]):
            if d["score"] >= min_score:
                given[d["category_id"]] += 1
        rows.append([r["run"], str(r["seed"])] + [str(given[i]) for i in range(1, 7)])
    return (f"Val detections with score >= {min_score} by the class they were given "
            "(star and cross are novel):\n\n"
            + table(["run", "seed"] + list(SHAPES6), rows))


def experiment4(root, fig_dir):
    records = load(root, "e4")
    if not records:
        return None
    runs = by_key(records, "run")
    order = [r for r in ("closed_all", "ov_base", "ov_free") if r in runs]
    keys = ("AP50-base", "AP50-novel", "AP50-all")
    rows = [[name, runs[name][0]["trained_on"], ", ".join(str(r["seed"]) for r in runs[name])]
            + [cell([r["val_generalised_box"][k] for r in runs[name]]) for k in keys]
            for name in order]
    text = table(["run", "trained on", "seeds", "AP50 base", "AP50 novel", "AP50 all"], rows)
    text += "\n\n" + predicted_classes(root, records)
    fig, ax = plt.subplots(figsize=(9, 4))
    bars(ax, order, {k: [[r["val_generalised_box"][k] for r in runs[n]] for n in order]
                     for k in keys},
         "Generalised box AP50 on val (6 classes scored together), via tools/train_net.py",
         "AP50 (%)")
    fig.suptitle("Experiment 4: novel classes (star, cross). Open-vocabulary heads score "
                 "CONSTRUCTED attribute embeddings, not CLIP. " + FOOTER, fontsize=6)
    fig.tight_layout()
    fig.savefig(os.path.join(fig_dir, "exp4_open_vocab.png"), dpi=110)
    plt.close(fig)
    return text


def compute(root):
    """Training seconds per experiment, summed over every run directory's metrics.json."""
    return {e: round(sum(common.training_seconds(p) for p in glob.glob(
        os.path.join(root, "runs", e, "**", "metrics.json"), recursive=True)))
        for e in ("e1", "e2", "e3", "e4")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="work/exp15")
    parser.add_argument("--figures", default="docs/figures", help="where the PNGs go")
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    os.makedirs(args.figures, exist_ok=True)
    for title, fn in (("1. Annotation-free detector", experiment1),
                      ("2. Self-training", experiment2),
                      ("3. Label-efficient finetuning", experiment3),
                      ("4. Novel classes (open-vocabulary split)", experiment4)):
        text = fn(root, args.figures)
        print(f"### {title}\n\n{text if text else '(no results yet)'}\n")
    seconds = compute(root)
    print("training time per experiment (detectron2 iteration times, CPU, 1 thread): "
          + ", ".join(f"{e} {v / 60:.0f} min" for e, v in seconds.items())
          + f"; total {sum(seconds.values()) / 3600:.1f} h")


if __name__ == "__main__":
    main()
