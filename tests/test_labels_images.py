"""Image listing and decoding for the pseudo-label job: every odd file a user's folder can hold."""
import json
import os

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

from zip_d2.data.validate import oriented_image_size
from zip_d2.labels.images import (
    ImageSkip,
    InputError,
    decode_image,
    list_coco_images,
    list_image_folder,
    working_size,
)


def _save(path, array, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def test_folder_listing_is_recursive_sorted_case_insensitive_and_skips_other_files(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    _save(str(tmp_path / "b.JPG"), rgb)
    _save(str(tmp_path / "a" / "deep" / "c.png"), rgb)
    _save(str(tmp_path / ".hidden" / "d.png"), rgb)
    (tmp_path / "notes.txt").write_text("not an image")
    entries, ignored = list_image_folder(str(tmp_path))
    assert [e.file_name for e in entries] == ["a/deep/c.png", "b.JPG"]
    assert all(e.image_id is None for e in entries)
    assert ignored == 1


def test_empty_or_missing_folder_is_one_line_input_error(tmp_path):
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(InputError, match="no images found under"):
        list_image_folder(str(tmp_path))
    with pytest.raises(InputError, match="not found"):
        list_image_folder(str(tmp_path / "nope"))


def test_coco_image_list_keeps_ids_and_rejects_duplicates(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"images": [{"id": 42, "file_name": "x/b.jpg"},
                                           {"id": 7, "file_name": "a.jpg"}]}))
    entries = list_coco_images(str(path))
    assert [(e.image_id, e.file_name) for e in entries] == [(7, "a.jpg"), (42, "x/b.jpg")]
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"},
                                           {"id": 1, "file_name": "b.jpg"}]}))
    with pytest.raises(InputError, match="duplicate image id 1"):
        list_coco_images(str(path))
    with pytest.raises(InputError, match="not found"):
        list_coco_images(str(tmp_path / "missing.json"))


def test_exif_rotated_jpeg_is_decoded_upright_with_width_and_height_swapped(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)  # stored 40 wide, 20 high
    stored[:5, :5] = (255, 0, 0)  # red block at the stored top-left corner
    exif = Image.Exif()
    exif[274] = 6  # "rotate 90 CW to display"
    path = _save(str(tmp_path / "rot.jpg"), stored, exif=exif, quality=100)
    decoded = decode_image(path)
    assert (decoded.width, decoded.height) == (20, 40)
    assert decoded.pixels.shape == (40, 20, 3)
    # Rotating clockwise moves the stored top-left corner to the displayed top-right.
    assert decoded.pixels[1, -2, 0] > 200 and decoded.pixels[1, 1, 0] < 60
    # The lead's validator must agree with the size the job writes.
    assert oriented_image_size(path) == (decoded.width, decoded.height)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK"])
def test_any_colour_mode_decodes_to_rgb_uint8(tmp_path, mode):
    im = Image.new("RGB", (16, 12), (200, 30, 40)).convert(mode)
    path = str(tmp_path / ("x.jpg" if mode in ("L", "CMYK") else "x.png"))
    im.save(path)
    decoded = decode_image(path)
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape == (12, 16, 3)
    assert decoded.pixels.flags.writeable
    if mode in ("RGBA", "P", "CMYK"):
        r, g, b = decoded.pixels[6, 8].astype(int)
        assert r > 150 and g < 90 and b < 90, (mode, r, g, b)


def test_sixteen_bit_png_is_scaled_to_eight_bits_not_clipped_white(tmp_path):
    arr = np.array([[0, 256, 32768, 65535]] * 8, np.uint16)
    arr = np.repeat(arr, 3, axis=1)  # 12 x 8
    path = str(tmp_path / "deep.png")
    Image.fromarray(arr).save(path)
    decoded = decode_image(path)
    assert decoded.pixels.shape == (8, 12, 3)
    assert list(decoded.pixels[0, ::3, 0]) == [0, 1, 128, 255]


def test_large_image_is_labeled_downscaled_but_keeps_its_full_size(tmp_path):
    path = _save(str(tmp_path / "big.png"), np.full((2000, 3000, 3), 90, np.uint8))
    decoded = decode_image(path, max_side=512)
    assert (decoded.width, decoded.height) == (3000, 2000)
    assert decoded.pixels.shape == (341, 512, 3)
    assert working_size(3000, 2000, 512) == (512, 341)
    with pytest.raises(ImageSkip, match="image too large: 3000x2000"):
        decode_image(path, max_pixels=1_000_000)


def test_large_jpeg_uses_reduced_decoding_and_lands_on_the_exact_working_size(tmp_path):
    path = _save(str(tmp_path / "big.jpg"), np.full((1200, 1600, 3), 120, np.uint8))
    decoded = decode_image(path, max_side=200)
    assert decoded.pixels.shape == (150, 200, 3)
    assert (decoded.width, decoded.height) == (1600, 1200)


def test_tiny_image_is_a_skip_with_its_size(tmp_path):
    path = _save(str(tmp_path / "tiny.png"), np.zeros((3, 5, 3), np.uint8))
    with pytest.raises(ImageSkip, match="image too small: 5x3"):
        decode_image(path, min_side=8)


def test_broken_files_raise_errors_naming_the_problem(tmp_path):
    zero = tmp_path / "zero.jpg"
    zero.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("hello, I am not a PNG")
    good = _save(str(tmp_path / "good.jpg"), np.random.default_rng(0).integers(
        0, 255, (64, 64, 3), dtype=np.uint8))
    truncated = tmp_path / "truncated.jpg"
    data = open(good, "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnidentifiedImageError):
        decode_image(str(zero))
    with pytest.raises(UnidentifiedImageError):
        decode_image(str(text))
    with pytest.raises(OSError, match="truncated"):
        decode_image(str(truncated))
    with pytest.raises(FileNotFoundError):
        decode_image(str(tmp_path / "missing.jpg"))
