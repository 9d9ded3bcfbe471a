"""A trained detector on images and videos, with a vocabulary chosen at run time (the library
behind tools/demo.py, which speaks Detic's and detectron2's demo dialect).

The vocabulary rule, the same as everywhere in zip_d2 plus Detic's spelling:
``--vocabulary coco|lvis`` (builtin), ``--vocabulary FILE`` (one class name a line) or
``--vocabulary "a,b,c"``; Detic's ``--vocabulary custom --custom_vocabulary a,b,c`` (or a file)
means the same as ``--vocabulary a,b,c``, and ``--custom_vocabulary`` alone implies ``custom``;
``--custom_vocabulary zebra`` (one word) is the one-class list ``zebra,``.
``custom`` without ``--custom_vocabulary`` is an error, never a class named "custom".
"""
import glob
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import cv2
import numpy as np
import torch

from .. import modeling  # noqa: F401  (registers zip_d2's heads and proposal generators)
from ..config import SetupError, setup_cfg
from ..data.paths import OverwriteError, refuse_overwriting_inputs
from ..labels.images import IMAGE_EXTENSIONS, list_image_paths
from ..labels.visualize import draw_instances
from ..modeling.vocabulary import uses_open_vocab_heads
from ..models import MissingWeightsError
from ..text import TextEmbeddings, load_vocabulary, looks_like_path
from .class_names import checkpoint_class_names, head_class_names, match_names, remap_instances
from .setup import check_weights, inference_cfg

__all__ = ["VIDEO_EXTENSIONS", "vocabulary_spec", "demo_cfg", "DemoInputs", "collect_inputs",
           "output_paths", "Demo", "run_demo"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
# OpenCV codec per output container (both ship with opencv-python-headless).
_FOURCC = {".avi": "MJPG"}
_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


def vocabulary_spec(vocabulary: Optional[str], custom_vocabulary: Optional[str]) -> Optional[str]:
    """The vocabulary spec (see the module docstring) from Detic's two flags; SetupError for
    ``custom`` without a list, or a list beside another vocabulary."""
    if custom_vocabulary is not None:
        if vocabulary not in (None, "custom"):
            raise SetupError(f"--custom_vocabulary goes with --vocabulary custom (or alone), "
                             f"not with --vocabulary {vocabulary}")
        if not custom_vocabulary.strip():
            raise SetupError("--custom_vocabulary is empty; give class names as a,b,c or a file")
        if not (os.path.isfile(custom_vocabulary) or "," in custom_vocabulary
                or looks_like_path(custom_vocabulary)):
            # Always a list (Detic's meaning): one word is a one-class list, written "a,"; a
            # missing file stays as given, for load_vocabulary to report.
            return custom_vocabulary.strip() + ","
        return custom_vocabulary
    if vocabulary == "custom":
        raise SetupError("--vocabulary custom needs --custom_vocabulary a,b,c (or a file of class "
                         "names, one a line)")
    return vocabulary


def _given_weights(opts) -> Optional[str]:
    pairs = dict(zip(opts[::2], opts[1::2]))
    return pairs.get("MODEL.WEIGHTS")


def demo_cfg(config_file: str, opts=(), weights: Optional[str] = None,
             vocabulary: Optional[str] = None, embeddings: Optional[str] = None,
             device: str = "", confidence_threshold: float = 0.5):
    """The model's config, rebuilt around the run-time vocabulary; (frozen cfg, class names).

    weights: the trained checkpoint; may instead come as ``MODEL.WEIGHTS`` in ``opts`` (not from
        the config file, whose MODEL.WEIGHTS initialises training, usually a backbone only).
    vocabulary / embeddings: a vocabulary spec (:func:`vocabulary_spec`) or an embeddings file
        from tools/dump_clip_text_embeddings.py; exactly one for open-vocabulary heads. A
        closed-set model detects the classes its checkpoint records; a vocabulary, if given,
        chooses among them by name (a class it never learned is an error).
    device: "cpu", "cuda", or "" (cuda when available).

    Only the test vocabulary matters at inference (no weight depends on the number of classes:
    class-agnostic boxes and masks, text-embedding classifier), so only the test vocabulary is
    set, the model is built for inference (no DATASETS.TRAIN) and no dataset needs to be
    registered. Every weight source is checked
    before anything is built. Raises SetupError (one line).
    """
    opts = list(opts)
    in_opts = _given_weights(opts)
    if weights and in_opts and in_opts != weights:
        raise SetupError(f"--weights {weights} and MODEL.WEIGHTS {in_opts} disagree; give one")
    weights = weights or in_opts
    if not weights:
        raise SetupError("no trained weights: give --weights FILE (or --opts MODEL.WEIGHTS FILE)")
    cfg = setup_cfg(config_file, opts)
    if not uses_open_vocab_heads(cfg):
        return _closed_set_demo_cfg(cfg, weights, vocabulary, embeddings, device,
                                    confidence_threshold)
    if (vocabulary is None) == (embeddings is None):
        raise SetupError("give exactly one of: a vocabulary (--vocabulary / --custom_vocabulary) "
                         "or --embeddings")
    cfg.defrost()
    ov = cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB
    try:
        if embeddings:
            emb = TextEmbeddings.load(embeddings)
            emb.check_compatible(ov.CLIP_MODEL)
            ov.TEST_EMBEDDINGS, ov.TEST_VOCABULARY = embeddings, ""
            names = emb.class_names
        else:
            names = [c["name"] for c in load_vocabulary(vocabulary)]
            ov.TEST_EMBEDDINGS, ov.TEST_VOCABULARY = "", vocabulary
        # Built for inference only (no DATASETS.TRAIN): the heads embed the test vocabulary
        # once and use it for both (zip_d2.modeling.vocabulary).
        ov.EMBEDDINGS, ov.VOCABULARY = "", ""
    except ValueError as e:
        raise SetupError(str(e)) from None
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(names)
    return _inference_cfg(cfg, weights, device, confidence_threshold), names


def _inference_cfg(cfg, weights, device, confidence_threshold):
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SetupError("--device cuda but no GPU is visible; use --cpu")
    cfg = inference_cfg(cfg, weights=weights, test=(), device=device,
                        score_thresh=confidence_threshold)
    check_weights(cfg)
    return cfg


def _closed_set_demo_cfg(cfg, weights, vocabulary, embeddings, device, confidence_threshold):
    """A closed-set detector finds the classes it was trained on (recorded in its checkpoint);
    a vocabulary only chooses among them, by name."""
    if embeddings:
        raise SetupError(f"--embeddings needs open-vocabulary heads; MODEL.ROI_HEADS.NAME "
                         f"{cfg.MODEL.ROI_HEADS.NAME} detects the classes it was trained on "
                         "(choose among them with --vocabulary)")
    try:
        wanted = None if vocabulary is None else [c["name"] for c in load_vocabulary(vocabulary)]
    except ValueError as e:
        raise SetupError(str(e)) from None
    cfg = _inference_cfg(cfg, weights, device, confidence_threshold)
    recorded = checkpoint_class_names(weights)
    num = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if recorded is not None and len(recorded) != num:
        raise SetupError(f"{weights} was trained on {len(recorded)} classes {recorded} but "
                         f"MODEL.ROI_HEADS.NUM_CLASSES is {num}; set MODEL.ROI_HEADS.NUM_CLASSES "
                         f"{len(recorded)}")
    if wanted is None and recorded is None:
        raise SetupError(f"{weights} records no class names: give its {num} classes, in "
                         "training order, with --vocabulary a,b,c")
    names = wanted if wanted is not None else recorded
    match_names(recorded, names, weights, "--vocabulary", num)  # SetupError if names unknown
    return cfg, names


@dataclass
class DemoInputs:
    images: List[str] = field(default_factory=list)
    videos: List[str] = field(default_factory=list)


def collect_inputs(items) -> DemoInputs:
    """Images and videos named by ``--input`` items: files, folders (images only) and glob
    patterns. An item that names nothing, or looks like a config override that strayed into
    ``--input``, is a SetupError (a typo must not shrink the run silently)."""
    found = DemoInputs()
    for item in items:
        if _CONFIG_KEY.match(item) and not os.path.exists(item):
            raise SetupError(f"--input {item}: looks like a config key; put KEY VALUE overrides "
                             "after --opts")
        matches = [item] if os.path.isfile(item) else sorted(glob.glob(item, recursive=True))
        videos = [p for p in matches if p.lower().endswith(VIDEO_EXTENSIONS)]
        images = list_image_paths([item])
        if not videos and not images:
            raise SetupError(f"--input {item}: no image ({', '.join(IMAGE_EXTENSIONS)}) or video "
                             f"({', '.join(VIDEO_EXTENSIONS)}) found")
        found.images += images
        found.videos += videos
    found.images = list(dict.fromkeys(found.images))
    found.videos = list(dict.fromkeys(found.videos))
    return found


def output_paths(output: Optional[str], inputs: DemoInputs) -> Callable[[str], Optional[str]]:
    """Where each input's drawing goes, as detectron2's demo decides: ``output`` is a folder
    (an existing one, or a name without a file extension) that gets ``<input stem>.png`` per
    image and ``<input stem>.mp4`` per video; or a file (with an image or video extension) for
    a single input of that kind. No ``output``: nothing is drawn (detections are printed).
    An output that is one of the inputs is refused."""
    if not output:
        return lambda path: None
    ext = os.path.splitext(output)[1].lower()
    everything = inputs.images + inputs.videos
    if os.path.isdir(output) or not ext:
        targets = {p: os.path.join(output, os.path.splitext(os.path.basename(p))[0]
                                   + (".mp4" if p in inputs.videos else ".png"))
                   for p in everything}
        names = list(targets.values())
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise SetupError(f"inputs with the same file name would overwrite each other's "
                             f"drawing in {output}: {clashes[0]}")
    else:
        kind = "video" if ext in VIDEO_EXTENSIONS else "image" if ext in IMAGE_EXTENSIONS else ""
        if not kind:
            raise SetupError(f"--output {output}: not a folder, an image "
                             f"({', '.join(IMAGE_EXTENSIONS)}) or a video "
                             f"({', '.join(VIDEO_EXTENSIONS)}) file name")
        if len(everything) != 1 or (kind == "video") != bool(inputs.videos):
            raise SetupError(f"--output {output} is one {kind} file: give one {kind} input, or a "
                             "folder for several inputs")
        targets = {everything[0]: output}
    try:
        refuse_overwriting_inputs([("--output", t) for t in targets.values()],
                                  [("--input", p) for p in everything])
    except OverwriteError as e:
        raise SetupError(str(e)) from None
    return targets.get


class Demo:
    """A DefaultPredictor around a demo config, and the drawing of its detections.

    ``run_on_image`` takes an (H, W, 3) uint8 BGR image; ``run_on_video`` a video file, whose
    frames go through the same predictor and, with an output path, are drawn (one colour per
    class) into a video written by OpenCV at the input's frame rate. Drawings are the
    pseudo-label overlays' (:meth:`draw`): small inputs enlarged, so a drawn video can be
    larger than its input.
    """

    def __init__(self, cfg, class_names):
        from detectron2.engine import DefaultPredictor

        try:
            self.predictor = DefaultPredictor(cfg)
        except (ValueError, MissingWeightsError) as e:  # the heads' one-line config errors
            raise SetupError(str(e)) from None
        self.class_names = list(class_names)
        # The model's classes (its test vocabulary, or those its checkpoint records) to
        # class_names, by name; detections of other classes are not shown.
        model_names = (head_class_names(self.predictor.model)
                       or checkpoint_class_names(cfg.MODEL.WEIGHTS))
        self.index = match_names(model_names, class_names, cfg.MODEL.WEIGHTS, "--vocabulary",
                                 cfg.MODEL.ROI_HEADS.NUM_CLASSES)
        # A vocabulary embedded by a random-weight CLIP: the class names it gives are noise.
        ov = cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB
        random_clip = uses_open_vocab_heads(cfg) and ov.RANDOM_WEIGHTS
        self.stamp = "RANDOM-WEIGHT CLIP: class names are noise" if random_clip else ""

    def describe(self, instances) -> str:
        return ", ".join(f"{self.class_names[c]} {s:.2f}" for c, s in
                         zip(instances.pred_classes.tolist(), instances.scores.tolist()))

    def draw(self, image_bgr: np.ndarray, instances, legend: bool = False) -> np.ndarray:
        """(H', W', 3) uint8 RGB: ``instances`` over the image, drawn as the pseudo-label
        overlays are (:func:`zip_d2.labels.visualize.draw_instances`: enlarged for display,
        text labels on the best-scored, a legend, random-weight runs stamped). ``legend``: list
        every class of the vocabulary, so that all frames of a video have one size."""
        masks = (list(instances.pred_masks.numpy()) if instances.has("pred_masks")
                 else [None] * len(instances))
        return draw_instances(image_bgr[:, :, ::-1], masks, instances.pred_boxes.tensor.numpy(),
                              instances.pred_classes.tolist(), dict(enumerate(self.class_names)),
                              scores=instances.scores.tolist(), stamp=self.stamp,
                              legend_classes=range(len(self.class_names)) if legend else None,
                              empty="no detections")

    @torch.no_grad()
    def run_on_image(self, image_bgr: np.ndarray, out_path: Optional[str] = None):
        """Instances on the CPU; the drawing (:meth:`draw`) saved to ``out_path`` when given."""
        instances = remap_instances(self.predictor(image_bgr)["instances"].to("cpu"), self.index)
        if out_path:
            os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
            cv2.imwrite(out_path, np.ascontiguousarray(self.draw(image_bgr, instances)[:, :, ::-1]))
        return instances

    @torch.no_grad()
    def run_on_video(self, path: str, out_path: Optional[str] = None):
        """Yield (frame index, instances) for every frame; write the drawn video (:meth:`draw`,
        every class in the legend: one frame size) to ``out_path`` (codec from its extension)
        at the input's frame rate when given. SetupError if it cannot be read or written."""
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise SetupError(f"cannot read video {path}")
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        writer = None
        try:
            index = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                instances = remap_instances(self.predictor(frame)["instances"].to("cpu"),
                                            self.index)
                if out_path:
                    drawn = self.draw(frame, instances, legend=True)[:, :, ::-1]
                    drawn = np.ascontiguousarray(drawn)
                    if writer is None:
                        writer = _video_writer(out_path, fps, drawn.shape[1], drawn.shape[0])
                    writer.write(drawn)
                yield index, instances
                index += 1
        finally:
            capture.release()
            if writer is not None:
                writer.release()


def _video_writer(out_path: str, fps: float, width: int, height: int):
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    ext = os.path.splitext(out_path)[1].lower()
    writer = cv2.VideoWriter(out_path, cv2.VideoWriter_fourcc(*_FOURCC.get(ext, "mp4v")), fps,
                             (width, height))
    if not writer.isOpened():
        raise SetupError(f"OpenCV cannot write video {out_path}")
    return writer

def run_demo(args) -> int:
    """tools/demo.py once its arguments are parsed: every input through one :class:`Demo`, a
    line per input on stdout. Returns the exit status (2 after a one-line error on stderr)."""
    from detectron2.data.detection_utils import read_image

    try:
        vocabulary = vocabulary_spec(args.vocabulary, args.custom_vocabulary)
        inputs = collect_inputs(args.input)
        destination = output_paths(args.output, inputs)
        cfg, names = demo_cfg(args.config_file, list(args.opts) + list(args.flag_opts),
                              weights=args.weights, vocabulary=vocabulary,
                              embeddings=args.embeddings,
                              device="cpu" if args.cpu else args.device,
                              confidence_threshold=args.confidence_threshold)
        demo = Demo(cfg, names)
        for path in inputs.images:
            out = destination(path)
            instances = demo.run_on_image(read_image(path, format="BGR"), out)
            found = demo.describe(instances)
            print(f"demo: {path}{' -> ' + out if out else ''}: {len(instances)} detections"
                  f"{': ' + found if found else ''}")
        for path in inputs.videos:
            out = destination(path)
            counts = [len(instances) for _, instances in demo.run_on_video(path, out)]
            print(f"demo: {path}{' -> ' + out if out else ''}: {len(counts)} frames, "
                  f"{sum(counts)} detections")
    except SetupError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    return 0
