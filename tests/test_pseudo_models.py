"""The model factory: real architectures' shapes at random init, checkpoint files, and the
one-line error when weights are missing."""
import logging
from pathlib import Path

import pytest
import torch

from zip_d2.config import get_cfg
from zip_d2.models import MissingWeightsError, create_clip, create_sam
from zip_d2.pseudo import build_labeler
from zip_d2.pseudo.clusters import layer3_features

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "pseudo"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("ZIP_D2_OFFLINE", "1")
    return tmp_path


def test_rn50x64_layer3_is_stride_16_with_2048_channels():
    torch.manual_seed(0)
    visual = create_clip("RN50x64", random_weights=True).model.visual
    with torch.no_grad():
        feats = layer3_features(visual, torch.randn(1, 3, 64, 96))
    assert feats.shape == (1, 2048, 4, 6)


def test_sam_vit_b_checkpoint_file_loads_through_the_project_loader(tmp_path):
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"](checkpoint=None)
    path = tmp_path / "sam_vit_b.pth"
    torch.save(sam.state_dict(), path)
    loaded = create_sam("vit_b", checkpoint=str(path))
    assert loaded.zip_weights == str(path)
    for name in ("image_encoder.pos_embed", "mask_decoder.iou_prediction_head.layers.0.weight"):
        assert torch.equal(loaded.state_dict()[name], sam.state_dict()[name])
    assert not any(p.requires_grad for p in loaded.parameters())


def test_sam_checkpoint_of_another_size_is_a_clear_error(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(create_sam("tiny", random_weights=True).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit SAM vit_b"):
        create_sam("vit_b", checkpoint=str(path))


def test_clip_checkpoint_file_round_trips(tmp_path):
    torch.manual_seed(0)
    model = create_clip("zip-tiny-vit", random_weights=True).model
    path = tmp_path / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    again = create_clip("zip-tiny-vit", str(path))
    assert again.weights == str(path)
    assert torch.equal(again.model.visual.proj, model.visual.proj)


def test_random_weights_are_announced_loudly(caplog):
    with caplog.at_level(logging.WARNING, logger="zip_d2.models"):
        create_sam("tiny", random_weights=True)
    assert "!!! RANDOM WEIGHTS: SAM tiny" in caplog.text


@pytest.mark.parametrize("build", [
    lambda d: create_clip("ViT-B-16", "openai", cache_dir=str(d)),
    lambda d: create_clip("RN50x64", str(d / "missing.pt")),
    lambda d: create_sam("vit_h", cache_dir=str(d)),
    lambda d: create_sam("vit_b", checkpoint=str(d / "sam_vit_b.pth")),
], ids=["clip-tag", "clip-file", "sam-url", "sam-file"])
def test_missing_weights_offline_is_one_line_per_model_saying_what_and_how(offline, build):
    with pytest.raises(MissingWeightsError) as e:
        build(offline)
    msg = str(e.value)
    lines = msg.splitlines()  # a head line, then the one missing model
    assert len(lines) == 2 and lines[0].startswith("missing weights"), lines
    assert any(w in msg for w in ("CLIP ViT-B/16", "CLIP RN50x64", "SAM ViT-H", "SAM ViT-B"))
    assert any(w in msg for w in ("set pretrained to", "set checkpoint to", "give an existing"))


def test_missing_weights_stop_the_labeler_before_any_output(offline):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "zip_paper.yaml"))
    cfg.PSEUDO.CACHE_DIR = str(offline / "cache")
    cfg.PSEUDO.DEVICE = "cpu"
    with pytest.raises(MissingWeightsError, match="CLIP ViT-B/16: set PSEUDO.CLIP.PRETRAINED"):
        build_labeler(cfg)
    assert not (offline / "cache").exists() or not any((offline / "cache").iterdir())


def test_random_weights_never_replace_missing_ones_silently(offline):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "tiny_random.yaml"))
    cfg.PSEUDO.RANDOM_WEIGHTS = False
    with pytest.raises(MissingWeightsError):
        build_labeler(cfg)


def _serve_tiny_sam(tmp_path, good_checksum=True):
    """A tiny SAM checkpoint at a file:// URL named like the published ones (MD5 prefix)."""
    import hashlib

    src = tmp_path / "src.pth"
    torch.manual_seed(0)
    torch.save(create_sam("tiny", random_weights=True).state_dict(), src)
    md5 = hashlib.md5(src.read_bytes()).hexdigest()[:6] if good_checksum else "000000"
    served = tmp_path / f"sam_tiny_{md5}.pth"
    src.rename(served)
    return served


def test_published_checkpoint_is_downloaded_once_into_the_cache_and_checked(tmp_path, monkeypatch):
    from zip_d2 import models

    served = _serve_tiny_sam(tmp_path)
    monkeypatch.setitem(models.SAM_CHECKPOINT_URLS, "tiny", served.as_uri())
    cache = tmp_path / "cache"
    first = create_sam("tiny", cache_dir=str(cache))
    assert (cache / served.name).is_file() and first.zip_weights == served.as_uri()
    served.unlink()  # a second build must not need the network
    second = create_sam("tiny", cache_dir=str(cache))
    assert torch.equal(first.image_encoder.pos_embed, second.image_encoder.pos_embed)


def test_download_with_a_bad_checksum_leaves_nothing_behind(tmp_path, monkeypatch):
    from zip_d2 import models

    served = _serve_tiny_sam(tmp_path, good_checksum=False)
    monkeypatch.setitem(models.SAM_CHECKPOINT_URLS, "tiny", served.as_uri())
    cache = tmp_path / "cache"
    with pytest.raises(MissingWeightsError, match="could not be downloaded"):
        create_sam("tiny", cache_dir=str(cache))
    assert list(cache.iterdir()) == []
