"""The pseudo-label job end to end with the real tiny random-weight preset.

Covers: bad files recorded as skips while the job goes on, job-level errors stopping before any
work, resume after SIGKILL giving exactly the uninterrupted result, two processes splitting the
work, and the `make smoke` command line.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from conftest import load_tool
from PIL import Image

from zip_d2.config import get_cfg
from zip_d2.labels import shards
from zip_d2.labels.images import InputError
from zip_d2.labels.job import JobError, JobOptions, run_job

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "pseudo", "tiny_random.yaml")
GENERATE = os.path.join(REPO, "tools", "generate_pseudo_labels.py")
# One thread per process: float reductions then run in the same order in every process, so
# single- and multi-process runs are bit-identical (the "deterministic settings" of the brief).
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def tiny_cfg(**overrides):
    cfg = get_cfg()
    cfg.merge_from_file(TINY)
    for key, value in overrides.items():
        cfg.merge_from_list([key, value])
    return cfg


@pytest.fixture(scope="module")
def tiny_labeler():
    from zip_d2.pseudo import build_labeler

    return build_labeler(tiny_cfg())


def scene(seed, width=96, height=72):
    """A small RGB image with a few filled shapes on a gradient (deterministic)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = rng.integers(40, 200, 3)
    img[:, :, 0] = np.linspace(30, 220, width, dtype=np.uint8)[None, :]
    for _ in range(3):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        center = (int(rng.integers(10, width - 10)), int(rng.integers(10, height - 10)))
        cv2.circle(img, center, int(rng.integers(6, 20)), c, -1)
    return img


def save(path, array, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def make_scene_folder(root, n):
    for i in range(n):
        save(os.path.join(root, f"img_{i:03d}.jpg"), scene(i), quality=92)
    return root


def make_bad_folder(root):
    """Every kind of awkward file the issue lists, plus a few good ones."""
    save(f"{root}/ok.jpg", scene(0))
    save(f"{root}/sub/nested.jpg", scene(1))
    save(f"{root}/gray.png", scene(2)[:, :, 0])
    save(f"{root}/rgba.png", np.dstack([scene(3), np.full((72, 96), 128, np.uint8)]))
    Image.fromarray(scene(4)).convert("P").save(f"{root}/palette.png", transparency=0)
    Image.fromarray((scene(5)[:, :, 1].astype(np.uint16) * 257)).save(f"{root}/deep16.png")
    Image.fromarray(scene(6)).convert("CMYK").save(f"{root}/cmyk.jpg")
    exif = Image.Exif()
    exif[274] = 6
    save(f"{root}/exif_rot.jpg", scene(7, width=120, height=64), exif=exif)
    save(f"{root}/big.png", cv2.resize(scene(8), (2400, 1600), interpolation=cv2.INTER_NEAREST))
    save(f"{root}/huge.png", np.zeros((3000, 3000, 3), np.uint8))
    save(f"{root}/tiny.png", scene(9)[:4, :4])
    open(f"{root}/zero.jpg", "wb").close()
    data = open(f"{root}/ok.jpg", "rb").read()
    open(f"{root}/truncated.jpg", "wb").write(data[: len(data) // 2])
    open(f"{root}/notimage.jpg", "w").write("this is text")
    os.symlink(f"{root}/does-not-exist.jpg", f"{root}/broken_link.jpg")
    open(f"{root}/readme.txt", "w").write("ignored")
    return root


def load(path):
    with open(path) as f:
        return json.load(f)


def labels_only(data):
    """Everything in an output except the info block (which holds the date)."""
    return {k: v for k, v in data.items() if k != "info"}


def test_bad_files_are_recorded_as_skips_and_the_job_goes_on(tmp_path, tiny_labeler):
    root = make_bad_folder(str(tmp_path / "images"))
    out = str(tmp_path / "out" / "labels.json")
    opts = JobOptions(out=out, images=root, batch_size=3, workers=1, max_side=256,
                      max_pixels=5_000_000, progress=False)
    result = run_job(tiny_cfg(), opts, build_labeler=lambda cfg: tiny_labeler)
    assert result.problems == []
    data = load(out)
    labeled = {im["file_name"]: im for im in data["images"]}
    assert set(labeled) == {"ok.jpg", "sub/nested.jpg", "gray.png", "rgba.png", "palette.png",
                            "deep16.png", "cmyk.jpg", "exif_rot.jpg", "big.png"}
    reasons = {s["file_name"]: s["reason"] for s in data["skipped_images"]}
    assert set(reasons) == {"huge.png", "tiny.png", "zero.jpg", "truncated.jpg", "notimage.jpg",
                            "broken_link.jpg"}
    assert "UnidentifiedImageError" in reasons["zero.jpg"]
    assert "UnidentifiedImageError" in reasons["notimage.jpg"]
    assert "OSError" in reasons["truncated.jpg"] and "truncated" in reasons["truncated.jpg"]
    assert "FileNotFoundError" in reasons["broken_link.jpg"]
    assert "image too large: 3000x3000" in reasons["huge.png"]
    assert "image too small: 4x4" in reasons["tiny.png"]
    # Sizes are those of the decoded image after EXIF orientation, never swapped.
    assert (labeled["exif_rot.jpg"]["width"], labeled["exif_rot.jpg"]["height"]) == (64, 120)
    assert (labeled["big.png"]["width"], labeled["big.png"]["height"]) == (2400, 1600)
    big_anns = [a for a in data["annotations"] if a["image_id"] == labeled["big.png"]["id"]]
    assert big_anns and all(a["segmentation"]["size"] == [1600, 2400] for a in big_anns)
    info = data["info"]
    assert info["random_weights"] is True and info["method"] == "zip"
    assert info["labeler"]["boundary"]["model"] == "zip-tiny-rn"
    assert info["job"]["input"]["non_image_files_ignored"] == 1
    assert info["counts"] == {"images_listed": 15, "images_labeled": 9, "images_skipped": 6,
                              "annotations": len(data["annotations"]),
                              "duplicate_records_dropped": 0,
                              "records_of_unlisted_images_dropped": 0}

    # Rerunning the finished job does no work and gives the same labels.
    again = run_job(tiny_cfg(), opts, build_labeler=lambda cfg: tiny_labeler)
    assert again.images_processed == 0 and again.images_done_before == 15
    assert labels_only(load(out)) == labels_only(data)
    # Retrying the skipped images tries exactly those again (they fail again, same reasons).
    opts.retry_skipped = True
    retried = run_job(tiny_cfg(), opts, build_labeler=lambda cfg: tiny_labeler)
    assert retried.images_skipped == 6 and retried.images_labeled == 0
    assert labels_only(load(out)) == labels_only(data)


def test_coco_image_list_keeps_its_image_ids(tmp_path, tiny_labeler):
    root = make_scene_folder(str(tmp_path / "images"), 3)
    listing = {"images": [{"id": 139, "file_name": "img_002.jpg", "width": 1, "height": 1},
                          {"id": 5, "file_name": "img_000.jpg"},
                          {"id": 77, "file_name": "gone.jpg"}],
               "annotations": [], "categories": []}
    (tmp_path / "list.json").write_text(json.dumps(listing))
    out = str(tmp_path / "labels.json")
    result = run_job(tiny_cfg(), JobOptions(out=out, images=root,
                                            coco_json=str(tmp_path / "list.json"), workers=0,
                                            progress=False),
                     build_labeler=lambda cfg: tiny_labeler)
    assert result.problems == []
    data = load(out)
    # The listing's ids, and the decoded sizes (not the listing's wrong 1x1).
    assert [(im["id"], im["file_name"], im["width"], im["height"]) for im in data["images"]] == \
        [(5, "img_000.jpg", 96, 72), (139, "img_002.jpg", 96, 72)]
    assert {a["image_id"] for a in data["annotations"]} <= {5, 139}
    assert data["skipped_images"][0]["id"] == 77
    assert "FileNotFoundError" in data["skipped_images"][0]["reason"]


class _CallRecorder:
    """Stands in for build_labeler to prove the job stopped before building any model."""

    def __init__(self):
        self.calls = 0

    def __call__(self, cfg):
        self.calls += 1
        raise AssertionError("the labeler must not be built for a job that cannot run")


@pytest.mark.parametrize("case", ["empty folder", "missing vocabulary file",
                                  "empty vocabulary file", "output under a file",
                                  "output is a folder"])
def test_job_level_problems_stop_before_any_work(tmp_path, case):
    images = make_scene_folder(str(tmp_path / "images"), 1)
    out = str(tmp_path / "labels.json")
    cfg = tiny_cfg()
    expected = {"empty folder": (InputError, "no images found"),
                "missing vocabulary file": (JobError, "does not exist"),
                "empty vocabulary file": (JobError, "no class names"),
                "output under a file": (JobError, "cannot write output"),
                "output is a folder": (JobError, "is a directory")}[case]
    if case == "empty folder":
        images = str(tmp_path / "empty")
        os.makedirs(images)
    elif case == "missing vocabulary file":
        cfg.PSEUDO.VOCABULARY = str(tmp_path / "classes.txt")
    elif case == "empty vocabulary file":
        (tmp_path / "classes.txt").write_text("\n  \n")
        cfg.PSEUDO.VOCABULARY = str(tmp_path / "classes.txt")
    elif case == "output under a file":
        (tmp_path / "afile").write_text("x")
        out = str(tmp_path / "afile" / "labels.json")
    else:
        os.makedirs(out)
    recorder = _CallRecorder()
    with pytest.raises(expected[0], match=expected[1]) as err:
        run_job(cfg, JobOptions(out=out, images=images, workers=0, progress=False),
                build_labeler=recorder)
    assert "\n" not in str(err.value)
    assert recorder.calls == 0
    assert not os.path.exists(out + ".shards")


class _StandInLabelerForJobMechanics:
    """Unit-test stand-in with the labeler interface: fails on chosen images (by width)."""

    categories = [{"id": 1, "name": "object"}]

    def __init__(self, fail_widths):
        self.fail_widths = fail_widths

    def describe(self):
        return {"method": "stand-in", "random_weights": True, "device": "cpu"}

    def __call__(self, image, classes=None):
        if image.shape[1] in self.fail_widths:
            raise RuntimeError(f"stand-in failure at width {image.shape[1]}")
        mask = np.zeros(image.shape[:2], bool)
        mask[2:6, 3:9] = True
        return [{"category": "object", "score": 0.5, "mask": mask, "box": np.zeros(4)}]


def test_labeler_failures_are_skips_and_a_run_of_them_stops_the_job(tmp_path):
    root = str(tmp_path / "images")
    for i, width in enumerate([40, 41, 40, 42]):
        save(f"{root}/{i}.png", scene(i, width=width, height=30))
    out = str(tmp_path / "labels.json")
    opts = JobOptions(out=out, images=root, workers=0, progress=False)
    run_job(tiny_cfg(), opts, build_labeler=lambda cfg: _StandInLabelerForJobMechanics({41}))
    data = load(out)
    assert [s["file_name"] for s in data["skipped_images"]] == ["1.png"]
    assert data["skipped_images"][0]["reason"] == \
        "labeler failed: RuntimeError: stand-in failure at width 41"
    assert len(data["images"]) == 3 and len(data["annotations"]) == 3

    opts = JobOptions(out=str(tmp_path / "broken.json"), images=root, workers=0,
                      progress=False, max_consecutive_failures=2)
    with pytest.raises(JobError, match="failed on 2 images in a row"):
        run_job(tiny_cfg(), opts,
                build_labeler=lambda cfg: _StandInLabelerForJobMechanics({40, 41, 42}))
    # The failures before the stop are already on disk.
    shard = str(tmp_path / "broken.json.shards" / "rank00000-of-00001.jsonl")
    assert open(shard).read().count("labeler failed") == 2


def test_resuming_with_changed_settings_is_refused(tmp_path, tiny_labeler):
    root = make_scene_folder(str(tmp_path / "images"), 2)
    out = str(tmp_path / "labels.json")
    run_job(tiny_cfg(), JobOptions(out=out, images=root, workers=0, progress=False),
            build_labeler=lambda cfg: tiny_labeler)
    with pytest.raises(JobError, match=r"decoding\.max_side differs"):
        run_job(tiny_cfg(), JobOptions(out=out, images=root, workers=0, progress=False,
                                       max_side=64), build_labeler=lambda cfg: tiny_labeler)
    # --overwrite starts over with the new settings.
    result = run_job(tiny_cfg(), JobOptions(out=out, images=root, workers=0, progress=False,
                                            max_side=64, overwrite=True),
                     build_labeler=lambda cfg: tiny_labeler)
    assert result.images_labeled == 2 and result.images_done_before == 0


def _cli(images, out, *extra):
    return [sys.executable, GENERATE, "--images", images, "--config", TINY, "--out", out,
            "--workers", "1", "--batch-size", "1", "--no-progress", *extra]


@pytest.fixture(scope="module")
def scene_job(tmp_path_factory):
    """16 images and their uninterrupted single-process labels (the reference run)."""
    base = tmp_path_factory.mktemp("scene_job")
    images = make_scene_folder(str(base / "images"), 16)
    out = str(base / "reference.json")
    proc = subprocess.run(_cli(images, out), env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return images, load(out)


def test_sigkill_midway_then_rerun_gives_exactly_the_uninterrupted_labels(tmp_path, scene_job):
    images, reference = scene_job
    out = str(tmp_path / "killed.json")
    shard = out + ".shards/rank00000-of-00001.jsonl"
    proc = subprocess.Popen(_cli(images, out), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    lines = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(shard):
            lines = open(shard, "rb").read().count(b"\n") - 1  # the first line is the header
            if lines >= 3:
                break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the job finished before it could be killed"
    done_at_kill = open(shard, "rb").read().count(b"\n") - 1
    assert 3 <= done_at_kill < 16 and not os.path.exists(out)

    rerun = subprocess.run(_cli(images, out), env=ENV, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{done_at_kill} already finished" in rerun.stdout
    result = load(out)
    assert labels_only(result) == labels_only(reference)
    assert result["info"]["counts"]["duplicate_records_dropped"] == 0
    assert open(shard, "rb").read().count(b"\n") == 1 + 16


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_split_the_work_and_merge_to_the_single_process_result(tmp_path,
                                                                                scene_job):
    images, reference = scene_job
    out = str(tmp_path / "two.json")
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = dict(ENV, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                   LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen(_cli(images, out), env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:  # a rank left waiting at a barrier must not outlive the test
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-2000:]
    for rank in range(2):
        shard = f"{out}.shards/rank{rank:05d}-of-00002.jsonl"
        names = [r["file_name"] for r in shards.read_shard(shard)]
        assert names == [f"img_{i:03d}.jpg" for i in range(rank, 16, 2)]
    assert "8 labeled" in outputs[0][0] and "8 labeled" in outputs[1][0]
    assert labels_only(load(out)) == labels_only(reference)


def test_missing_weights_and_bad_vocabulary_stop_the_cli_with_one_line(tmp_path, capsys):
    images = make_scene_folder(str(tmp_path / "images"), 1)
    out = str(tmp_path / "labels.json")
    # A fresh HOME: no cached weights, whatever the machine running the tests has.
    env = dict(ENV, ZIP_D2_OFFLINE="1", HF_HUB_OFFLINE="1", HOME=str(tmp_path / "home"),
               ZIP_D2_CACHE=str(tmp_path / "cache"), XDG_CACHE_HOME=str(tmp_path / "xdg"),
               HF_HOME=str(tmp_path / "hf"))
    paper = os.path.join(REPO, "configs", "pseudo", "zip_paper.yaml")
    proc = subprocess.run([sys.executable, GENERATE, "--images", images, "--config", paper,
                           "--out", out], env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "weights" in errors[0], proc.stderr
    assert not os.path.exists(out + ".shards")

    rc = load_tool("generate_pseudo_labels").main(
        ["--images", images, "--config", TINY, "--out", out, "--vocabulary",
              str(tmp_path / "nope.txt")])
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        f"error: Vocabulary file {tmp_path / 'nope.txt'} does not exist; a vocabulary is")


def test_make_smoke_commands_label_validate_and_draw_the_demo_images(tmp_path):
    """The command lines `make smoke` runs, on the committed demo images."""
    demo = os.path.join(REPO, "datasets", "demo", "images")
    out = str(tmp_path / "smoke" / "labels.json")
    proc = subprocess.run([sys.executable, GENERATE, "--images", demo, "--config", TINY,
                           "--out", out, "--overwrite"], env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "validation: OK" in proc.stdout and "RANDOM WEIGHTS" in proc.stderr
    data = load(out)
    assert len(data["images"]) == len(os.listdir(demo)) == 5
    assert data["info"]["random_weights"] is True
    assert load_tool("validate_pseudo_labels").main([out]) == 0
    assert load_tool("visualize_pseudo_labels").main([out, "--out-dir", str(tmp_path / "vis"),
                                                       "--num", "5"]) == 0
    assert len([f for f in os.listdir(tmp_path / "vis") if f.endswith(".jpg")]) == 5


def test_merge_tool_rebuilds_the_output_and_validate_tool_catches_swapped_sizes(tmp_path,
                                                                                capsys):
    root = str(tmp_path / "images")
    for i in range(3):
        save(f"{root}/{i}.png", scene(i, width=40 + i, height=30))
    out = str(tmp_path / "labels.json")
    run_job(tiny_cfg(), JobOptions(out=out, images=root, workers=0, progress=False),
            build_labeler=lambda cfg: _StandInLabelerForJobMechanics(set()))
    original = load(out)
    os.remove(out)
    assert load_tool("merge_pseudo_labels").main(["--out", out]) == 0
    assert labels_only(load(out)) == labels_only(original)
    assert load_tool("validate_pseudo_labels").main([out]) == 0

    broken = load(out)
    broken["images"][0]["width"], broken["images"][0]["height"] = 30, 40
    broken["categories"].append({"id": 2, "name": "object"})
    with open(out, "w") as f:
        json.dump(broken, f)
    capsys.readouterr()
    assert load_tool("validate_pseudo_labels").main([out]) == 1
    report = capsys.readouterr().out
    assert "is 40x30 (WxH) but the JSON says 30x40" in report
    assert "categories: duplicate name 'object'" in report

    # Shards of an unfinished job are not merged by accident.
    shard = out + ".shards/rank00000-of-00001.jsonl"
    lines = open(shard).readlines()
    open(shard, "w").writelines(lines[:3])  # the header and two images
    assert load_tool("merge_pseudo_labels").main(["--out", out]) == 2
    assert "only 2 of 3 images are finished" in capsys.readouterr().err


def test_a_failing_shard_write_stops_the_job_instead_of_hanging(tmp_path, monkeypatch):
    root = str(tmp_path / "images")
    for i in range(40):  # more than the writer queue holds, so a dead writer would block it
        save(f"{root}/{i:02d}.png", scene(i, width=40, height=30))
    real_write = shards.ShardWriter.write
    calls = []

    def write_then_fail(self, record):
        calls.append(record["file_name"])
        if len(calls) > 2:
            raise OSError(28, "No space left on device")
        real_write(self, record)

    monkeypatch.setattr(shards.ShardWriter, "write", write_then_fail)
    out = str(tmp_path / "labels.json")
    with pytest.raises(OSError, match="No space left"):
        run_job(tiny_cfg(), JobOptions(out=out, images=root, workers=0, batch_size=8,
                                       progress=False),
                build_labeler=lambda cfg: _StandInLabelerForJobMechanics(set()))
    assert len(shards.read_shard(out + ".shards/rank00000-of-00001.jsonl")) == 2


def test_rerun_after_images_were_removed_leaves_them_out_of_the_output(tmp_path):
    root = str(tmp_path / "images")
    for i in range(3):
        save(f"{root}/{i}.png", scene(i, width=40, height=30))
    out = str(tmp_path / "labels.json")
    opts = JobOptions(out=out, images=root, workers=0, progress=False)
    stand_in = _StandInLabelerForJobMechanics(set())
    run_job(tiny_cfg(), opts, build_labeler=lambda cfg: stand_in)
    os.remove(f"{root}/1.png")
    result = run_job(tiny_cfg(), opts, build_labeler=lambda cfg: stand_in)
    assert result.problems == [] and result.images_processed == 0
    data = load(out)
    assert [im["file_name"] for im in data["images"]] == ["0.png", "2.png"]
    assert data["info"]["counts"]["records_of_unlisted_images_dropped"] == 1


class _BatchingStandInLabeler(_StandInLabelerForJobMechanics):
    """Stand-in with the optional ``label_batch`` hook: records the batch sizes it gets."""

    def __init__(self, fail_widths, batch_fails=False):
        super().__init__(fail_widths)
        self.batches, self.batch_fails = [], batch_fails

    def label_batch(self, images):
        self.batches.append(len(images))
        if self.batch_fails:
            raise RuntimeError("batched path broken")
        return [self(image) for image in images]


def test_labelers_with_label_batch_get_whole_batches_and_failures_fall_back_per_image(tmp_path):
    root = str(tmp_path / "images")
    for i, width in enumerate([40, 40, 41, 40, 40]):
        save(f"{root}/{i}.png", scene(i, width=width, height=30))
    batching = _BatchingStandInLabeler(set())
    run_job(tiny_cfg(), JobOptions(out=str(tmp_path / "a.json"), images=root, workers=0,
                                   batch_size=2, progress=False),
            build_labeler=lambda cfg: batching)
    assert batching.batches == [2, 2, 1]
    # One bad image must not cost its batch-mates their labels.
    flaky = _BatchingStandInLabeler({41}, batch_fails=True)
    run_job(tiny_cfg(), JobOptions(out=str(tmp_path / "b.json"), images=root, workers=0,
                                   batch_size=2, progress=False),
            build_labeler=lambda cfg: flaky)
    data = load(str(tmp_path / "b.json"))
    assert len(data["images"]) == 4
    assert [s["file_name"] for s in data["skipped_images"]] == ["2.png"]


def test_coco_vocabulary_gives_coco_category_ids(tmp_path):
    images = make_scene_folder(str(tmp_path / "images"), 2)
    out = str(tmp_path / "labels.json")
    rc = load_tool("generate_pseudo_labels").main(
        ["--images", images, "--config", TINY, "--out", out, "--vocabulary", "coco",
              "--workers", "0", "--no-progress"])
    assert rc == 0
    data = load(out)
    ids = {c["name"]: c["id"] for c in data["categories"]}
    assert len(ids) == 80 and ids["person"] == 1 and ids["toothbrush"] == 90
    assert data["annotations"] and {a["category_id"] for a in data["annotations"]} <= set(
        ids.values()
    )
    assert data["info"]["labeler"]["vocabulary"] == "coco"


def test_job_summary_counts_labels_per_class_and_per_image(tmp_path, tiny_labeler):
    from zip_d2.labels.job import summary_lines

    root = make_scene_folder(str(tmp_path / "images"), 6)
    out = str(tmp_path / "labels.json")
    result = run_job(tiny_cfg(), JobOptions(out=out, images=root, workers=0, progress=False),
                     build_labeler=lambda cfg: tiny_labeler)
    data = load(out)
    lines = summary_lines(result)
    at = lines.index(f"labels in {out}:")
    per_image = [sum(a["image_id"] == im["id"] for a in data["annotations"])
                 for im in data["images"]]
    assert lines[at + 1].startswith(
        f"labels per image: mean {np.mean(per_image):.1f}, median {np.median(per_image):g}, "
        f"90th percentile {np.percentile(per_image, 90):g}, max {max(per_image)}; "
        f"{per_image.count(0)} of 6 labelled images have none (0 skipped)")
    names = {c["name"] for c in data["categories"]}
    rows = {line.split()[0]: line.split() for line in lines[at + 3:] if line.split()[0] in names}
    for cat in data["categories"]:
        anns = [a for a in data["annotations"] if a["category_id"] == cat["id"]]
        if anns:
            assert rows[cat["name"]][1] == str(len(anns))
            assert rows[cat["name"]][3] == str(len({a["image_id"] for a in anns}))
    empty = [c["name"] for c in data["categories"]
             if not any(a["category_id"] == c["id"] for a in data["annotations"])]
    if empty:
        assert lines[-1].endswith(f"classes got no label: {', '.join(sorted(empty))}")
    assert not any("nan" in line for line in lines)
