"""Shard files (append, torn lines, resume, merge) and the detections -> COCO record step."""
import json
import os

import numpy as np
import pytest
from pycocotools import mask as mask_util

from zip_d2.data import validate
from zip_d2.data.validate import validate_coco
from zip_d2.labels import shards
from zip_d2.labels.coco_output import detections_to_annotations, encode_mask

SETTINGS = {"format": shards.SETTINGS_FORMAT,
            "labeler": {"method": "zip", "random_weights": True},
            "categories": [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}],
            "decoding": {"max_side": 4096}}


def _ann(area):
    return {"category_id": 1, "segmentation": {"size": [4, 4], "counts": "x"}, "area": area,
            "bbox": [0.0, 0.0, 1.0, 1.0], "iscrowd": 0, "score": 0.5}


def _start(tmp_path, num_images):
    shard_dir = str(tmp_path / "out.json.shards")
    os.makedirs(shard_dir)
    shards.write_manifest(shard_dir, SETTINGS, {"num_images": num_images, "input": {}})
    return shard_dir


def test_torn_last_line_is_ignored_by_readers_and_cut_before_appending(tmp_path):
    path = str(tmp_path / "rank00000-of-00001.jsonl")
    with shards.ShardWriter(path, SETTINGS) as w:
        w.write({"file_name": "a.jpg", "skipped": "x"})
    with open(path, "a") as f:
        f.write('{"file_name": "b.jpg", "annot')  # what a SIGKILL mid-write leaves
    assert [r["file_name"] for r in shards.read_shard(path)] == ["a.jpg"]
    with shards.ShardWriter(path, SETTINGS) as w:
        w.write({"file_name": "c.jpg", "skipped": "y"})
    assert [r["file_name"] for r in shards.read_shard(path)] == ["a.jpg", "c.jpg"]
    assert open(path).read().count("\n") == 3  # the header and two records


def test_corrupt_line_in_the_middle_is_an_error_not_silently_dropped(tmp_path):
    path = tmp_path / "rank00000-of-00001.jsonl"
    path.write_text('{"file_name": "a.jpg", "skipped": "x"}\nnot json\n{"file_name": "b"}\n')
    with pytest.raises(shards.ShardError, match=":2: corrupt shard line"):
        shards.read_shard(str(path))


def test_finished_records_span_all_ranks_and_world_sizes_and_the_latest_run_wins(tmp_path):
    shard_dir = _start(tmp_path, 3)
    with shards.ShardWriter(shards.shard_path(shard_dir, 0, 2), SETTINGS) as w:
        w.write({"file_name": "a.jpg", "run": 1, "width": 4, "height": 4, "annotations": []})
        w.write({"file_name": "c.jpg", "run": 1, "width": 4, "height": 4, "annotations": []})
    with shards.ShardWriter(shards.shard_path(shard_dir, 2, 3), SETTINGS) as w:
        w.write({"file_name": "b.jpg", "run": 1, "skipped": "cannot decode"})
        # c.jpg changed and was labeled again in run 2 (its new labels failed): that stands.
        w.write({"file_name": "c.jpg", "run": 2, "skipped": "labeler failed: oom"})
    latest, dropped = shards.latest_records(shards.read_all_shards(shard_dir))
    assert sorted(latest) == ["a.jpg", "b.jpg", "c.jpg"] and dropped == 1
    assert latest["c.jpg"]["skipped"] == "labeler failed: oom"


def test_merge_gives_deterministic_ids_and_one_record_per_image(tmp_path):
    shard_dir = _start(tmp_path, 3)
    # Written in a scrambled order over two world sizes, with a retried skip and a duplicate.
    with shards.ShardWriter(shards.shard_path(shard_dir, 1, 2), SETTINGS) as w:
        w.write({"file_name": "z.jpg", "width": 4, "height": 4, "annotations": [_ann(2)]})
        w.write({"file_name": "m.jpg", "skipped": "labeler failed: RuntimeError: oom"})
    with shards.ShardWriter(shards.shard_path(shard_dir, 0, 1), SETTINGS) as w:
        w.write({"file_name": "m.jpg", "width": 4, "height": 4, "annotations": [_ann(3), _ann(4)]})
        w.write({"file_name": "a.jpg", "skipped": "cannot decode: OSError: truncated"})
        w.write({"file_name": "z.jpg", "width": 4, "height": 4, "annotations": [_ann(2)]})
    merged = shards.merge_shards(shard_dir)
    assert [(im["id"], im["file_name"]) for im in merged["images"]] == [(1, "m.jpg"), (2, "z.jpg")]
    assert [(a["id"], a["image_id"], a["area"]) for a in merged["annotations"]] == \
        [(1, 1, 3), (2, 1, 4), (3, 2, 2)]
    assert merged["skipped_images"] == [{"file_name": "a.jpg",
                                         "reason": "cannot decode: OSError: truncated"}]
    assert merged["categories"] == SETTINGS["categories"]
    info = merged["info"]
    assert info["counts"]["duplicate_records_dropped"] == 2
    assert info["random_weights"] is True and info["method"] == "zip"
    assert info["packages"]["zip_d2"] and info["date_created"]


def test_merge_keeps_input_coco_image_ids(tmp_path):
    shard_dir = _start(tmp_path, 2)
    with shards.ShardWriter(shards.shard_path(shard_dir, 0, 1), SETTINGS) as w:
        w.write(
            {"file_name": "b.jpg", "id": 139, "width": 4, "height": 4, "annotations": [_ann(1)]}
        )
        w.write({"file_name": "a.jpg", "id": 785, "skipped": "image too small: 2x2"})
    merged = shards.merge_shards(shard_dir)
    assert [im["id"] for im in merged["images"]] == [139]
    assert merged["annotations"][0]["image_id"] == 139
    assert merged["skipped_images"][0]["id"] == 785


def test_merge_refuses_unfinished_jobs_unless_partial_is_allowed(tmp_path):
    shard_dir = _start(tmp_path, 5)
    with shards.ShardWriter(shards.shard_path(shard_dir, 0, 1), SETTINGS) as w:
        w.write({"file_name": "a.jpg", "width": 4, "height": 4, "annotations": []})
    with pytest.raises(shards.ShardError, match="only 1 of 5 images are finished"):
        shards.merge_shards(shard_dir)
    assert len(shards.merge_shards(shard_dir, allow_partial=True)["images"]) == 1


def _scale_job(tmp_path, n):
    """A synthetic n-image 8-rank job (the benchmark's), then a rerun's records on top: some
    images relabelled (newer run), a skip and a later label of the same run, a record of an
    image no longer listed, and a torn final line."""
    from zip_d2.labels.scale_benchmark import write_job

    made = write_job(str(tmp_path / "job"), n)
    shard_dir = made["shard_dir"]
    old = shards.read_shard(shards.shard_path(shard_dir, 3, 8))
    settings = shards.read_manifest(shard_dir)["settings"]
    with shards.ShardWriter(shards.shard_path(shard_dir, 1, 3), settings) as w:
        for r in old[:40:3]:
            if "skipped" not in r:
                w.write(dict(r, run=2, annotations=r["annotations"][::-1][:3]))
        w.write({"file_name": old[50]["file_name"], "run": 2, "skipped": "labeler failed: x"})
        w.write(dict(old[50], run=2))
        w.write(dict(old[60], file_name="gone/removed.JPEG"))
    with open(shards.shard_path(shard_dir, 1, 3), "a") as f:
        f.write('{"annotations":[{"area":1')  # what a kill mid-write leaves
    return made


def _without_date(data):
    data["info"].pop("date_created")
    return data


def test_streaming_merge_writes_what_the_old_merge_built(tmp_path):
    import old_merge

    from zip_d2.labels.scale_benchmark import image_names

    made = _scale_job(tmp_path, 2000)
    listed = set(image_names(2000))
    oracle = old_merge.merge_shards(made["shard_dir"], listed=listed)
    out = str(tmp_path / "merged.json")
    checker = validate.CocoValidator(made["image_root"], check_image_sizes=True,
                                     check_segmentations=True)
    counts = shards.write_merged(shards.MergePlan(made["shard_dir"], listed=listed), out,
                                 [checker])
    with open(out) as f:
        streamed = json.load(f)
    assert _without_date(streamed) == _without_date(oracle)
    assert counts == oracle["info"]["counts"] and counts["annotations"] > 14000
    assert counts["duplicate_records_dropped"] == 16 and counts["images_skipped"] == 2
    assert checker.finish() == []
    # info and categories first: a reader after the class names stops at the first images
    with open(out) as f:
        head = f.read(64 << 10)
    assert head.startswith('{"info":') and head.index('"categories"') < head.index('"images"')
    # the in-memory merge (small jobs, tests) is the same plan
    assert _without_date(shards.merge_shards(made["shard_dir"], listed=listed)) == streamed
    # records of images an input COCO JSON named keep their ids, in id order
    assert [im["id"] for im in streamed["images"]] == list(range(1, len(streamed["images"]) + 1))


def test_streaming_merge_validates_each_record_as_it_is_written(tmp_path):
    from zip_d2.labels.scale_benchmark import image_names

    made = _scale_job(tmp_path, 800)
    os.remove(os.path.join(made["image_root"], "n00000000", "n00000000_00000007.JPEG"))
    checker = validate.CocoValidator(made["image_root"], check_image_sizes=True,
                                     check_segmentations=True)
    plan = shards.MergePlan(made["shard_dir"], listed=set(image_names(800)))
    shards.write_merged(plan, str(tmp_path / "m.json"), [checker])
    problems = checker.finish()
    assert len(problems) == 1 and "n00000000_00000007.JPEG" in problems[0]
    assert "file not found" in problems[0]


def test_resume_records_skip_annotations_and_keep_only_the_wanted_images(tmp_path):
    made = _scale_job(tmp_path, 800)
    full, _ = shards.latest_records(shards.read_all_shards(made["shard_dir"]))
    wanted = set(sorted(full)[::7])
    light = shards.resume_records(made["shard_dir"], wanted)
    assert set(light) == wanted
    for name in wanted:
        expected = {k: v for k, v in full[name].items() if k != "annotations"}
        assert light[name] == expected


def test_resume_never_parses_the_annotations(tmp_path):
    path = tmp_path / "out.json.shards" / "rank00000-of-00001.jsonl"
    os.makedirs(path.parent)
    # annotations that are not even JSON: only the merge, which reads them, may notice
    path.write_text('{"annotations":[{"area":NaN-NOT-JSON}],"file_name":"a.jpg",'
                    '"fingerprint":{"sha256":"ab","size":3},"height":4,"run":1,"width":4}\n')
    assert shards.resume_records(str(path.parent)) == {"a.jpg": {
        "file_name": "a.jpg", "fingerprint": {"sha256": "ab", "size": 3}, "height": 4,
        "run": 1, "width": 4}}
    with pytest.raises(shards.ShardError, match=":1: corrupt shard line"):
        shards.read_shard(str(path))


def test_a_torn_tail_is_found_from_the_end_of_a_large_shard(tmp_path):
    path = str(tmp_path / "rank00000-of-00001.jsonl")
    with shards.ShardWriter(path, SETTINGS) as w:
        w.write({"file_name": "a.jpg", "skipped": "x"})
    complete = os.path.getsize(path)  # the header line and one record
    with open(path, "a") as f:
        f.write('{"file_name":"b.jpg","annotations":[' + "7," * 100_000)  # no newline: torn
    with open(path, "rb") as f:
        assert shards.complete_length(f) == complete
    assert [r["file_name"] for r in shards.read_shard(path)] == ["a.jpg"]


def test_resuming_with_other_settings_is_refused_naming_the_setting(tmp_path):
    shard_dir = _start(tmp_path, 1)
    changed = json.loads(json.dumps(SETTINGS))
    changed["labeler"]["method"] = "sam-clip"
    with pytest.raises(shards.ShardError, match=r"labeler\.method differs.*--overwrite"):
        shards.write_manifest(shard_dir, changed, {})
    shards.write_manifest(shard_dir, SETTINGS, {"num_images": 9})  # same settings: fine
    assert shards.read_manifest(shard_dir)["job"]["num_images"] == 9


def test_shards_of_an_older_settings_format_are_refused_with_a_clear_line(tmp_path):
    shard_dir = str(tmp_path / "out.json.shards")
    os.makedirs(shard_dir)
    old = {k: v for k, v in SETTINGS.items() if k != "format"}
    shards.write_manifest(shard_dir, old, {"num_images": 1, "input": {}})
    with pytest.raises(shards.ShardError, match=r"another zip_d2 version \(settings format 1, "
                                                 rf"this one writes {shards.SETTINGS_FORMAT}\)"
                                                 r".*--overwrite"):
        shards.write_manifest(shard_dir, SETTINGS, {})


def _det(mask, category="cat", score=0.9):
    return {"category": category, "score": score, "mask": mask, "box": np.zeros(4)}


def test_detections_become_strict_coco_annotations():
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:7] = True
    anns, empty = detections_to_annotations([_det(mask), _det(np.zeros((6, 8), bool))],
                                            (6, 8), 8, 6, {"cat": 17})
    assert empty == 1 and len(anns) == 1
    ann = anns[0]
    assert isinstance(ann["segmentation"]["counts"], str)
    assert ann["segmentation"]["size"] == [6, 8]
    assert ann["area"] == 15 and ann["bbox"] == [2.0, 1.0, 5.0, 3.0]
    assert ann["iscrowd"] == 0 and ann["category_id"] == 17 and ann["score"] == 0.9
    rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
    assert (mask_util.decode(rle).astype(bool) == mask).all()
    data = {"images": [{"id": 1, "file_name": "x.jpg", "width": 8, "height": 6}],
            "annotations": [dict(ann, id=1, image_id=1)],
            "categories": [{"id": 17, "name": "cat"}]}
    assert validate_coco(data, check_segmentations=True) == []


def test_working_size_masks_are_written_at_the_full_image_size():
    mask = np.zeros((50, 100), bool)
    mask[10:30, 20:60] = True
    anns, _ = detections_to_annotations([_det(mask)], (50, 100), 300, 150, {"cat": 1})
    ann = anns[0]
    assert ann["segmentation"]["size"] == [150, 300]
    x, y, w, h = ann["bbox"]
    assert abs(x - 60) <= 1.5 and abs(y - 30) <= 1.5 and abs(w - 120) <= 3 and abs(h - 60) <= 3
    assert abs(ann["area"] - 9 * 800) <= 0.03 * 9 * 800


@pytest.mark.parametrize("det, message", [
    (_det(np.ones((6, 8), bool), category="unicorn"), "not in the vocabulary"),
    (_det(np.ones((5, 8), bool)), "mask of shape"),
    (_det(np.ones((6, 8), bool), score=float("nan")), "outside"),
    (_det(np.ones((6, 8), bool), score=1.5), "outside"),
])
def test_detections_breaking_the_labeler_contract_are_rejected(det, message):
    with pytest.raises(ValueError, match=message):
        detections_to_annotations([det], (6, 8), 8, 6, {"cat": 1})


def test_encode_mask_area_and_box_agree_with_the_mask():
    mask = np.zeros((7, 9), bool)
    mask[2, 3] = mask[5, 7] = True
    rle, area, bbox = encode_mask(mask)
    assert area == 2 and bbox == [3.0, 2.0, 5.0, 4.0] and rle["size"] == [7, 9]


def test_encode_mask_is_the_same_for_every_memory_order_and_dtype():
    rng = np.random.default_rng(0)
    mask = rng.random((13, 21)) < 0.5
    expected = encode_mask(mask)
    assert encode_mask(np.asfortranarray(mask)) == expected
    assert encode_mask(mask.astype(np.uint8)) == expected
    assert encode_mask(mask[:, ::-1][:, ::-1]) == expected
    with pytest.raises(ValueError, match=r"\(H, W\) mask"):
        encode_mask(mask[None])
