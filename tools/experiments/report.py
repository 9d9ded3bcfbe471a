#!/usr/bin/env python
"""Every table and figure of docs/EXPERIMENTS_RESULTS.md, from the run records alone.

Reads RECORDS/e{1,2,3,4}/*.json (tools/experiments/*.py write them; common.Records). The claims
below are those of docs/experiments/PREREGISTRATION.md, with its thresholds and its rule: per
seed, the difference of two arms (paired: they share the seed); its mean and 95 % Student-t
interval; **shown** when the interval lies on the expected side of the threshold, **opposite**
when it lies on the other side, **not shown** when it holds the threshold; fewer seeds than
pre-registered: **incomplete**.

The document holds the tables between ``<!-- report:NAME -->`` and ``<!-- /report:NAME -->``:

    python tools/experiments/report.py                      # print every table
    python tools/experiments/report.py --write --figures docs/figures   # fill the doc, draw
    python tools/experiments/report.py --check              # exit 1 if the doc differs

``--check`` needs no training and no torch: it recomputes every table from the records and
compares them with the document, line by line.
"""
import zip_d2.quiet  # noqa: F401  (first, as in every tool; standard library only, no torch)

# isort: split
import argparse
import glob
import json
import math
import os
import re
import sys

import numpy as np
from scipy import stats

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECORDS = os.path.join(REPO, "docs", "experiments", "records")
DOC = os.path.join(REPO, "docs", "EXPERIMENTS_RESULTS.md")
SEEDS = 4  # pre-registered seeds per arm
BLOCK = re.compile(r"(<!-- report:(\w+) -->\n)(.*?)(<!-- /report:\2 -->)", re.S)


def load_records(folder):
    """{experiment: {run: record}}."""
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "e*", "*.json"))):
        with open(path) as f:
            record = json.load(f)
        out.setdefault(record["experiment"], {})[record["run"]] = record
    return out


def by_seed(runs, prefix, value):
    """{seed: value(record)} of the runs named ``<prefix>_s<seed>``."""
    out = {}
    for name, record in runs.items():
        m = re.fullmatch(re.escape(prefix) + r"_s(\d+)", name)
        if m:
            out[int(m.group(1))] = value(record)
    return out


def paired(a, b, op="diff"):
    """Per-seed a - b (or a / b) over the seeds both have: (seeds, values)."""
    seeds = sorted(set(a) & set(b))
    if op == "ratio":
        return seeds, [a[s] / b[s] if b[s] else math.nan for s in seeds]
    return seeds, [a[s] - b[s] for s in seeds]


def interval(values):
    """(mean, low, high) of the 95 % t interval; low = high = mean for one value."""
    v = np.asarray(values, np.float64)
    if v.size < 2:
        return float(v.mean()), float(v.mean()), float(v.mean())
    half = stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def verdict(values, threshold, side=">"):
    if len(values) < SEEDS:
        return f"incomplete ({len(values)} of {SEEDS} seeds)"
    _, low, high = interval(values)
    above, below = low > threshold, high < threshold
    if (above and side == ">") or (below and side == "<"):
        return "shown"
    if above or below:
        return "opposite"
    return "not shown"


def fmt(x, digits=1):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def box50(record):
    return record["test"]["box"]["AP50"]


def mask50(record):
    return record["test"]["mask"]["AP50"]


def ov(key):
    return lambda record: record["test_generalised_box"][key]


class Report:
    """The claims, tables and figures of one set of records."""

    def __init__(self, records):
        self.r = records
        self.claims = []  # dicts: id, text, expected, seeds, values, threshold, side, digits

    def runs(self, experiment):
        return self.r.get(experiment, {})

    def claim(self, cid, text, expected, a, b, threshold=0.0, side=">", op="diff", digits=1,
              figure=None, short=""):
        seeds, values = paired(a, b, op)
        c = dict(id=cid, text=text, short=short, expected=expected, seeds=seeds, values=values,
                 threshold=threshold, side=side, digits=digits, figure=figure,
                 verdict=verdict(values, threshold, side) if values else "not run")
        self.claims.append(c)
        return c

    # ----- experiment 1
    def e1(self):
        runs = self.runs("e1")
        gt, disc = by_seed(runs, "gt", box50), by_seed(runs, "disc_new", box50)
        self.claim("C1a", "ground truth above discovery-made labels (test box AP50, gt - disc)",
                   "shown, +10 to +35", gt, disc, short="gt - disc_new (box AP50)", figure="e1")
        self.claim("C1b", "discovery-made detector reaches half of the ground-truth one "
                   "(box AP50 ratio disc / gt, threshold 0.5)", "0.5 to 0.8 (either way)",
                   disc, gt, threshold=0.5, op="ratio", digits=2,
                   short="disc_new / gt (box AP50 ratio)", figure="e1")
        seeds = sorted(set(gt) | set(disc))
        gtm, discm = by_seed(runs, "gt", mask50), by_seed(runs, "disc_new", mask50)
        labels = by_seed(runs, "labels_disc_new", lambda r: r["vs_train_gt"])
        rows = [[s, fmt(gt.get(s)), fmt(disc.get(s)), fmt(gtm.get(s)), fmt(discm.get(s)),
                 fmt(labels[s]["box"]["AP50"]) if s in labels else "—",
                 fmt(labels[s]["mask"]["AP50"]) if s in labels else "—",
                 labels[s]["num_labels"] if s in labels else "—"] for s in seeds]
        return table(["seed", "gt box AP50", "disc box AP50", "gt mask AP50", "disc mask AP50",
                      "labels box AP50 (train)", "labels mask AP50 (train)", "labels"], rows)

    # ----- experiment 2
    def e2(self):
        runs = self.runs("e2")
        pre = by_seed(runs, "round0", lambda r: r["precondition"])
        rows = []
        for s, p in sorted(pre.items()):
            missed = p["label_missed_objects"]
            rows.append([s, fmt(p["labels_vs_train_gt"]["recall"], 3),
                         fmt(p["detector_vs_train_gt"]["recall"], 3),
                         fmt(p["detector_vs_train_gt"]["precision"], 3),
                         f"{p['label_missed_found_by_detector']} / {missed}",
                         fmt(p["label_missed_found_by_detector"] / max(missed, 1), 3)])
        found = [p["label_missed_found_by_detector"] / max(p["label_missed_objects"], 1)
                 for p in pre.values()]
        precision = [p["detector_vs_train_gt"]["precision"] for p in pre.values()]
        met = bool(found) and np.mean(found) >= 0.2 and np.mean(precision) >= 0.8
        self.precondition = {"found": np.mean(found) if found else math.nan,
                             "precision": np.mean(precision) if precision else math.nan,
                             "met": met, "n": len(found)}
        pre_table = table(["seed", "labels recall", "detector recall (score >= 0.7)",
                           "detector precision", "label-missed objects found",
                           "share found"], rows)
        r0_recall = by_seed(runs, "round0",
                            lambda r: r["precondition"]["labels_vs_train_gt"]["recall"])
        r1 = by_seed(runs, "round1", lambda r: r["round1_labels_vs_train_gt"])
        self.claim("C2a", "round-1 labels recall above round-0 labels recall (train)",
                   "shown (at precision >= 0.9)", {s: v["recall"] for s, v in r1.items()},
                   r0_recall, digits=3, short="round-1 - round-0 labels recall", figure="e2")
        r1_precision = [v["precision"] for v in r1.values()]
        if len(r1_precision) >= SEEDS and np.mean(r1_precision) < 0.9:
            self.claims[-1]["verdict"] = (f"not shown (precision {np.mean(r1_precision):.3f} "
                                          "< 0.9)")
        c = self.claim("C2b", "round 1 above the control (test mask AP50, round1 - control)",
                       "shown, +1 to +6 (if P2 holds)", by_seed(runs, "round1", mask50),
                       by_seed(runs, "control", mask50),
                       short="round 1 - control (mask AP50)", figure="e2")
        if len(found) >= SEEDS and not met:
            c["verdict"] = "not tested (P2 not met)"
        rows = []
        for s in sorted(set(pre) | set(r1)):
            def get(prefix, fn, s=s):
                rec = runs.get(f"{prefix}_s{s}")
                return fmt(fn(rec)) if rec else "—"
            merge = runs.get(f"round1_s{s}", {}).get("merge", {})
            rows.append([s, get("round0", box50), get("round1", box50), get("control", box50),
                         get("round0", mask50), get("round1", mask50), get("control", mask50),
                         merge.get("predictions_kept", "—"), merge.get("old_kept", "—"),
                         merge.get("old_replaced", "—"),
                         fmt(r1[s]["recall"], 3) if s in r1 else "—",
                         fmt(r1[s]["precision"], 3) if s in r1 else "—"])
        rounds_table = table(["seed", "round 0 box", "round 1 box", "control box",
                              "round 0 mask", "round 1 mask", "control mask",
                              "predictions kept", "old labels kept", "old labels replaced",
                              "round-1 labels recall", "round-1 labels precision"], rows)
        return pre_table, rounds_table

    # ----- experiment 3
    def e3(self):
        runs = self.runs("e3")
        arms = {arm: by_seed(runs, f"{arm}_5pct", box50) for arm in ("pseudo", "shuffled",
                                                                        "scratch")}
        self.claim("C3a", "pseudo-label start above scratch with as many iterations "
                   "(test box AP50, pseudo - scratch)", "shown, +5 to +25", arms["pseudo"],
                   arms["scratch"], short="pseudo - scratch (box AP50)", figure="e3")
        self.claim("C3b", "pseudo-label start above the shuffled-label start "
                   "(test box AP50, pseudo - shuffled)", "shown, +3 to +20", arms["pseudo"],
                   arms["shuffled"], short="pseudo - shuffled (box AP50)", figure="e3")
        starts = by_seed(runs, "shuffled_start", box50)
        masks = {arm: by_seed(runs, f"{arm}_5pct", mask50) for arm in arms}
        seeds = sorted(set().union(*arms.values(), starts))
        rows = [[s] + [fmt(arms[a].get(s)) for a in arms] + [fmt(masks[a].get(s)) for a in arms]
                + [fmt(starts.get(s))] for s in seeds]
        return table(["seed", "pseudo box", "shuffled box", "scratch box", "pseudo mask",
                      "shuffled mask", "scratch mask", "shuffled start before finetuning "
                      "(box)"], rows)

    # ----- experiment 4
    def e4(self):
        runs = self.runs("e4")
        novel = {arm: by_seed(runs, arm, ov("AP50-novel"))
                 for arm in ("ov_base", "ov_free", "ov_free_base")}
        base = {arm: by_seed(runs, arm, ov("AP50-base")) for arm in novel}
        self.claim("C4a", "annotation-free (named among 6) above base ground truth on novel "
                   "classes (novel AP50, ov_free - ov_base)", "shown, +5 to +25",
                   novel["ov_free"], novel["ov_base"],
                   short="ov_free - ov_base (novel AP50)", figure="e4")
        self.claim("C4b", "naming the novel classes is what helps (novel AP50, ov_free - "
                   "ov_free_base)", "shown", novel["ov_free"], novel["ov_free_base"],
                   short="ov_free - ov_free_base (novel AP50)", figure="e4")
        self.claim("C4c", "exploratory: annotation-free vs ground truth on base classes "
                   "(base AP50, ov_free_base - ov_base)", "negative", base["ov_free_base"],
                   base["ov_base"], side="<",
                   short="ov_free_base - ov_base (base AP50)", figure="e4")
        seeds = sorted(set().union(*novel.values()))
        rows = [[s] + [f"{fmt(base[a].get(s))} / {fmt(novel[a].get(s))}" for a in novel]
                for s in seeds]
        arms_table = table(["seed", "ov_base base / novel", "ov_free base / novel",
                            "ov_free_base base / novel"], rows)
        ob = base["ov_base"]
        median = float(np.median(list(ob.values()))) if ob else math.nan
        collapsed = sorted(s for s, v in ob.items() if v < median / 2)
        self.collapse = (collapsed, len(ob), median)
        confusion, labels = {}, by_seed(runs, "labels", lambda r: r["confusion"])
        for conf in labels.values():
            for true, row in conf.items():
                for name, n in row.items():
                    confusion.setdefault(true, {}).setdefault(name, 0)
                    confusion[true][name] += n
        names = ["circle", "square", "triangle", "hexagon", "star", "cross"]
        rows = []
        for true in names:
            row = confusion.get(true, {})
            total = sum(row.values())
            rows.append([true] + [row.get(n, 0) for n in names]
                        + [fmt(row.get(true, 0) / total, 3) if total else "—"])
        conf_table = table(["true \\ named"] + names + ["accuracy"], rows)
        return arms_table, conf_table, len(labels)

    # ----- summary and compute
    def summary(self):
        rows = []
        for c in self.claims:
            if c["values"]:
                mean, low, high = interval(c["values"])
                d = c["digits"]
                measured = (f"{fmt(mean, d)} [{fmt(low, d)}, {fmt(high, d)}], "
                            f"n = {len(c['values'])}")
            else:
                measured = "—"
            rows.append([c["id"], c["text"], c["expected"], measured,
                         f"{c['side']} {c['threshold']:g}", c["verdict"]])
        p = self.precondition
        rows.insert([c["id"] for c in self.claims].index("C2a"), [
            "P2", "precondition: round-0 detector (score >= 0.7) finds >= 20 % of the objects "
            "its labels miss, precision >= 0.8", "met",
            f"found {fmt(p['found'], 3)}, precision {fmt(p['precision'], 3)}, n = {p['n']}",
            ">= 0.2, >= 0.8",
            ("met" if p["met"] else "not met") if p["n"] >= SEEDS
            else f"incomplete ({p['n']} of {SEEDS} seeds)"])
        collapsed, n, median = self.collapse
        rows.append(["E4d", "exploratory: base-annotated seeds whose base AP50 is below half "
                     "the median", "some", f"{len(collapsed)} of {n} (median {fmt(median)})",
                     "—", "seeds " + ", ".join(map(str, collapsed)) if collapsed else "none"])
        return table(["claim", "what", "expected (pre-registered)",
                      "measured: mean [95 % CI], seeds", "threshold", "verdict"], rows)

    def compute(self):
        rows, total = [], {"iters": 0, "train": 0.0, "wall": 0.0, "cpu": 0.0}
        for exp in ("e1", "e2", "e3", "e4"):
            runs = list(self.runs(exp).values())
            if not runs:
                continue
            iters = sum(r.get("iterations") or r.get("round_iterations") or 0 for r in runs)
            train = sum(r.get("train_seconds") or 0 for r in runs)
            wall = sum(r["wall_seconds"] for r in runs)
            cpu = sum(r["cpu_seconds"] for r in runs)
            loads = [x for r in runs for x in (r["load_average_start"][0],
                                               r["load_average_end"][0])]
            commits = sorted({r["commit"][:7] + ("+changes" if r["dirty"] else "")
                              for r in runs})
            threads = sorted({str(r["torch_threads"]) for r in runs})
            rows.append([exp, len(runs), iters, f"{train / 60:.0f}", f"{wall / 60:.0f}",
                         f"{cpu / 3600:.2f}", f"{min(loads):.1f}-{max(loads):.1f}",
                         ", ".join(threads), ", ".join(commits)])
            for k, v in zip(("iters", "train", "wall", "cpu"), (iters, train, wall, cpu)):
                total[k] += v
        rows.append(["all", sum(r[1] for r in rows), total["iters"],
                     f"{total['train'] / 60:.0f}", f"{total['wall'] / 60:.0f}",
                     f"{total['cpu'] / 3600:.2f}", "", "", ""])
        return table(["experiment", "records", "training iterations", "training min",
                      "wall min", "CPU h", "load (1-min)", "torch threads", "commits"], rows)

    def blocks(self):
        e1 = self.e1()
        e2_pre, e2_rounds = self.e2()
        e3 = self.e3()
        e4_arms, e4_conf, n_label_files = self.e4()
        return {"summary": self.summary(), "e1": e1, "e2_precondition": e2_pre,
                "e2_rounds": e2_rounds, "e3": e3, "e4_arms": e4_arms,
                "e4_confusion": e4_conf + f"\n\nSummed over {n_label_files} label files "
                                          "(one per seed).", "compute": self.compute()}

    def figures(self, folder):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        os.makedirs(folder, exist_ok=True)
        for exp in ("e1", "e2", "e3", "e4"):
            claims = [c for c in self.claims if c["figure"] == exp and c["values"]]
            if not claims:
                continue
            fig, axes = plt.subplots(1, len(claims), figsize=(3.6 * len(claims), 3.4),
                                     squeeze=False)
            for ax, c in zip(axes[0], claims):
                x = np.arange(len(c["values"]))
                ax.plot(x, c["values"], "ko", ms=5, label="one seed (paired difference)"
                        if c["id"] != "C1b" else "one seed (ratio)")
                mean, low, high = interval(c["values"])
                ax.errorbar([len(x) + 0.5], [mean], yerr=[[mean - low], [high - mean]],
                            fmt="s", color="tab:blue", capsize=4, label="mean, 95 % t interval")
                ax.axhline(c["threshold"], color="tab:red", ls="--",
                           label=f"pre-registered threshold {c['threshold']:g}")
                ax.set_xticks(list(x) + [len(x) + 0.5],
                              [f"s{s}" for s in c["seeds"]] + ["mean"], fontsize=7)
                ax.set_title(f"{c['id']}: {c['short']}\n{c['verdict']}", fontsize=9)
                ax.set_ylabel("ratio" if c["id"] == "C1b" else "difference (AP points)",
                              fontsize=8)
                ax.legend(fontsize=6, loc="best")
            fig.suptitle(f"Experiment {exp[1]} (synthetic shapes; no real CLIP or SAM)",
                         fontsize=9)
            fig.tight_layout()
            fig.savefig(os.path.join(folder, f"exp23_{exp}.png"), dpi=110)
            plt.close(fig)


def fill(doc_text, blocks):
    def sub(m):
        name = m.group(2)
        if name not in blocks:
            raise SystemExit(f"report: the document has a block {name!r} the report does not "
                             f"make; known: {sorted(blocks)}")
        return m.group(1) + blocks[name] + "\n" + m.group(4)
    return BLOCK.sub(sub, doc_text)


def check(doc_path, blocks):
    """Problems (one line each) where the document's blocks differ from the records'."""
    with open(doc_path) as f:
        text = f.read()
    found = {m.group(2): m.group(3) for m in BLOCK.finditer(text)}
    problems = [f"{doc_path}: no block {name!r} (<!-- report:{name} -->)"
                for name in blocks if name not in found]
    for name, body in found.items():
        want = blocks.get(name)
        if want is None:
            problems.append(f"{doc_path}: block {name!r} is not made by the report")
            continue
        have_lines, want_lines = body.rstrip("\n").split("\n"), want.split("\n")
        for i, (h, w) in enumerate(zip(have_lines, want_lines)):
            if h != w:
                problems.append(f"{doc_path}: block {name!r} line {i + 1}: the document says "
                                f"{h!r}, the records give {w!r}")
                break
        else:
            if len(have_lines) != len(want_lines):
                problems.append(f"{doc_path}: block {name!r} has {len(have_lines)} lines, the "
                                f"records give {len(want_lines)}")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default=RECORDS)
    parser.add_argument("--doc", default=DOC)
    parser.add_argument("--write", action="store_true", help="fill the document's blocks")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if any block of the document differs from the records")
    parser.add_argument("--figures", help="folder for the figures (PNG)")
    args = parser.parse_args()
    records = load_records(args.records)
    if not records:
        sys.exit(f"report: no records in {args.records}")
    report = Report(records)
    blocks = report.blocks()
    if args.check:
        problems = check(args.doc, blocks)
        for p in problems:
            print(p)
        n = sum(len(v) for v in records.values())
        print(f"report --check: {len(blocks)} blocks from {n} records: "
              + ("the document matches" if not problems else f"{len(problems)} differ"))
        sys.exit(1 if problems else 0)
    if args.write:
        with open(args.doc) as f:
            text = f.read()
        with open(args.doc, "w") as f:
            f.write(fill(text, blocks))
    else:
        for name, body in blocks.items():
            print(f"## {name}\n{body}\n")
    if args.figures:
        report.figures(args.figures)


if __name__ == "__main__":
    main()
