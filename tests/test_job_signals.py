"""The pseudo-label job against what a shell can throw at it: a FIFO among the images, Ctrl-C,
a umask, and its own output inside its image folder."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

from test_labels_job import ENV, REPO, TINY, load
from test_labels_job_safety import _folder, _job

from zip_d2.data.coco_json import write_json_atomic
from zip_d2.labels import shards


def test_a_fifo_named_like_an_image_is_a_skipped_image_not_a_hang(tmp_path):
    root = _folder(str(tmp_path / "images"), [0, 1])
    fifo = os.path.join(root, "x.png")
    os.mkfifo(fifo)
    out = str(tmp_path / "labels.json")
    outcome = {}

    def run(key):
        try:
            outcome[key] = _job(out, root)
        except Exception as e:  # reported by the assertion below
            outcome[key] = e

    for key in ("first run", "rerun"):  # the rerun checks finished images: no read either
        thread = threading.Thread(target=run, args=(key,), daemon=True)
        thread.start()
        thread.join(60)
        if thread.is_alive():  # blocked reading the FIFO: give it an end of file, then fail
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            thread.join(60)
            raise AssertionError(f"{key}: the job blocked reading a FIFO")
        assert not isinstance(outcome[key], Exception), outcome[key]
    skipped = {s["file_name"]: s["reason"] for s in load(out)["skipped_images"]}
    assert list(skipped) == ["x.png"] and "not a regular file (a FIFO)" in skipped["x.png"]
    assert outcome["first run"].images_labeled == 2
    assert outcome["rerun"].images_processed == 0


def test_a_fifo_is_found_without_opening_it_for_reading(tmp_path):
    from zip_d2.labels.images import ImageSkip, read_image_bytes

    fifo = str(tmp_path / "x.png")
    os.mkfifo(fifo)
    done = {}

    def read():
        try:
            read_image_bytes(fifo)
        except ImageSkip as e:
            done["reason"] = str(e)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(30)
        raise AssertionError("read_image_bytes blocked on a FIFO")
    assert done["reason"] == "not a regular file (a FIFO)"


def test_ctrl_c_stops_the_job_in_one_line_with_exit_130_and_the_shards_resume(tmp_path):
    root = _folder(str(tmp_path / "images"), range(4))
    out = str(tmp_path / "labels.json")
    # The real tool in its own process group (as a terminal runs it), with loader workers; its
    # labeler is the stand-in that hangs on the second image, so Ctrl-C lands mid-job.
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "import zip_d2.quiet, zip_d2.pseudo;"
        "from conftest import load_tool;"
        "from test_labels_job_safety import _ContentLabeler;"
        "labeler = _ContentLabeler(lambda calls: calls == 2 and time.sleep(600));"
        "zip_d2.pseudo.build_labeler = lambda cfg: labeler;"
        "sys.exit(load_tool('generate_pseudo_labels').main(sys.argv[2:]))"
    )
    cmd = [sys.executable, "-c", code, os.path.join(REPO, "tests"), "--images", root, "--out",
           out, "--config", TINY, "--batch-size", "1", "--workers", "2", "--no-progress"]
    # SIGINT at its default, as in a terminal: a shell that starts the suite in the background
    # (`cmd &`) leaves SIGINT ignored, and an ignored SIGINT is inherited across exec.
    proc = subprocess.Popen(cmd, env=ENV, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    shard = shards.shard_path(out + ".shards", 0, 1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        # The shard's header line (its job's settings), then the first finished image.
        if os.path.exists(shard) and open(shard).read().count("\n") >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130 and len(lines) == 1, err[-3000:]
    assert lines[0].startswith("interrupted") and out + ".shards" in lines[0]
    with open(shard) as f:
        lines = [json.loads(line) for line in f]  # every line whole
    assert "shard" in lines[0]
    assert [r["file_name"] for r in lines[1:]] == ["0.png"]
    assert not os.path.exists(out)
    result = _job(out, root)
    assert result.images_done_before == 1 and result.images_labeled == 3


def test_json_files_get_the_mode_the_umask_gives(tmp_path):
    path = str(tmp_path / "a.json")
    old = os.umask(0o022)
    try:
        write_json_atomic({"a": 1}, path)
        assert os.stat(path).st_mode & 0o777 == 0o644
        os.umask(0o077)
        write_json_atomic({"a": 2}, path)
        assert os.stat(path).st_mode & 0o777 == 0o600
        os.umask(0o002)
        root = _folder(str(tmp_path / "images"), [0])
        out = str(tmp_path / "labels.json")
        _job(out, root)
        for written in (out, os.path.join(out + ".shards", shards.MANIFEST)):
            assert os.stat(written).st_mode & 0o777 == 0o664, written
    finally:
        os.umask(old)


def test_out_inside_the_image_folder_is_not_an_image_of_its_own_job(tmp_path):
    root = _folder(str(tmp_path / "images"), [0, 1])
    # An --out with an image's extension inside --images: the rerun must not list it (nor
    # anything in its shard folder) as an image of the job.
    out = os.path.join(root, "labels.png")
    _job(out, root)
    again = _job(out, root)
    data = load(out)
    assert again.images_total == 2 and again.images_processed == 0
    assert sorted(im["file_name"] for im in data["images"]) == ["0.png", "1.png"]
    assert data.get("skipped_images", []) == []
