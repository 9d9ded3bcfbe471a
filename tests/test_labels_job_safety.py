"""The pseudo-label job refuses, or records, every input that would give wrong output.

A hostile user's reruns: another folder with the same file names, images replaced in place, an
``--out`` that holds someone else's file (or the job's own input), two jobs on one ``--out``,
flag values that make no sense, a disk that fills up; and the validator asked to check images
it cannot find.
"""
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import load_tool
from test_labels_job import ENV, REPO, labels_only, load, save, scene, tiny_cfg

from zip_d2.labels import shards
from zip_d2.labels.job import JobError, JobOptions, run_job

TINY = os.path.join(REPO, "configs", "pseudo", "tiny_random.yaml")


class _ContentLabeler:
    """Stand-in labeler (the labeler interface, no model): one detection whose score is the
    image's mean brightness, so every label tells which pixels it was made from."""

    categories = [{"id": 1, "name": "object"}]

    def __init__(self, gate=None):
        self.gate, self.calls = gate, 0

    def describe(self):
        return {"method": "content stand-in", "random_weights": True, "device": "cpu"}

    def __call__(self, image, classes=None):
        self.calls += 1
        if self.gate is not None:
            self.gate(self.calls)
        mask = np.zeros(image.shape[:2], bool)
        mask[2:6, 3:9] = True
        return [{"category": "object", "score": float(image.mean()) / 255.0, "mask": mask,
                 "box": np.zeros(4)}]


def _folder(root, seeds):
    """One 40x30 PNG per seed, named 0.png, 1.png ... (the same names for any seeds)."""
    for i, seed in enumerate(seeds):
        save(os.path.join(root, f"{i}.png"), scene(seed, width=40, height=30))
    return root


def _job(out, images=None, labeler=None, **kwargs):
    opts = JobOptions(out=out, images=images, workers=0, progress=False, **kwargs)
    labeler = labeler or _ContentLabeler()
    return run_job(tiny_cfg(), opts, build_labeler=lambda cfg: labeler)


def _scores(data):
    names = {im["id"]: im["file_name"] for im in data["images"]}
    return {names[a["image_id"]]: a["score"] for a in data["annotations"]}


def _one_line(excinfo, fragment):
    message = str(excinfo.value)
    assert "\n" not in message and fragment in message, message


# --- 1. resume trusts content, not file names ------------------------------------------------

def test_rerun_on_another_folder_with_the_same_file_names_is_refused_in_one_line(tmp_path):
    first = _folder(str(tmp_path / "split_a"), [0, 1, 2])
    second = _folder(str(tmp_path / "split_b"), [10, 11, 12])
    out = str(tmp_path / "labels.json")
    _job(out, first)
    before = open(out, "rb").read()
    with pytest.raises(JobError) as e:
        _job(out, second)
    _one_line(e, "holds labels of other images")
    assert open(out, "rb").read() == before
    # --overwrite starts over: the labels are then exactly a fresh job's on the new folder.
    _job(out, second, overwrite=True)
    _job(str(tmp_path / "fresh.json"), second)
    assert labels_only(load(out)) == labels_only(load(str(tmp_path / "fresh.json")))
    assert load(out)["info"]["job"]["input"]["image_root"] == second


def test_images_replaced_in_place_are_relabelled_and_only_they(tmp_path):
    root = _folder(str(tmp_path / "images"), [0, 1, 2, 3])
    out = str(tmp_path / "labels.json")
    _job(out, root)
    for record in shards.read_all_shards(out + ".shards"):
        data = open(os.path.join(root, record["file_name"]), "rb").read()
        assert record["fingerprint"] == {"size": len(data),
                                         "sha256": hashlib.sha256(data).hexdigest()}
    # Replace 2.png with other pixels, keeping its size and modification time: only the
    # content tells that it changed.
    path = os.path.join(root, "2.png")
    stat = os.stat(path)
    save(path, scene(99, width=40, height=30))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    labeler = _ContentLabeler()
    result = _job(out, root, labeler=labeler)
    assert labeler.calls == 1 and result.images_labeled == 1
    assert result.images_changed == 1 and result.images_done_before == 3
    _job(str(tmp_path / "fresh.json"), root)
    assert labels_only(load(out)) == labels_only(load(str(tmp_path / "fresh.json")))
    # A third run finds nothing to do.
    again = _job(out, root, labeler=labeler)
    assert again.images_processed == 0 and labeler.calls == 1


# --- 2. --out may replace only the job's own output ------------------------------------------

def test_out_equal_to_an_input_is_refused_even_with_overwrite(tmp_path):
    root = _folder(str(tmp_path / "images"), [0, 1])
    listing = tmp_path / "instances.json"
    listing.write_text(json.dumps({"images": [{"id": 7, "file_name": "0.png"},
                                              {"id": 9, "file_name": "1.png"}],
                                   "annotations": [], "categories": []}))
    before = listing.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(JobError) as e:
            _job(str(listing), root, coco_json=str(listing), overwrite=overwrite)
        _one_line(e, "is an input of this command")
    assert listing.read_bytes() == before
    assert not os.path.exists(str(listing) + ".shards")


def test_out_holding_a_file_the_job_did_not_write_needs_overwrite(tmp_path):
    root = _folder(str(tmp_path / "images"), [0, 1])
    out = tmp_path / "labels.json"
    out.write_text('{"someone": "else\'s file"}')
    with pytest.raises(JobError) as e:
        _job(str(out), root)
    _one_line(e, "was not written by this job")
    assert out.read_text() == '{"someone": "else\'s file"}'
    assert not os.path.exists(str(out) + ".shards")
    _job(str(out), root, overwrite=True)
    # Its own output, for the same settings, it replaces without asking (a rerun, a resume).
    _job(str(out), root)
    labels = load(str(out))
    expected = labels_only(labels)
    # ... but not once someone else has changed it.
    labels["annotations"] = []
    out.write_text(json.dumps(labels))
    with pytest.raises(JobError) as e:
        _job(str(out), root)
    _one_line(e, "was not written by this job")
    assert load(str(out))["annotations"] == []
    # The merge tool follows the same rule.
    assert load_tool("merge_pseudo_labels").main(["--out", str(out)]) == 2
    assert load(str(out))["annotations"] == []
    assert load_tool("merge_pseudo_labels").main(["--out", str(out), "--overwrite"]) == 0
    assert labels_only(load(str(out))) == expected


# --- 6. one job per output -------------------------------------------------------------------

def test_a_second_job_on_the_same_out_is_refused_while_the_first_runs(tmp_path):
    root = _folder(str(tmp_path / "images"), range(6))
    out = str(tmp_path / "labels.json")
    started, release = threading.Event(), threading.Event()

    def hold_after_first_image(calls):
        if calls == 2:
            started.set()
            release.wait(60)

    first = {}

    def run_first():
        try:
            first["result"] = _job(out, root, labeler=_ContentLabeler(hold_after_first_image))
        except BaseException as e:  # reported by the assertion below
            first["error"] = e

    thread = threading.Thread(target=run_first)
    thread.start()
    try:
        assert started.wait(60)
        second = _ContentLabeler()
        with pytest.raises(JobError) as e:
            _job(out, root, labeler=second)
        _one_line(e, "another job is writing")
        assert second.calls == 0
    finally:
        release.set()
        thread.join(60)
    assert "error" not in first and first["result"].images_labeled == 6
    assert len(shards.read_all_shards(out + ".shards")) == 6


def test_a_killed_jobs_lock_does_not_block_the_next_run(tmp_path):
    root = _folder(str(tmp_path / "images"), range(4))
    out = str(tmp_path / "labels.json")
    # A job in another process that hangs inside the labeler after its first image (batches
    # of one, so that image's record is written before the hang).
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from test_labels_job_safety import _ContentLabeler, _job;"
        "_job(sys.argv[2], sys.argv[3], batch_size=1,"
        " labeler=_ContentLabeler(lambda calls: calls == 2 and time.sleep(600)))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, os.path.join(REPO, "tests"), out, root],
                            env=ENV, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    shard = shards.shard_path(out + ".shards", 0, 1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(shard) and open(shard).read().count("\n") >= 2:  # header, 1 image
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    result = _job(out, root)
    assert result.images_done_before == 1 and result.images_labeled == 3


def test_a_forked_child_outliving_the_job_does_not_hold_its_lock(tmp_path):
    # A SIGKILLed job's loader workers live on for a moment; they must not keep its lock.
    shard_dir = str(tmp_path / "labels.json.shards")
    os.makedirs(shard_dir)
    lock = shards.ShardLock(shard_dir, 0).acquire()
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:  # the worker: says it runs (fork handlers done), outlives the job's lock
        os.write(ready_w, b"1")
        time.sleep(5)
        os._exit(0)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"1"
        with pytest.raises(shards.ShardError):
            shards.ShardLock(shard_dir, 0).check_free()
        lock.release()  # the job is gone; its worker is not
        shards.ShardLock(shard_dir, 0).acquire().release()
    finally:
        os.close(ready_r)
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


# --- 7. nonsense settings stop in one line, before anything is written -----------------------

@pytest.mark.parametrize("case", ["yaml syntax error", "--batch-size 0", "--workers -1",
                                  "--prefetch 0", "--max-side -5",
                                  "--max-consecutive-failures 0",
                                  "PSEUDO.PRECISION fp8", "PSEUDO.BOUNDARY.INIT semantik",
                                  "PSEUDO.SCORE.NMS_IOU 5.0"])
def test_bad_flags_and_configs_stop_in_one_line_with_nothing_written(tmp_path, capsys, case):
    root = _folder(str(tmp_path / "images"), [0])
    out = tmp_path / "out" / "labels.json"
    config = TINY
    extra = case.split() if case.startswith(("--", "PSEUDO.")) else []
    if case == "yaml syntax error":
        config = str(tmp_path / "bad.yaml")
        open(config, "w").write("PSEUDO:\n  METHOD: [zip\n")
    rc = load_tool("generate_pseudo_labels").main(["--images", root, "--config", config, "--out",
                                                    str(out), "--no-progress", *extra])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), captured.err
    if extra:
        assert extra[0] in lines[0]
    assert not os.path.exists(tmp_path / "out")


# --- 8. a full disk leaves no temporary file behind ------------------------------------------

class _FullDiskFile:
    """A file object on a full disk: it exists, but no byte can be written to it."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def writelines(self, lines):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _fill_disk(mp, folder):
    """Make ``folder`` behave like a full filesystem: files can be created (as on a real full
    disk, which still has inodes) but every write fails with ENOSPC."""
    import builtins

    folder = os.path.realpath(folder) + os.sep
    real_open, real_fdopen, real_write = builtins.open, os.fdopen, os.write

    def inside(path):
        return os.path.realpath(path).startswith(folder)

    def fd_inside(fd):
        return inside(os.readlink(f"/proc/self/fd/{fd}"))

    def full_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        writing = isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+")
        return _FullDiskFile(f) if writing and inside(file) else f

    def full_fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        return _FullDiskFile(f) if any(c in mode for c in "wax+") and fd_inside(fd) else f

    def full_write(fd, data):
        if fd_inside(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    mp.setattr(builtins, "open", full_open)
    mp.setattr(os, "fdopen", full_fdopen)
    mp.setattr(os, "write", full_write)


def _leftovers(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, files in os.walk(folder) for f in files
                  if ".tmp" in f or "write-test" in f)


def test_a_full_disk_leaves_no_temporary_files_and_loses_no_finished_image(tmp_path,
                                                                           monkeypatch):
    root = _folder(str(tmp_path / "images"), range(3))
    work = tmp_path / "work"
    out = str(work / "labels.json")
    os.makedirs(work)
    # Full from the start: the write probe fails, and leaves nothing.
    with monkeypatch.context() as mp:
        _fill_disk(mp, str(work))
        with pytest.raises(JobError) as e:
            _job(out, root)
    _one_line(e, "No space left on device")
    assert os.listdir(work) == []
    # Full when the labels are merged: the output and its temporary file are gone, the
    # finished images are all in the shards.
    with monkeypatch.context() as mp:
        real_merge = shards.write_merged

        def merge_on_a_full_disk(*args, **kwargs):
            _fill_disk(mp, str(work))
            return real_merge(*args, **kwargs)

        mp.setattr(shards, "write_merged", merge_on_a_full_disk)
        with pytest.raises(OSError, match="No space left"):
            _job(out, root)
    assert _leftovers(str(work)) == [] and not os.path.exists(out)
    assert len(shards.read_all_shards(out + ".shards")) == 3
    # Space freed: the rerun merges without labeling anything again.
    labeler = _ContentLabeler()
    result = _job(out, root, labeler=labeler)
    assert labeler.calls == 0 and result.images_done_before == 3
    assert len(load(out)["images"]) == 3 and _leftovers(str(work)) == []


# --- 3. a vocabulary that is not one ---------------------------------------------------------

def test_a_vocabulary_that_is_no_name_file_or_list_stops_the_job_in_one_line(tmp_path, capsys):
    root = _folder(str(tmp_path / "images"), [0])
    out = str(tmp_path / "labels.json")
    rc = load_tool("generate_pseudo_labels").main(["--images", root, "--config", TINY, "--out", out,
                                                    "--vocabulary", "my_classes.names"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and "my_classes.names" in err[0], err
    assert "'coco'" in err[0] and "a," in err[0]
    assert not os.path.exists(out + ".shards")


# --- 10. the validator says what it did not check --------------------------------------------

def test_validate_tool_says_when_image_files_were_not_checked(tmp_path, capsys):
    data = {"images": [{"id": 1, "file_name": "gone.jpg", "width": 40, "height": 30}],
            "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(data))
    assert load_tool("validate_pseudo_labels").main([str(path)]) == 0
    report = capsys.readouterr().out
    assert "image files were not checked" in report and "--image-root" in report
    # Given the folder, the missing file is found.
    assert load_tool("validate_pseudo_labels").main([str(path), "--image-root",
                                                       str(tmp_path)]) == 1
    assert "file not found" in capsys.readouterr().out
