"""The one rule for "finished" and the one DropLoss substitution that train_net, the
self-training rounds and the experiments share (zip_d2.engine.train)."""
import os

import pytest
from conftest import REPO

from zip_d2.config import SetupError, setup_cfg
from zip_d2.engine.train import droploss_opts, final_checkpoint, is_finished

CONFIG = os.path.join(REPO, "configs", "synthetic", "mask_rcnn_R18_synthetic.yaml")


def _write(path, text="x"):
    with open(path, "w") as f:
        f.write(text)


def test_a_training_is_finished_only_once_detectron2_tagged_model_final(tmp_path):
    out = str(tmp_path)
    assert not is_finished(out)  # nothing there
    _write(final_checkpoint(out))
    assert not is_finished(out)  # the file without the tag: possibly cut short by a kill
    _write(os.path.join(out, "last_checkpoint"), "model_0000019.pth")
    assert not is_finished(out)  # the tag names an intermediate checkpoint
    _write(os.path.join(out, "last_checkpoint"), "model_final.pth\n")
    assert is_finished(out)
    os.remove(final_checkpoint(out))
    assert not is_finished(out)  # a tag naming a file that is gone


@pytest.mark.parametrize("heads,variant", [("StandardROIHeads", "DropLossROIHeads"),
                                           ("OpenVocabROIHeads", "DropLossOpenVocabROIHeads"),
                                           ("DropLossROIHeads", "DropLossROIHeads")])
def test_droploss_swaps_the_heads_for_their_droploss_variant(heads, variant):
    opts = droploss_opts(setup_cfg(CONFIG, ["MODEL.ROI_HEADS.NAME", heads]))
    assert opts == ["MODEL.ROI_HEADS.NAME", variant, "MODEL.ROI_HEADS.DROPLOSS.ENABLED", "True"]
    cfg = setup_cfg(CONFIG, ["MODEL.ROI_HEADS.NAME", heads] + opts)
    assert cfg.MODEL.ROI_HEADS.DROPLOSS.ENABLED


def test_droploss_refuses_heads_without_a_variant_in_one_line():
    cfg = setup_cfg(CONFIG, ["MODEL.ROI_HEADS.NAME", "CascadeROIHeads"])
    with pytest.raises(SetupError, match="DropLoss has no variant of MODEL.ROI_HEADS.NAME "
                                         "'CascadeROIHeads'; supported: "):
        droploss_opts(cfg)
