"""Model inputs as the authors' public code makes them (issue 20).

The official Zip and CLIP Surgery code open an image with PIL and apply torchvision transforms
to the PIL image: ``Resize((512, 512))`` for surgery, ``Resize((224, 224))`` for classification
(CLIP Surgery's ``_transform``), ``Resize(2048)`` for the boundary trunk, all BICUBIC, then
``ToTensor`` and ``Normalize``. Those transforms are the oracle here, on photographs that
scikit-image ships and on odd sizes.
"""
import os

import numpy as np
import pytest
import skimage.data
import torch
from conftest import tiny_pseudo_cfg
from PIL import Image
from torchvision import transforms as T

from zip_d2.labels.images import decode_image
from zip_d2.pseudo import ZipPreprocess, build_labeler, check_config, clues, clusters

BICUBIC = T.InterpolationMode.BICUBIC
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
# Colour photographs shipped inside scikit-image (no download), of COCO-like sizes.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _photo(name):
    return np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])


def _official(image, size, mean=MEAN, std=STD):
    """(3, h, w) float32: what the authors' code feeds a model, from (H, W, 3) uint8 RGB."""
    transform = T.Compose([T.Resize(size, interpolation=BICUBIC), T.ToTensor(),
                           T.Normalize(mean, std)])
    return transform(Image.fromarray(image))


def _official_pixels(image, size):
    """(h, w, 3) uint8: the official resize alone."""
    return np.asarray(T.Resize(size, interpolation=BICUBIC)(Image.fromarray(image)))


@pytest.mark.parametrize("name", PHOTOS)
def test_every_model_input_equals_the_official_transform_on_shipped_photographs(name):
    image = _photo(name)
    prep = ZipPreprocess(input_size=512, classify_size=224, short_side=2048)
    inputs = prep(image)
    for pixels, size in ((inputs.clip, (512, 512)), (inputs.classify, (224, 224)),
                         (inputs.boundary, 2048)):
        official = _official(image, size)
        assert np.array_equal(pixels.numpy(), _official_pixels(image, size)), (name, size)
        ours = clues.normalize_batch(pixels[None], MEAN, STD)[0]
        assert ours.shape == official.shape
        torch.testing.assert_close(ours, official, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", PHOTOS)
def test_opencv_resize_is_the_old_unantialiased_one_far_from_pil_when_downscaling(name):
    image = _photo(name)
    pil = clues.resize_image(image, (224, 224), "pil").astype(int)
    opencv = clues.resize_image(image, (224, 224), "opencv").astype(int)
    # The measured gap of issue 20 (35 to 110 grey levels on these photographs): aliasing.
    assert np.abs(pil - opencv).max() >= 20
    torch.testing.assert_close(
        clues.image_to_tensor(image, (224, 224), MEAN, STD, resize="opencv")[0],
        clues.normalize_batch(torch.from_numpy(opencv.astype(np.uint8))[None], MEAN, STD)[0])


# (H, W) of odd images and the sizes they are resized to: one-pixel rows and columns, very wide
# and very tall strips, odd sides, up and down, and the identity.
ODD = [((1, 37), (224, 224)), ((37, 1), (5, 7)), ((3, 900), (64, 64)), ((900, 3), (31, 17)),
       ((37, 53), (512, 512)), ((53, 37), (16, 16)), ((2, 2), (3, 3)), ((41, 29), (41, 29))]


@pytest.mark.parametrize("image_hw, size", ODD)
def test_resize_equals_pil_through_torchvision_on_odd_sizes(image_hw, size):
    rng = np.random.default_rng(sum(image_hw))
    image = rng.integers(0, 256, (*image_hw, 3), dtype=np.uint8)
    assert np.array_equal(clues.resize_image(image, size, "pil"), _official_pixels(image, size))


# The sizes of issue 20's table, then odd ones (short side 1, very wide, odd, square).
SHORT_SIDE_CASES = [((480, 640), 2048), ((640, 480), 2048), ((427, 640), 2048),
                    ((375, 500), 2048), ((300, 451), 2048), ((1, 37), 64), ((3, 900), 16),
                    ((37, 53), 97), ((53, 37), 97), ((29, 29), 64)]


@pytest.mark.parametrize("image_hw, short_side", SHORT_SIDE_CASES)
def test_boundary_size_is_torchvisions_short_side_resize(image_hw, short_side):
    image = np.zeros((*image_hw, 3), np.uint8)
    official = _official_pixels(image, short_side).shape[:2]
    assert clusters.short_side_size(image_hw, short_side) == official
    rounded = clusters.short_side_size(image_hw, short_side, "round16")
    assert rounded[0] % 16 == 0 and rounded[1] % 16 == 0


def test_paper_sizes_truncate_the_long_side_where_zip_d2_used_to_round_it():
    assert clusters.short_side_size((480, 640), 2048) == (2048, 2730)
    assert clusters.short_side_size((427, 640), 2048) == (2048, 3069)
    assert clusters.short_side_size((480, 640), 2048, "round16") == (2048, 2736)
    with pytest.raises(ValueError, match="size rule"):
        clusters.short_side_size((480, 640), 2048, "floor")


def test_labeler_feeds_each_model_exactly_the_official_tensor(monkeypatch):
    """Model level: what the ViT (surgery and classification passes) and the boundary trunk
    receive inside ``label_batch`` is the official transform of the image."""
    lab = build_labeler(tiny_pseudo_cfg(METHOD="zip-no-sam"))
    p = lab.cfg.PSEUDO
    seen = {"vit": [], "trunk": []}

    def record(fn, key):
        def wrapped(model, x, *args, **kwargs):
            seen[key].append(x.detach().clone())
            return fn(model, x, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(clues, "surgery_tokens", record(clues.surgery_tokens, "vit"))
    monkeypatch.setattr(clusters, "layer3_features", record(clusters.layer3_features, "trunk"))
    image = np.ascontiguousarray(_photo("chelsea")[::3, ::3])  # 100x151: short side 256 -> 386
    lab.label_batch([image])
    mean, std = lab.clip.mean, lab.clip.std
    expected_vit = [_official(image, (p.CLIP.INPUT_SIZE,) * 2, mean, std),
                    _official(image, (p.CLIP.CLASSIFY_SIZE,) * 2, mean, std)]
    assert len(seen["vit"]) == 2
    for got, want in zip(seen["vit"], expected_vit):
        torch.testing.assert_close(got[0], want, rtol=0, atol=1e-6)
    (trunk,) = seen["trunk"]
    want = _official(image, p.BOUNDARY.SHORT_SIDE, lab.boundary.mean, lab.boundary.std)
    assert tuple(trunk.shape[-2:]) == (256, 386)
    torch.testing.assert_close(trunk[0], want, rtol=0, atol=1e-6)


def test_inputs_prepared_elsewhere_give_the_same_detections_as_preparing_in_the_labeler():
    lab = build_labeler(tiny_pseudo_cfg(METHOD="zip-no-sam"))
    images = [np.ascontiguousarray(_photo("coffee")[::4, ::4]),
              np.ascontiguousarray(_photo("astronaut")[::4, ::4])]
    direct = lab.label_batch(images)
    prepared = lab.label_batch(images, inputs=[lab.preprocess(images[0]), None])
    assert len(direct) == len(prepared) and any(direct)
    for a, b in zip(direct, prepared):
        assert [d["category"] for d in a] == [d["category"] for d in b]
        assert [d["score"] for d in a] == pytest.approx([d["score"] for d in b], abs=1e-6)
        assert all(np.array_equal(x["mask"], y["mask"]) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="inputs has 1 entries for 2 images"):
        lab.label_batch(images, inputs=[None])


def test_only_the_pil_resize_is_handed_to_forked_loader_workers():
    # cv2's thread pool, inherited through fork, can deadlock a worker: "opencv" stays here.
    assert ZipPreprocess(512, 224, 2048, resize="pil").worker_safe
    assert not ZipPreprocess(512, 224, 2048, resize="opencv").worker_safe


@pytest.mark.parametrize("key, value", [("RESIZE", "bilinear"), ("BOUNDARY.SIZE_RULE", "floor")])
def test_unknown_resize_or_size_rule_is_a_one_line_config_error(key, value):
    with pytest.raises(ValueError, match=f"PSEUDO.{key} must be one of") as err:
        check_config(tiny_pseudo_cfg(**{key: value}))
    assert "\n" not in str(err.value)


def test_paper_preset_prepares_inputs_as_the_official_code():
    from zip_d2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs",
                                     "pseudo", "zip_paper.yaml"))
    prep = ZipPreprocess.from_config(cfg.PSEUDO)
    assert (prep.resize, prep.size_rule) == ("pil", "truncate")
    assert (prep.input_size, prep.classify_size, prep.short_side) == (512, 224, 2048)


def test_decoding_applies_exif_orientation_as_detectron2_does_unlike_the_official_pil_path(
        tmp_path):
    from detectron2.data.detection_utils import read_image

    stored = np.zeros((24, 40, 3), np.uint8)  # 40 wide, 24 high as stored
    stored[:6, :6] = (255, 0, 0)  # red at the stored top-left corner
    exif = Image.Exif()
    exif[274] = 8  # orientation: rotate 90 degrees counter-clockwise to display
    path = str(tmp_path / "rotated.jpg")
    Image.fromarray(stored).save(path, exif=exif, quality=100)

    decoded = decode_image(path).pixels
    assert decoded.shape == (40, 24, 3)
    assert np.array_equal(decoded, read_image(path, format="RGB"))
    # The stored top-left corner is displayed at the bottom-left.
    assert decoded[-2, 1, 0] > 200 and decoded[1, 1, 0] < 60
    # The authors' Image.open(path).convert("RGB") ignores the tag: stored orientation.
    official = np.asarray(Image.open(path).convert("RGB"))
    assert official.shape == (24, 40, 3)


class _RecordingPreprocess:
    """The labeler's preprocessing, noting in a file which process ran it."""

    def __init__(self, inner, log):
        self.inner, self.log, self.worker_safe = inner, log, inner.worker_safe

    def __call__(self, image):
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
        return self.inner(image)


def test_job_prepares_model_inputs_in_loader_workers_with_the_labels_of_direct_calls(tmp_path):
    import json

    from zip_d2.labels.job import JobOptions, run_job

    cfg = tiny_pseudo_cfg(METHOD="zip-no-sam")
    lab = build_labeler(cfg)
    root = tmp_path / "images"
    root.mkdir()
    direct = {}
    for name in ("coffee", "astronaut", "chelsea"):
        image = np.ascontiguousarray(_photo(name)[::4, ::4])
        Image.fromarray(image).save(root / f"{name}.png")
        direct[f"{name}.png"] = lab(image)
    log = tmp_path / "pids.txt"
    lab.preprocess = _RecordingPreprocess(lab.preprocess, str(log))
    out = str(tmp_path / "labels.json")
    run_job(cfg, JobOptions(out=out, images=str(root), workers=1, batch_size=2, progress=False),
            build_labeler=lambda cfg: lab)
    pids = set(log.read_text().split())
    assert len(log.read_text().split()) == 3 and str(os.getpid()) not in pids
    with open(out, encoding="utf-8") as f:
        data = json.load(f)
    names = {c["id"]: c["name"] for c in data["categories"]}
    files = {im["id"]: im["file_name"] for im in data["images"]}
    got = {name: [] for name in direct}
    for a in data["annotations"]:
        got[files[a["image_id"]]].append((names[a["category_id"]], a["score"]))
    assert any(got.values())
    for name, dets in direct.items():
        want = sorted((d["category"], d["score"]) for d in dets)
        assert [c for c, _ in sorted(got[name])] == [c for c, _ in want], name
        assert [s for _, s in sorted(got[name])] == pytest.approx([s for _, s in want], abs=1e-6)
