"""The Python API: ``zip_d2.load_labeler(...)(image)`` as the README shows it, equal to what
tools/generate_pseudo_labels.py writes for the same image and settings."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATE = os.path.join(REPO, "tools", "generate_pseudo_labels.py")
TINY = os.path.join(REPO, "configs", "pseudo", "tiny_random.yaml")
DEMO = os.path.join(REPO, "datasets", "demo", "images")
# One thread per process: the job and the API process run their float reductions in one order.
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _python(code, env=ENV, cwd=REPO):
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def readme_snippet():
    """The python block of README.md's "Use from Python" section."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("#### Use from Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_snippet_runs_with_the_tiny_preset():
    snippet = readme_snippet()
    assert '"zip_paper"' in snippet
    code = snippet.replace('"zip_paper"', '"tiny_random"') + (
        "\nassert isinstance(results, list) and results, results"
        "\nprint('RESULTS', len(results), sorted(results[0]))")
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANDOM WEIGHTS" in proc.stderr  # the random-weight preset announces itself
    keys = proc.stdout.strip().splitlines()[-1]
    for key in ("segmentation", "bbox", "area", "score", "category_id", "category_name",
                "clip_score", "sam_score"):
        assert f"'{key}'" in keys, keys


API_RESULTS = """
import json, sys
import numpy as np
import zip_d2
from PIL import Image

labeler = zip_d2.load_labeler("tiny_random", output_mode="coco_rle", batch_size=2)
paths = sys.argv[1:]
calls = []
label_batch = labeler.engine.label_batch
labeler.engine.label_batch = lambda images, classes=None: calls.append(len(images)) or \
    label_batch(images, classes)
batch = labeler(paths)
assert calls == [2, 1], calls  # batch_size images per labeler call, as the job runs them
single = labeler(paths[0])
labeler.output_mode = "binary_mask"
binary = labeler(np.asarray(Image.open(paths[0]).convert("RGB")))
for r, b in zip(single, binary):
    from pycocotools import mask
    assert b["segmentation"].dtype == bool
    assert (mask.decode(r["segmentation"]).astype(bool) == b["segmentation"]).all()
    assert b["bbox"] == r["bbox"] and b["score"] == r["score"]
assert len(single) == len(binary)
print(json.dumps({"batch": batch, "single": single}))
"""


def test_labeler_results_equal_the_jobs_annotations_for_the_same_images(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    names = ["grace_hopper.jpg", "scene_00.jpg", "scene_01.jpg"]
    for name in names:
        shutil.copy(os.path.join(DEMO, name), images / name)
    out = tmp_path / "labels.json"
    job = subprocess.run([sys.executable, GENERATE, "--images", str(images), "--config", TINY,
                          "--out", str(out), "--no-progress", "--batch-size", "2"],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert job.returncode == 0, job.stderr[-3000:]
    data = json.load(open(out))
    by_file = {img["file_name"]: img["id"] for img in data["images"]}
    names_of = {c["id"]: c["name"] for c in data["categories"]}

    proc = subprocess.run([sys.executable, "-c", API_RESULTS,
                           *[str(images / n) for n in names]],
                          env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = json.loads(proc.stdout.strip().splitlines()[-1])
    # Batched and single calls may differ in the last float bits (batched kernels), so the
    # API is compared with the job at the job's own batching.
    total = 0
    for name, results in zip(names, api["batch"]):
        written = [a for a in data["annotations"] if a["image_id"] == by_file[name]]
        assert len(results) == len(written), name
        for r, a in zip(results, written):
            assert r["category_name"] == names_of[a["category_id"]]
            r.pop("category_name")
            a = {k: v for k, v in a.items() if k not in ("id", "image_id")}
            assert set(r) == set(a) and {"clip_score", "sam_score"} <= set(a)
            assert r == a, name
            assert r["score"] == pytest.approx((r["clip_score"] * r["sam_score"]) ** 0.5,
                                               rel=1e-5)
        total += len(written)
    assert total > 0


def test_bad_preset_and_missing_weights_are_one_line_errors(tmp_path):
    env = dict(ENV, ZIP_D2_OFFLINE="1", HF_HUB_OFFLINE="1", HOME=str(tmp_path / "home"),
               ZIP_D2_CACHE=str(tmp_path / "cache"), XDG_CACHE_HOME=str(tmp_path / "xdg"),
               HF_HOME=str(tmp_path / "hf"))
    code = ("import zip_d2\n"
            "for args in (('no_such_preset',), ('zip_paper',)):\n"
            "    try:\n"
            "        zip_d2.load_labeler(*args)\n"
            "    except Exception as e:\n"
            "        print(type(e).__name__, '|', e)\n")
    proc = _python(code, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    preset, weights = proc.stdout.strip().splitlines()
    assert preset.startswith("ValueError | unknown labeler preset 'no_such_preset'")
    assert "tiny_random" in preset and "zip_paper" in preset
    tool = subprocess.run([sys.executable, GENERATE, "--images", DEMO, "--out",
                           str(tmp_path / "out.json")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert tool.returncode == 2
    assert weights == "MissingWeightsError | " + tool.stderr.strip().splitlines()[-1][
        len("error: "):]


def test_import_zip_d2_loads_no_model_library():
    proc = _python("import sys, zip_d2; print(sorted({m.split('.')[0] for m in sys.modules} & "
                   "{'torch', 'detectron2', 'numpy', 'open_clip', 'cv2'}))")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
