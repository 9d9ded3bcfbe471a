"""The README's offline path, `make chain` (tools/whole_chain.sh), runs end to end: synthetic
data -> pseudo-labels -> validate / visualize / eval -> train -> eval-only -> OV eval ->
self-train -> 10 % finetune -> demo on an image and a video, here with tiny sizes and iteration
counts so the path cannot rot."""
import json
import os
import re
import subprocess
import sys

from conftest import REPO

SCRIPT = os.path.join(REPO, "tools", "whole_chain.sh")
# Tiny: 6 training scenes, a few iterations, one process, 80-px inputs, no loader workers.
TINY = {"NUM_TRAIN": "6", "NUM_VAL": "3", "TRAIN_ITERS": "3", "SELF_TRAIN_ITERS": "2",
        "FINETUNE_ITERS": "2", "LABEL_IMAGES": "2", "LAUNCH": "",
        "OPTS": "INPUT.MIN_SIZE_TRAIN (80,) INPUT.MIN_SIZE_TEST 80 DATALOADER.NUM_WORKERS 0 "
                "MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.0"}


def step_names():
    with open(SCRIPT, encoding="utf-8") as f:
        return re.findall(r'^step "([^"]+)"', f.read(), flags=re.M)


def test_the_whole_chain_runs_offline_and_times_every_step(tmp_path):
    work = tmp_path / "chain"
    env = dict(os.environ, PY=sys.executable, WORK=str(work), ZIP_D2_OFFLINE="1", **TINY)
    proc = subprocess.run(["bash", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = step_names()
    assert len(names) == 13
    # Every step ran, in order, and is in the closing table with its wall time.
    table = proc.stdout.split("== wall times")[1].splitlines()[1:]
    assert [re.sub(r"\s+[\d.]+ s$", "", row).strip() for row in table] == names
    assert all(float(row.split()[-2]) > 0 for row in table)

    labels = json.load(open(work / "labels.json"))
    assert labels["annotations"] and "discovery" in json.dumps(labels["info"]).lower()
    tiny = json.load(open(work / "tiny_labels.json"))
    assert tiny["info"]["random_weights"] is True and len(tiny["images"]) == 2
    assert (work / "vis" / "index.html").is_file()
    assert (work / "train" / "model_final.pth").is_file()
    results = work / "eval" / "inference" / "chain_val" / "coco_instances_results.json"
    assert results.is_file()
    assert "AP50" in (work / "logs" / "6.log").read_text()
    round1 = json.load(open(work / "self_train" / "round1" / "labels.json"))
    assert round1["info"]["self_training"]["round"] == 1
    subset = json.load(open(work / "subsets" / "train_10pct_seed1.json"))
    assert len(subset["images"]) == 1  # 10 % of 6 images, rounded, at least one
    assert (work / "finetune" / "model_final.pth").is_file()
    assert (work / "demo" / "val_000001.png").is_file() and (work / "demo" / "shapes.mp4").is_file()


def test_the_readme_lists_every_step_of_the_chain():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme.split("### The whole chain on this machine")[1].split("\n## ")[0]
    assert "make chain" in section
    for name in step_names():
        assert f"| {name} |" in section, name
