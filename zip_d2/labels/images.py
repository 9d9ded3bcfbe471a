"""Inputs of the pseudo-label job: which images, and their pixels as the labeler sees them.

Two ways to name the images: a folder (searched recursively) or a COCO JSON whose image list and
ids are kept. Decoding follows detectron2's ``read_image`` conventions (EXIF orientation applied,
any PIL mode to 8-bit RGB) so the labels line up with what training later reads from the same
file. Every way a single file can be bad becomes an :class:`ImageSkip` reason; problems with the
input as a whole are :class:`InputError` (one line, raised before any work).
"""
from __future__ import annotations

import glob
import io
import os
import stat
import warnings
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from zip_d2.data.coco_json import unset_datasets_hint
from zip_d2.data.validate import DatasetError, load_json

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# PIL's own decompression-bomb limit; larger images are skipped unless the user raises it.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS
# Smaller images carry too few CLIP patches / feature cells to label meaningfully.
DEFAULT_MIN_SIDE = 8

_EXIF_ORIENTATION = 274
# The same mapping as PIL's ImageOps.exif_transpose and detectron2's read_image.
_ORIENTATION_OPS = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class InputError(ValueError):
    """The job's input as a whole is unusable; the message is one line."""


class ImageSkip(ValueError):
    """One image cannot be labeled; the message is the reason recorded in the output."""


@dataclass(frozen=True, slots=True)  # slots: ~100 bytes less for each of 1.28M images
class ImageEntry:
    """One image of the job.

    file_name: path relative to the image root, "/"-separated (the COCO ``file_name``).
    image_id: the id from the input COCO JSON, or None for a folder (ids assigned at merge).
    """

    file_name: str
    image_id: Optional[int] = None


@dataclass
class DecodedImage:
    """pixels: (h, w, 3) uint8 RGB at the working size (the labeler's input).
    width, height: size of the full decoded image after EXIF orientation (the COCO size).
    """

    pixels: np.ndarray
    width: int
    height: int


def list_image_folder(root: str, exclude: Iterable[str] = ()) -> Tuple[List[ImageEntry], int]:
    """Every image file under ``root`` (recursive, sorted), and the number of other files.

    Hidden directories are not entered; symlinked directories are followed once each.
    ``exclude``: files and folders left out of the listing (a job's own outputs when they lie
    under ``root``), compared by resolved path.
    Raises InputError when ``root`` is not a directory or holds no image file.
    """
    if not os.path.isdir(root):
        raise InputError(f"image folder not found: {root}{unset_datasets_hint(root)}")
    excluded = {os.path.realpath(p) for p in exclude}
    excluded_names = {os.path.basename(p) for p in excluded}
    entries, ignored, seen_dirs = [], 0, set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs or real in excluded:  # a symlink cycle, a second link, an output
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                ignored += 1
                continue
            if name in excluded_names and os.path.realpath(os.path.join(real, name)) in excluded:
                continue
            rel = name if rel_dir == "." else os.path.join(rel_dir, name)
            entries.append(ImageEntry(rel.replace(os.sep, "/")))
    entries.sort(key=lambda e: e.file_name)
    if not entries:
        raise InputError(f"no images found under {root} (looked for "
                         f"{', '.join(IMAGE_EXTENSIONS)}, recursively)")
    return entries, ignored


_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _not_regular(mode: int) -> Optional[str]:
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a plain file")
    return f"not a regular file ({kind})"


def read_image_bytes(path: str) -> bytes:
    """The bytes of the regular file at ``path``.

    Anything else with an image's name (a FIFO, a device, a socket, a folder) is an ImageSkip
    found without opening it for a blocking read: reading a FIFO nobody writes to waits forever.
    OS errors (missing, unreadable) propagate.
    """
    reason = _not_regular(os.stat(path).st_mode)
    if reason:
        raise ImageSkip(reason)
    # Non-blocking open, then the type again on what was opened: the name may have been
    # replaced by a FIFO in between.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb") as f:
        reason = _not_regular(os.fstat(fd).st_mode)
        if reason:
            raise ImageSkip(reason)
        return f.read()


def list_image_paths(inputs) -> List[str]:
    """Image files named by command-line inputs: files, folders (searched as
    :func:`list_image_folder` does) and glob patterns; sorted within each input, first
    occurrence kept. Files without an image extension are left out."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            entries, _ = list_image_folder(item)
            paths += [os.path.join(item, e.file_name) for e in entries]
        elif os.path.isfile(item):
            paths.append(item)
        else:
            paths += sorted(glob.glob(item, recursive=True))
    images = [p for p in paths if p.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(p)]
    return list(dict.fromkeys(images))


def list_coco_images(json_path: str) -> List[ImageEntry]:
    """The images of a COCO JSON, with their ids, sorted by id.

    Raises InputError for an unreadable file, missing fields, duplicate ids or file names.
    """
    try:
        data = load_json(json_path)
    except DatasetError as e:
        raise InputError(str(e)) from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise InputError(f"{json_path}: no 'images' list")
    entries, ids, names = [], set(), set()
    for i, img in enumerate(images):
        if not (isinstance(img, dict) and isinstance(img.get("id"), int)
                and isinstance(img.get("file_name"), str) and img["file_name"]):
            raise InputError(f"{json_path}: images[{i}] needs an integer 'id' and a 'file_name'")
        if img["id"] in ids:
            raise InputError(f"{json_path}: duplicate image id {img['id']}")
        if img["file_name"] in names:
            raise InputError(f"{json_path}: duplicate file_name {img['file_name']}")
        ids.add(img["id"])
        names.add(img["file_name"])
        entries.append(ImageEntry(img["file_name"], img["id"]))
    if not entries:
        raise InputError(f"{json_path}: the image list is empty")
    entries.sort(key=lambda e: e.image_id)
    return entries


def _orientation(im: Image.Image) -> Optional[int]:
    try:
        return im.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # a corrupt EXIF block means "no orientation", as in the validator
        return None


def _to_rgb8(im: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from any PIL mode; 16-bit and 32-bit grey are scaled, not clipped."""
    if im.mode in _SIXTEEN_BIT_MODES or im.mode in ("I", "F"):
        arr = np.asarray(im).astype(np.float64)
        # PIL's convert("RGB") clips these to 255, which turns most 16-bit images white.
        top = 65535.0 if im.mode in _SIXTEEN_BIT_MODES or arr.max(initial=0) > 255 else 255.0
        grey = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode != "RGB":
        with warnings.catch_warnings():
            # Palette images with byte transparency warn here; dropping alpha is intended.
            warnings.simplefilter("ignore", UserWarning)
            im = im.convert("RGB")
    return np.asarray(im)


def working_size(width: int, height: int, max_side: int) -> Tuple[int, int]:
    """(w, h) the labeler gets: the image scaled so its long side is at most ``max_side``."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def decode_image(path: str, max_side: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS,
                 min_side: int = DEFAULT_MIN_SIDE, data: Optional[bytes] = None) -> DecodedImage:
    """Decode an image file for labeling.

    Args:
        path: the file.
        max_side: if > 0, images with a longer side are downscaled to it (area interpolation);
            the labels are scaled back to the full size later.
        max_pixels: images with more pixels are skipped (checked from the header, before decoding).
        min_side: images with a shorter side are skipped.
        data: the file's bytes, when the caller has already read them (to fingerprint exactly
            the bytes that are decoded); ``path`` then only names the file in messages.

    Raises ImageSkip for a size outside the limits; PIL/OS errors (missing, unreadable,
    truncated, not an image) propagate for the caller to record.
    """
    try:
        im = Image.open(path if data is None else io.BytesIO(data))
    except UnidentifiedImageError:
        # PIL names an in-memory file by its object address; name the file instead.
        raise UnidentifiedImageError(f"cannot identify image file {path!r}") from None
    with im:
        stored_w, stored_h = im.size
        if stored_w * stored_h > max_pixels:
            raise ImageSkip(f"image too large: {stored_w}x{stored_h} pixels is more than "
                            f"max_pixels={max_pixels}")
        if min(stored_w, stored_h) < min_side:
            raise ImageSkip(f"image too small: {stored_w}x{stored_h}, shorter side below "
                            f"min_side={min_side}")
        orientation = _orientation(im)
        target = working_size(stored_w, stored_h, max_side)
        if im.format == "JPEG" and target != (stored_w, stored_h):
            # Let libjpeg decode at a reduced scale (>= target) instead of full size.
            im.draft(im.mode, target)
        im.load()
        for op in _ORIENTATION_OPS.get(orientation, ()):
            im = im.transpose(op)
        pixels = _to_rgb8(im)
    width, height = (stored_h, stored_w) if orientation in (5, 6, 7, 8) else (stored_w, stored_h)
    work_w, work_h = working_size(width, height, max_side)
    if pixels.shape[:2] != (work_h, work_w):
        # PIL, not cv2: this runs in forked loader workers, where cv2's thread pool (inherited
        # from a parent that used it) deadlocks. BOX is area averaging, right for downscaling.
        pixels = np.asarray(Image.fromarray(pixels).resize((work_w, work_h), Image.Resampling.BOX))
    if not (pixels.flags.writeable and pixels.flags.c_contiguous):
        # PIL hands out read-only views; the labeler and torch expect an array they own.
        pixels = np.array(pixels, order="C", copy=True)
    return DecodedImage(pixels, width, height)
