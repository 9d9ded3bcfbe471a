"""The visualizer on what real label files hold: file names that are not UTF-8, class names with
"$", images that cannot be read, and flags that make no sense."""
import json
import os

import numpy as np
import pytest
from conftest import load_tool
from PIL import Image
from pycocotools import mask as mask_utils


def _labels(tmp_path, file_names, class_name="dog"):
    """A label file with one scored mask per image, and the images under tmp_path/images."""
    root = tmp_path / "images"
    root.mkdir(exist_ok=True)
    images, annotations = [], []
    for i, name in enumerate(file_names, start=1):
        Image.fromarray(np.full((30, 40, 3), 60 * i, np.uint8)).save(
            os.path.join(os.fsencode(str(root)), os.fsencode(name)), format="PNG")
        mask = np.zeros((30, 40), np.uint8)
        mask[5:20, 8:30] = 1
        rle = mask_utils.encode(np.asfortranarray(mask))
        rle["counts"] = rle["counts"].decode()
        images.append({"id": i, "file_name": name, "width": 40, "height": 30})
        annotations.append({"id": i, "image_id": i, "category_id": 1, "segmentation": rle,
                            "bbox": [8, 5, 22, 15], "area": 330, "score": 0.9, "iscrowd": 0})
    path = tmp_path / "labels.json"
    # ensure_ascii (the default) writes a name's undecodable bytes as "\udcff" escapes, as the
    # job does for a file name that is not UTF-8.
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": class_name}]}))
    return str(path), str(root)


def _vis(*args):
    return load_tool("visualize_pseudo_labels").main([str(a) for a in args])


def test_a_file_name_that_is_not_utf8_is_drawn_and_shown_escaped(tmp_path):
    name = os.fsdecode(b"caf\xe9.png")  # latin-1 bytes: a lone surrogate in Python
    labels, root = _labels(tmp_path, [name, "b.png"])
    assert _vis(labels, "--image-root", root, "--out-dir", tmp_path / "vis") == 0
    page = (tmp_path / "vis" / "index.html").read_text(encoding="utf-8")
    assert "caf\\xe9.png" in page and "1 instances: dog" in page
    assert (tmp_path / "vis" / "00000001.jpg").is_file()


def test_class_names_with_two_dollars_are_text_not_math(tmp_path):
    labels, root = _labels(tmp_path, ["a.png"], class_name="price $x^^$ tag")
    assert _vis(labels, "--image-root", root, "--out-dir", tmp_path / "vis") == 0
    assert (tmp_path / "vis" / "00000001.jpg").is_file()
    assert (tmp_path / "vis" / "scores_1.png").is_file()
    assert "price $x^^$ tag" in (tmp_path / "vis" / "index.html").read_text()


def test_an_image_that_cannot_be_read_is_listed_with_its_reason(tmp_path):
    labels, root = _labels(tmp_path, ["a.png", "b.png"])
    os.remove(os.path.join(root, "a.png"))
    assert _vis(labels, "--image-root", root, "--out-dir", tmp_path / "vis") == 0
    page = (tmp_path / "vis" / "index.html").read_text()
    assert "cannot read:" in page and (tmp_path / "vis" / "00000002.jpg").is_file()


@pytest.mark.parametrize("case", ["--num -1", "--num -1 --seed 3", "--out-dir is a file"])
def test_nonsense_flags_stop_in_one_line_with_exit_2(tmp_path, capsys, case):
    labels, root = _labels(tmp_path, ["a.png"])
    out = tmp_path / "vis"
    if case == "--out-dir is a file":
        out.write_text("not a folder")
        extra = []
    else:
        extra = case.split()
    rc = _vis(labels, "--image-root", root, "--out-dir", out, *extra)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert ("--num" if "num" in case else "--out-dir") in lines[0]
    assert not out.is_dir()
