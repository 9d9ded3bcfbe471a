"""tools/demo.py draws its detections as the pseudo-label overlays are drawn (one mechanism,
zip_d2.labels.visualize.draw_instances): a small image enlarged for display, text labels on
the best-scored detections only and a legend for every class, a random-weight run stamped on
the picture, and every frame of a drawn video one size."""
import glob
import os

import cv2
import numpy as np
import pytest
import torch

from detectron2.utils.visualizer import Visualizer

from zip_d2.engine.demo import Demo, demo_cfg
from zip_d2.labels.visualize import MAX_LABELS, _class_color, display_factor

OV = "configs/open_vocab/mask_rcnn_R18_ov_synthetic.yaml"
NAMES = ["circle", "square", "triangle", "hexagon"]
DETECTIONS = 30


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A demo of an untrained open-vocabulary detector (every weight random, the synthetic
    config's random-weight CLIP): at score threshold 0 it gives DETECTIONS detections."""
    weights = tmp_path_factory.mktemp("demo_drawing") / "untrained.pth"
    torch.save({"model": {}}, weights)
    cfg, names = demo_cfg(OV, ["TEST.DETECTIONS_PER_IMAGE", str(DETECTIONS),
                               "INPUT.MIN_SIZE_TEST", "80"],
                          weights=str(weights), vocabulary=",".join(NAMES), device="cpu",
                          confidence_threshold=0.0)
    return Demo(cfg, names)


@pytest.fixture
def text_labels(monkeypatch):
    """The text labels detectron2's Visualizer draws (it is still the one drawing them)."""
    drawn = []
    original = Visualizer.draw_text

    def draw_text(self, text, *args, **kwargs):
        drawn.append(text)
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(Visualizer, "draw_text", draw_text)
    return drawn


def _image(synthetic_dataset, index=0):
    paths = sorted(glob.glob(os.path.join(synthetic_dataset["root"], "val", "*.png")))
    return paths[index], cv2.imread(paths[index])


def test_thirty_detections_are_enlarged_capped_listed_and_stamped(demo, synthetic_dataset,
                                                                   tmp_path, text_labels):
    _, image = _image(synthetic_dataset)
    out = str(tmp_path / "drawn.png")
    instances = demo.run_on_image(image, out)
    assert len(instances) == DETECTIONS
    drawn = cv2.imread(out)[:, :, ::-1]
    height, width = image.shape[:2]
    factor = display_factor(height, width)
    assert factor > 1 and min(height, width) * factor >= 480
    picture_h = height * factor
    assert drawn.shape[1] == width * factor and drawn.shape[0] > picture_h  # a legend below
    # Text labels on the MAX_LABELS best-scored detections only, with their scores.
    assert len(text_labels) == MAX_LABELS
    best = sorted(instances.scores.tolist(), reverse=True)[:MAX_LABELS]
    assert sorted(float(t.split()[-1]) for t in text_labels) == pytest.approx(
        sorted(round(s, 2) for s in best), abs=0.006)
    # The legend names every detected class by its colour swatch.
    legend = drawn[picture_h:].reshape(-1, 3)
    for c in set(instances.pred_classes.tolist()):
        swatch = np.array([int(255 * v) for v in _class_color(c)], np.uint8)
        assert (legend == swatch).all(axis=1).sum() > 20, NAMES[c]
    # Random weights (the config's random-weight CLIP) are stamped across the picture's foot.
    assert demo.stamp.startswith("RANDOM-WEIGHT")
    band = drawn[picture_h - 3].astype(int)
    assert (band[:, 0] - band[:, 2] > 60).mean() > 0.5


def test_few_detections_are_all_labelled(demo, synthetic_dataset, text_labels):
    _, image = _image(synthetic_dataset)
    instances = demo.run_on_image(image)
    demo.draw(image, instances[:3])
    assert len(text_labels) == 3


def test_every_frame_of_a_drawn_video_has_one_size(demo, synthetic_dataset, tmp_path):
    frames = [_image(synthetic_dataset, i)[1] for i in range(3)]
    height, width = frames[0].shape[:2]
    video = str(tmp_path / "shapes.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 4, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    out = str(tmp_path / "drawn.mp4")
    # Frames with different detections (and classes) still give one frame size.
    counts = [len(instances) for _, instances in demo.run_on_video(video, out)]
    assert counts == [DETECTIONS] * 3
    written = cv2.VideoCapture(out)
    sizes = []
    while True:
        ok, frame = written.read()
        if not ok:
            break
        sizes.append(frame.shape)
    assert len(sizes) == 3 and len(set(sizes)) == 1
    assert sizes[0][1] == width * display_factor(height, width) and sizes[0][0] > height
