"""Self-training: the CutLER merge rule on constructed cases, and one tiny round end to end."""
import json
import os

import numpy as np
import pytest
from conftest import load_tool, run_tool
from pycocotools import mask as mask_util

from zip_d2.data.simulate import write_simulated_pseudo_labels
from zip_d2.data.synthetic import mask_to_annotation
from zip_d2.data.validate import validate_coco
from zip_d2.selftrain import SelfTrainingRun, merge_round_labels, round_threshold

H = W = 40


def _box_mask(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def _previous(*masks, category_id=1):
    anns = [mask_to_annotation(m, id=i + 1, image_id=1, category_id=category_id, score=0.9)
            for i, m in enumerate(masks)]
    return {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
            "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


def _pred(mask, score, category_id=1):
    ann = mask_to_annotation(mask, category_id=category_id)
    return {"image_id": 1, "category_id": category_id, "segmentation": ann["segmentation"],
            "score": score}


def _masks(anns):
    return [mask_util.decode(a["segmentation"]).astype(bool) for a in anns]


def test_confident_predictions_replace_the_old_masks_they_cover():
    old = _box_mask(0, 0, 10, 10)
    sharper = _box_mask(0, 0, 10, 9)  # IoU 0.9 with old
    anns, stats = merge_round_labels(_previous(old), [_pred(sharper, 0.8)], 0.7)
    assert len(anns) == 1 and (_masks(anns)[0] == sharper).all() and anns[0]["score"] == 0.8
    assert stats == {"predictions_kept": 1, "predictions_empty": 0, "old_kept": 0,
                     "old_replaced": 1}


def test_low_score_predictions_are_dropped_and_do_not_replace_old_masks():
    old = _box_mask(0, 0, 10, 10)
    anns, stats = merge_round_labels(_previous(old), [_pred(old, 0.69)], 0.7)
    assert len(anns) == 1 and (_masks(anns)[0] == old).all() and anns[0]["score"] == 0.9
    assert stats["predictions_kept"] == 0 and stats["old_kept"] == 1


def test_old_masks_overlapping_less_than_half_are_kept_beside_new_predictions():
    old_a = _box_mask(0, 0, 10, 10)
    old_b = _box_mask(20, 20, 30, 30)
    # Covers old_b's left 4 columns plus 6 of its own: IoU 40 / 160 = 0.25 -> old_b kept.
    partial = _box_mask(14, 20, 24, 30)
    new = _box_mask(30, 0, 40, 10)  # a missed object found by the detector
    anns, stats = merge_round_labels(_previous(old_a, old_b),
                                     [_pred(partial, 0.9), _pred(new, 0.75)], 0.7)
    got = _masks(anns)
    assert len(got) == 4
    assert (got[0] == partial).all() and (got[1] == new).all()
    assert (got[2] == old_a).all() and (got[3] == old_b).all()
    assert [a["id"] for a in anns] == [1, 2, 3, 4]


def test_iou_exactly_at_the_threshold_replaces_and_class_is_ignored_by_the_overlap_test():
    old = _box_mask(0, 0, 10, 10)
    half = _box_mask(0, 0, 10, 5)  # IoU 0.5 exactly: not "< 0.5", so old is replaced
    anns, stats = merge_round_labels(_previous(old), [_pred(half, 0.9, category_id=2)], 0.7)
    assert stats["old_replaced"] == 1 and len(anns) == 1 and anns[0]["category_id"] == 2


def test_confident_predictions_with_empty_masks_are_not_labels():
    old = _box_mask(0, 0, 10, 10)
    anns, stats = merge_round_labels(_previous(old), [_pred(np.zeros((H, W), bool), 0.99)], 0.7)
    assert len(anns) == 1 and (_masks(anns)[0] == old).all()
    assert stats["predictions_empty"] == 1 and stats["predictions_kept"] == 0


def test_round_thresholds_follow_the_config_list_and_repeat_the_last():
    assert [round_threshold([0.7, 0.65], k) for k in (1, 2, 3)] == [0.7, 0.65, 0.65]
    with pytest.raises(ValueError):
        round_threshold([0.7], 0)


TINY = ["SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "1",
        "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0",
        "INPUT.MIN_SIZE_TRAIN", "(80,)", "INPUT.MIN_SIZE_TEST", "80",
        # A 3-iteration detector scores low: threshold 0 so the round's labels hold predictions.
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "ZIP.SELF_TRAIN.SCORE_THRESHOLDS", "[0.0]",
        "TEST.DETECTIONS_PER_IMAGE", "5"]


@pytest.fixture(scope="module")
def one_round(synthetic_dataset, tmp_path_factory):
    """tools/self_train.py, one round after round 0, with an evaluation set registered:
    (labels file, image root, run directory, CompletedProcess)."""
    tmp_path = tmp_path_factory.mktemp("self_train")
    labels = str(tmp_path / "sim.json")
    write_simulated_pseudo_labels(synthetic_dataset["train"], labels, seed=0)
    image_root = os.path.join(synthetic_dataset["root"], "train")
    out = tmp_path / "run"
    proc = run_tool("self_train.py", "--config-file",
                    "configs/self_train/mask_rcnn_R18_synthetic.yaml", "--labels", labels,
                    "--image-root", image_root, "--output-dir", out, "--rounds", "1",
                    "--droploss", "--register-dataset", "selftrain_eval", synthetic_dataset["val"],
                    os.path.join(synthetic_dataset["root"], "val"), *TINY,
                    "DATASETS.TEST", "('selftrain_eval',)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return labels, image_root, out, proc


def test_self_train_ends_with_a_round_table_a_log_per_round_and_no_nan(one_round):
    _, _, out, proc = one_round
    lines = proc.stdout.splitlines()
    at = lines.index(f"self-training run {out}")
    header = [c.strip() for c in lines[at + 1].strip("|").split("|")]
    assert header == ["round", "labels in", "old kept", "old replaced", "predictions added",
                      "box AP", "mask AP", "checkpoint"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[at + 3:at + 5]]
    summary = json.loads((out / "self_train.json").read_text())
    r1 = summary["round_info"]["1"]
    assert rows[0][:5] == ["0", str(summary["round_info"]["0"]["num_annotations"]), "-", "-", "-"]
    assert rows[1][:5] == ["1", str(r1["num_annotations"]), str(r1["old_kept"]),
                           str(r1["old_replaced"]), str(r1["predictions_added"])]
    assert r1["num_annotations"] == r1["old_kept"] + r1["predictions_added"]
    assert rows[1][5] == f"{r1['eval']['bbox']['AP']:.1f}"
    assert rows[1][7] == "round1/model_final.pth"
    # The 96x80 evaluation images hold no large object: COCOeval's APl is NaN, stored as null.
    assert "NaN" not in (out / "self_train.json").read_text()
    assert r1["eval"]["bbox"]["APl"] is None and "nan" not in proc.stdout.split("self-training")[-1]
    # Each round's own log, in detectron2's format.
    log0 = (out / "round0" / "log.txt").read_text()
    log1 = (out / "round1" / "log.txt").read_text()
    assert "round 0: training from iteration 0 to 3" in log0 and "round 1" not in log0
    assert "round 1 labels:" in log1 and "round 1: training from iteration 0 to 3" in log1
    assert log1.startswith("[") and " zip_d2.selftrain.rounds INFO: " in log1


def test_round_table_says_n_a_for_missing_or_nan_ap():
    from zip_d2.selftrain import summary_table

    table = summary_table({"round_info": {
        "0": {"checkpoint": "/w/r0.pth", "trained_here": False},
        "1": {"checkpoint": "/run/round1/model_final.pth", "num_annotations": 5, "old_kept": 2,
              "old_replaced": 1, "predictions_added": 3,
              "eval": {"bbox": {"AP": float("nan")}, "segm": {"AP": 12.345}}}}}, "/run")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[3:]]
    assert rows == [["0", "-", "-", "-", "-", "n/a", "n/a", "/w/r0.pth (given)"],
                    ["1", "5", "2", "1", "3", "n/a", "12.3", "round1/model_final.pth"]]


def test_one_self_training_round_end_to_end_then_resume(one_round, synthetic_dataset, caplog):
    labels, image_root, out, proc = one_round
    round0_cfg = (out / "round0" / "config.yaml").read_text()
    assert "DropLossROIHeads" in round0_cfg and "round1" not in round0_cfg
    data = json.loads((out / "round1" / "labels.json").read_text())
    assert validate_coco(data, image_root=image_root, check_segmentations=True) == []
    info = data["info"]["self_training"]
    assert info["parent_labels"] == labels
    assert info["checkpoint"] == str(out / "round0" / "model_final.pth")
    assert info["score_threshold"] == 0.0 and info["keep_old_max_iou"] == 0.5
    assert data["info"]["simulated"] is True
    assert len(data["annotations"]) == info["predictions_kept"] + info["old_kept"] > 0
    assert (out / "round1" / "model_final.pth").is_file()

    # Interrupt round 1's training after iteration 1: its final weights are gone and
    # last_checkpoint points at iteration 1. Rerunning resumes at iteration 2 of round 1,
    # without re-predicting or retraining round 0.
    os.remove(out / "round1" / "model_final.pth")
    (out / "round1" / "last_checkpoint").write_text("model_0000001.pth")
    preds_mtime = os.path.getmtime(out / "round1" / "predictions.json")
    round0_mtime = os.path.getmtime(out / "round0" / "model_final.pth")
    # zip_d2's loggers: the rounds' and zip_d2.engine.train's (which logs "training from").
    caplog.set_level("INFO", logger="zip_d2")
    # The same inputs as the command: a run directory resumes only with them.
    evaluation = [["selftrain_eval", synthetic_dataset["val"],
                   os.path.join(synthetic_dataset["root"], "val")]]
    SelfTrainingRun("configs/self_train/mask_rcnn_R18_synthetic.yaml", labels, image_root,
                    str(out), rounds=1, droploss=True,
                    opts=TINY + ["DATASETS.TEST", "('selftrain_eval',)"],
                    register=evaluation).run()
    # The resumed round appended to its log.
    assert (out / "round1" / "log.txt").read_text().count("round 1: training from") == 2
    assert "round 1: training from iteration 2 to 3" in caplog.text
    assert (out / "round1" / "model_final.pth").is_file()
    assert os.path.getmtime(out / "round1" / "predictions.json") == preds_mtime
    assert os.path.getmtime(out / "round0" / "model_final.pth") == round0_mtime


def test_missing_round0_checkpoint_is_an_error_before_any_work(synthetic_dataset, tmp_path):
    with pytest.raises(ValueError, match="round-0 checkpoint not found"):
        SelfTrainingRun("configs/self_train/mask_rcnn_R18_synthetic.yaml",
                        synthetic_dataset["train"], synthetic_dataset["root"], str(tmp_path),
                        rounds=1, weights=str(tmp_path / "missing.pth"))
    assert not (tmp_path / "round1").exists()


def test_a_run_directory_is_resumed_only_with_the_inputs_it_was_made_with(synthetic_dataset,
                                                                          tmp_path, capsys):
    import shutil

    config = "configs/self_train/mask_rcnn_R18_synthetic.yaml"
    image_root = os.path.join(synthetic_dataset["root"], "train")
    labels, other = str(tmp_path / "labels.json"), str(tmp_path / "other.json")
    write_simulated_pseudo_labels(synthetic_dataset["train"], labels, seed=0)
    write_simulated_pseudo_labels(synthetic_dataset["train"], other, seed=1)
    # With --weights and no rounds nothing is trained or loaded: only the run's bookkeeping.
    weights = tmp_path / "round0.pth"
    weights.write_bytes(b"stands in for a trained checkpoint")
    out = tmp_path / "run"

    def run(labels_json, **kwargs):
        return SelfTrainingRun(config, labels_json, image_root, str(out), rounds=0,
                               weights=str(weights), **kwargs).run()

    run(labels)
    # A record binds its directory once a round holds work (a record alone binds nothing).
    os.makedirs(out / "round1")
    (out / "round1" / "predictions.json").write_text("[]")
    recorded = (out / "self_train.json").read_text()
    run(labels)  # the same inputs resume
    with pytest.raises(ValueError, match="other inputs") as e:
        run(other)
    assert "\n" not in str(e.value) and "labels" in str(e.value)
    # The same path with other content is other inputs too.
    shutil.copy(other, labels + ".new")
    os.replace(labels + ".new", labels)
    with pytest.raises(ValueError, match="other inputs"):
        run(labels)
    assert json.loads((out / "self_train.json").read_text()) == json.loads(recorded)

    # The tool: one line, exit 2, even for an unreadable labels file; the record is untouched.
    (tmp_path / "broken.json").write_text("not json")
    tool = load_tool("self_train")
    capsys.readouterr()
    rc = tool.main(["--config-file", config, "--labels", str(tmp_path / "broken.json"),
                    "--image-root", image_root, "--output-dir", str(out), "--rounds", "0",
                    "--weights", str(weights)])
    err = [line for line in capsys.readouterr().err.splitlines()
           if line.startswith("self_train: error:")]
    assert rc == 2 and len(err) == 1 and "other inputs" in err[0], err
    assert json.loads((out / "self_train.json").read_text()) == json.loads(recorded)

    # --overwrite starts over with the new inputs, but never deletes one of them.
    inside = str(out / "round1" / "labels.json")
    shutil.copy(other, inside)
    with pytest.raises(ValueError, match="which --overwrite would delete"):
        run(inside, overwrite=True)
    summary = run(other, overwrite=True)
    assert summary["initial_labels"] == other and not (out / "round1").exists()
    # Rounds of an unrecorded run are not adopted either.
    stray = tmp_path / "stray"
    os.makedirs(stray / "round0")
    (stray / "round0" / "model_final.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="no record of its inputs"):
        SelfTrainingRun(config, labels, image_root, str(stray), rounds=0, weights=str(weights))
