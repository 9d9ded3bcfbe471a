"""The training set as one memory-mapped file per machine: the same records as detectron2's
load_coco_json, built once, and shared by the local processes (their page-cache copy counted
once between them)."""
import json
import os
import random
import subprocess
import sys
import time

from detectron2.data.datasets import load_coco_json

from zip_d2.data.register import EXTRA_ANNOTATION_KEYS
from zip_d2.data.shared_dataset import SerializedDataset, shared_dataset
from zip_d2.labels import shards
from zip_d2.labels.scale_benchmark import write_job

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pseudo_labels(tmp_path, n=120):
    made = write_job(str(tmp_path / "job"), n)
    shards.write_merged(shards.MergePlan(made["shard_dir"]), made["out"])
    return made["out"], made["image_root"]


_NAMES = []


def _expected(json_file, image_root, filter_empty=False):
    _NAMES.append(json_file)  # a fresh metadata name each time (classes differ per file)
    dicts = load_coco_json(json_file, image_root, f"shared_dataset_test_{len(_NAMES)}",
                           extra_annotation_keys=EXTRA_ANNOTATION_KEYS)
    if filter_empty:
        dicts = [d for d in dicts if any(a.get("iscrowd", 0) == 0 for a in d["annotations"])]
    return dicts


def test_records_are_load_coco_jsons_in_one_pass_or_grouped_in_memory(tmp_path,
                                                                      synthetic_dataset):
    pseudo, pseudo_root = _pseudo_labels(tmp_path)
    data = json.load(open(pseudo))
    data["images"][5]["id"], data["images"][6]["id"] = 10**6, 0  # images not in id order
    for a in data["annotations"]:
        a["image_id"] = {data["images"][5]["id"]: 10**6}.get(a["image_id"], a["image_id"])
    random.Random(0).shuffle(data["annotations"])  # not grouped by image: grouped in memory
    data["annotations"][0]["image_id"] = 555555  # of no image: left out, as detectron2 does
    shuffled = str(tmp_path / "shuffled.json")
    json.dump(data, open(shuffled, "w"))
    synthetic_root = os.path.join(synthetic_dataset["root"], "train")
    for json_file, root in ((pseudo, pseudo_root), (shuffled, pseudo_root),
                            (synthetic_dataset["train"], synthetic_root)):
        for filter_empty in (False, True):
            got = shared_dataset([(json_file, root)], str(tmp_path / "cache"), filter_empty,
                                 EXTRA_ANNOTATION_KEYS)
            assert list(got) == _expected(json_file, root, filter_empty)
    assert len(got) > 0 and got[-1] == got[len(got) - 1]


_CHILD = """
import hashlib, pickle, sys
from zip_d2.data.shared_dataset import shared_dataset
ds = shared_dataset([(sys.argv[1], sys.argv[2])], sys.argv[3], True, ["score"])
digest = hashlib.sha256(pickle.dumps([ds[i] for i in range(len(ds))])).hexdigest()
print(ds.path, digest, flush=True)
sys.stdin.readline()  # stay alive (and mapped) until the parent has measured
"""


def _mapping_pss_kb(pid, path):
    """Pss (kB) of the mappings of ``path`` in process ``pid``, from /proc/PID/smaps."""
    total, inside = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
                inside = fields[-1] == path
            elif inside and fields[0] == "Pss:":
                total += int(fields[1])
    return total


def test_two_training_processes_build_one_file_and_share_its_pages(tmp_path):
    pseudo, root = _pseudo_labels(tmp_path, 600)
    cache = str(tmp_path / "cache")
    env = dict(os.environ, PYTHONPATH=REPO)
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, pseudo, root, cache], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]  # started together: one builds, the other waits for it
    try:
        outputs = [p.stdout.readline().split() for p in procs]
        assert all(len(o) == 2 for o in outputs), outputs
        (path_a, digest_a), (path_b, digest_b) = outputs
        assert path_a == path_b and digest_a == digest_b
        assert [f for f in os.listdir(cache) if f.endswith(".d2data")] == [
            os.path.basename(path_a)]
        size_kb = os.path.getsize(path_a) / 1024
        pss = [_mapping_pss_kb(p.pid, path_a) for p in procs]
        # every page read by both, counted once between them (half to each)
        assert sum(pss) <= 1.2 * size_kb + 8, (pss, size_kb)
        assert min(pss) > 0.3 * size_kb
    finally:
        for p in procs:
            p.communicate("\n", timeout=60)
    expected = _expected(pseudo, root, filter_empty=True)
    ds = SerializedDataset(path_a)
    assert len(ds) == len(expected) and ds[17] == expected[17]
    # a changed JSON gets its own file
    time.sleep(0.01)
    os.utime(pseudo)
    assert shared_dataset([(pseudo, root)], cache, True, ["score"]).path != path_a
