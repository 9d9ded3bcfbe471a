"""Shards of different jobs never merge silently; broken shards and manifests are one line.

Two real jobs label one folder with the same stand-in labeler, whose vocabulary lists the same
two classes in another order: a rank file copied from one job into the other's folder (the
documented multi-node merge) must be refused, not merged under the wrong class names.
"""
import json
import os
import shutil

import numpy as np
import pytest
from conftest import load_tool
from PIL import Image

from zip_d2.config import get_cfg
from zip_d2.labels import shards
from zip_d2.labels.job import JobError, JobOptions, run_job

TINY = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "pseudo",
                    "tiny_random.yaml")


class _OrderedVocabularyLabeler:
    """Stand-in labeler whose vocabulary lists ``names`` in that order; sees a cat everywhere."""

    def __init__(self, names):
        self.categories = [{"id": i, "name": n} for i, n in enumerate(names, 1)]

    def describe(self):
        return {"method": "stand-in", "random_weights": True}

    def __call__(self, image, classes=None):
        mask = np.zeros(image.shape[:2], bool)
        mask[2:6, 3:9] = True
        return [{"category": "cat", "score": 0.5, "mask": mask, "box": np.zeros(4)}]


def _cfg():
    cfg = get_cfg()
    cfg.merge_from_file(TINY)
    return cfg


def _images(root, indices):
    os.makedirs(root, exist_ok=True)
    for i in indices:
        pixels = np.full((30, 40, 3), 40 + 20 * i, np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, f"{i}.png"))


def _job(root, out, names, **kwargs):
    opts = JobOptions(out=out, images=root, workers=0, progress=False, **kwargs)
    return run_job(_cfg(), opts, build_labeler=lambda cfg: _OrderedVocabularyLabeler(names))


@pytest.fixture
def two_jobs(tmp_path):
    """Job A ([cat, dog]) labeled images 0-1; job B ([dog, cat]) images 0-3 of the same folder,
    images 2-3 added after A ran. B's rank file is copied into A's folder as rank 1 of 2."""
    root = str(tmp_path / "images")
    _images(root, [0, 1])
    a = str(tmp_path / "a.json")
    _job(root, a, ["cat", "dog"])
    _images(root, [2, 3])
    b = str(tmp_path / "b.json")
    _job(root, b, ["dog", "cat"])
    foreign = os.path.join(a + ".shards", "rank00001-of-00002.jsonl")
    shutil.copy(os.path.join(b + ".shards", "rank00000-of-00001.jsonl"), foreign)
    return root, a, b, foreign


def _merge(capsys, *argv):
    code = load_tool("merge_pseudo_labels").main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_rank_file_of_a_job_with_another_vocabulary_order_is_refused(two_jobs, tmp_path,
                                                                     capsys):
    _, a, _, foreign = two_jobs
    merged = str(tmp_path / "merged.json")
    code, out, err = _merge(capsys, "--out", merged, "--shards", a + ".shards")
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert foreign in lines[0] and "job.json" in lines[0] and "categories" in lines[0]
    assert not os.path.exists(merged)


def test_rank_files_of_jobs_with_equal_settings_merge_and_keep_their_class_names(two_jobs,
                                                                                tmp_path,
                                                                                capsys):
    root, _, b, _ = two_jobs
    c = str(tmp_path / "c.json")  # same settings as B: its ranks may be merged with B's
    _job(root, c, ["dog", "cat"])
    shutil.copy(os.path.join(b + ".shards", "rank00000-of-00001.jsonl"),
                os.path.join(c + ".shards", "rank00001-of-00002.jsonl"))
    merged = str(tmp_path / "merged.json")
    code, out, err = _merge(capsys, "--out", merged, "--shards", c + ".shards")
    assert code == 0, (out, err)
    data = json.load(open(merged))
    names = {cat["id"]: cat["name"] for cat in data["categories"]}
    assert len(data["images"]) == 4
    assert {names[ann["category_id"]] for ann in data["annotations"]} == {"cat"}


def test_a_shard_line_without_file_name_is_one_line_naming_file_and_line(two_jobs, tmp_path,
                                                                         capsys):
    _, a, _, foreign = two_jobs
    os.remove(foreign)
    own = os.path.join(a + ".shards", "rank00000-of-00001.jsonl")
    with open(own, "a") as f:
        f.write(json.dumps({"width": 40, "height": 30, "annotations": []}) + "\n")
    n_lines = open(own).read().count("\n")
    code, out, err = _merge(capsys, "--out", str(tmp_path / "m.json"), "--shards", a + ".shards")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{own}:{n_lines}: shard line has no file_name" in err


def test_a_header_less_shard_of_an_older_zip_d2_is_refused_naming_it(two_jobs, tmp_path, capsys):
    _, a, _, foreign = two_jobs
    with open(foreign) as f:
        records = f.readlines()[1:]  # what a shard looked like before shards carried a header
    with open(foreign, "w") as f:
        f.writelines(records)
    code, out, err = _merge(capsys, "--out", str(tmp_path / "m.json"), "--shards", a + ".shards")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert foreign in err and "no job header" in err


@pytest.mark.parametrize("content", ["", "{", "[]", '{"settings": {}}'])
def test_an_empty_or_corrupt_job_json_is_one_line_for_merge_and_rerun(tmp_path, capsys, content):
    root = str(tmp_path / "images")
    _images(root, [0, 1])
    a = str(tmp_path / "a.json")
    _job(root, a, ["cat", "dog"])
    manifest = os.path.join(a + ".shards", "job.json")
    with open(manifest, "w") as f:
        f.write(content)
    code, out, err = _merge(capsys, "--out", str(tmp_path / "m.json"), "--shards", a + ".shards")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert manifest in err and "--overwrite" in err
    # The job, rerun: its own output is no longer vouched for, and then the manifest is refused.
    with pytest.raises(JobError, match="--overwrite") as e:
        _job(root, a, ["cat", "dog"])
    assert "\n" not in str(e.value)
    os.remove(a)
    with pytest.raises(JobError, match="empty or corrupt.*--overwrite"):
        _job(root, a, ["cat", "dog"])
    _job(root, a, ["cat", "dog"], overwrite=True)  # the fix the line names works
    assert len(json.load(open(a))["images"]) == 2


def test_a_rank_rerun_with_other_settings_never_appends_to_its_old_shard(tmp_path):
    # Ranks on another machine have no job.json to compare with: the shard's header is checked.
    shard = str(tmp_path / "rank00001-of-00002.jsonl")
    settings = {"format": shards.SETTINGS_FORMAT, "categories": [{"id": 1, "name": "cat"}]}
    with shards.ShardWriter(shard, settings) as w:
        w.write({"file_name": "0.png", "skipped": "x"})
    other = dict(settings, categories=[{"id": 1, "name": "dog"}])
    with pytest.raises(shards.ShardError, match=r"another job.*categories\.0\.name"):
        shards.ShardWriter(shard, other)
    with shards.ShardWriter(shard, settings) as w:  # the same job resumes it
        w.write({"file_name": "1.png", "skipped": "y"})
    assert [r["file_name"] for r in shards.read_shard(shard)] == ["0.png", "1.png"]
