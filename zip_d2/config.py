"""Every config key zip_d2 adds to Detectron2's, declared in one place.

``add_zip_config(cfg)`` is the only function that adds keys; the private ``_add_*`` helpers
below are its sections, one per stage of the data flow, so a reader finds a key next to the
keys of the same stage. Each key has its default and a one-line comment.
"""
import difflib
import os
import re

import yaml

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as _d2_get_cfg

# The values SOLVER.OPTIMIZER accepts (zip_d2.engine.trainer.Trainer.build_optimizer).
OPTIMIZERS = ("SGD", "AdamW")


def add_zip_config(cfg):
    """Add zip_d2's keys (with defaults) to a Detectron2 config, in place."""
    _add_data_config(cfg)
    _add_logging_config(cfg)
    _add_solver_config(cfg)
    _add_pseudo_config(cfg)
    _add_open_vocab_config(cfg)
    _add_centernet_config(cfg)
    _add_self_training_config(cfg)


def get_cfg():
    """Detectron2's default config with zip_d2's keys added."""
    cfg = _d2_get_cfg()
    add_zip_config(cfg)
    return cfg


class SetupError(ValueError):
    """A problem with the command line or config, reported as one line before any work."""


def _one_line(e):
    return " ".join(str(e).strip("'\"").split()) or type(e).__name__


def check_overrides(opts):
    """SetupError unless ``opts`` are KEY VALUE pairs; a tool flag among them (``--overwrite``
    typed after the overrides) is named, with where it belongs."""
    flags = [o for o in opts if re.fullmatch(r"--[A-Za-z][\w-]*(=.*)?", str(o))]
    if flags:
        raise SetupError(f"{flags[0]} comes after the KEY VALUE config overrides, where it is "
                         "read as a key: move it before them")
    if len(opts) % 2:
        raise SetupError(f"config overrides must be KEY VALUE pairs, got {' '.join(opts)}")


def _all_keys(node, prefix=""):
    for k, v in node.items():
        if isinstance(v, CN):
            yield from _all_keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def nearest_keys_hint(cfg, message):
    """``message`` ("Non-existent key: X" from yacs) plus the config's nearest existing keys."""
    found = re.search(r"Non-existent (?:config )?key: ([\w.]+)", message)
    if not found:
        return message
    wrong = found.group(1)
    keys = list(_all_keys(cfg))
    near = difflib.get_close_matches(wrong, keys, n=3, cutoff=0.8)
    if not near:  # a wrong last part: the keys of the same section
        section = wrong.rsplit(".", 1)[0] + "."
        near = difflib.get_close_matches(wrong, [k for k in keys if k.startswith(section)],
                                         n=3, cutoff=0.5)
    return message + (f" (did you mean {' or '.join(near)}?)" if near else "")


def _set_key(cfg, key, value):
    """``cfg.<key> = value`` for a dotted key that must exist, keeping the default's type."""
    node, *path = [cfg] + key.split(".")
    for part in path[:-1]:
        if not isinstance(node, CN) or part not in node:
            raise SetupError(f"unknown config key {key}")
        node = node[part]
    last = path[-1]
    if not isinstance(node, CN) or last not in node:
        raise SetupError(f"unknown config key {key}")
    old = node[last]
    if isinstance(old, bool) != isinstance(value, bool) or (
            not isinstance(old, (int, float)) and type(old) is not type(value)):
        raise SetupError(f"{key} takes a {type(old).__name__}, got {value!r}")
    node[last] = type(old)(value) if isinstance(old, float) else value


def setup_cfg(config_file=None, opts=(), register=(), settings=None):
    """The one config builder of every tool: a frozen config from, in this order, zip_d2's
    defaults, ``config_file``, ``settings`` (a tool's own flags as {dotted key: value}), the
    ``KEY VALUE`` strings ``opts``, and ``register`` ([name, json, image_root] datasets added to
    ZIP.DATASETS.REGISTER).

    Raises:
        SetupError: missing config file, YAML syntax error, unknown key or bad value, as one line.
    """
    cfg = get_cfg()
    if config_file and not os.path.isfile(config_file):
        raise SetupError(f"config file not found: {config_file}")
    check_overrides(opts)
    steps = ((config_file, cfg.merge_from_file, config_file),
             ("command-line flags", lambda s: [_set_key(cfg, k, v) for k, v in s.items()],
              settings),
             ("command-line overrides", cfg.merge_from_list, list(opts)))
    for source, merge, arg in steps:
        if not arg:
            continue
        try:
            merge(arg)
        except SetupError as e:
            raise SetupError(f"bad config in {source}: {e}") from None
        except (KeyError, ValueError, AssertionError, TypeError, AttributeError,
                yaml.YAMLError) as e:
            raise SetupError(f"bad config in {source}: "
                             f"{nearest_keys_hint(cfg, _one_line(e))}") from None
    cfg.ZIP.DATASETS.REGISTER = [list(r) for r in cfg.ZIP.DATASETS.REGISTER] + [
        list(r) for r in register]
    cfg.freeze()
    return cfg


def _add_data_config(cfg):
    cfg.ZIP = CN()
    cfg.ZIP.DATASETS = CN()
    # Extra COCO-format datasets to register: a list of [name, json_file, image_root] triples.
    cfg.ZIP.DATASETS.REGISTER = []
    # Check every registered JSON before training: required fields, ids, categories, image files,
    # boxes and segmentations inside their images (else one-line error; detectron2 would clip).
    cfg.ZIP.DATASETS.VALIDATE = True
    # Also open every image header and compare its (EXIF-oriented) size to the JSON's.
    cfg.ZIP.DATASETS.CHECK_IMAGE_SIZES = True
    cfg.ZIP.EVAL = CN()
    # Also report class-agnostic box/mask AP (every category merged into one) at evaluation.
    cfg.ZIP.EVAL.CLASS_AGNOSTIC = False


def _add_logging_config(cfg):
    cfg.ZIP.WANDB = CN()
    # Log the same scalars as metrics.json/TensorBoard to Weights & Biases.
    cfg.ZIP.WANDB.ENABLED = False
    # W&B project name.
    cfg.ZIP.WANDB.PROJECT = "zip_d2"
    # W&B entity (team or user); "" = the account's default.
    cfg.ZIP.WANDB.ENTITY = ""
    # Run name; "" = the basename of OUTPUT_DIR.
    cfg.ZIP.WANDB.NAME = ""
    # "online", "offline" (no account needed; sync later with `wandb sync`) or "disabled".
    cfg.ZIP.WANDB.MODE = "offline"


def _add_solver_config(cfg):
    # "SGD" (Detectron2's optimizer, momentum SOLVER.MOMENTUM) or "AdamW" (betas SOLVER.BETAS).
    cfg.SOLVER.OPTIMIZER = "SGD"
    # AdamW's (beta1, beta2); unused by SGD.
    cfg.SOLVER.BETAS = (0.9, 0.999)


def _add_pseudo_config(cfg):
    """Pseudo-label generation (the Zip discovery engine, Shi & Yang, ICLR 2024)."""
    cfg.PSEUDO = CN()
    # "zip", "sam-clip" (SAM automatic masks labelled by CLIP) or "zip-no-sam".
    cfg.PSEUDO.METHOD = "zip"
    # Vocabulary: "coco", "lvis", an existing text file with one class name a line, or "a,b,c"
    # ("a," for one class); anything else is an error.
    cfg.PSEUDO.VOCABULARY = "coco"
    # Output one category ("object") instead of the vocabulary's classes.
    cfg.PSEUDO.CLASS_AGNOSTIC = False
    # "cuda", "cpu" or "" (cuda when available).
    cfg.PSEUDO.DEVICE = ""
    # Compute precision of the frozen models on GPU: "fp32", "fp16" or "bf16" (CPU is always fp32).
    cfg.PSEUDO.PRECISION = "fp32"
    # Seed for everything random in the pipeline (random-weight init included).
    cfg.PSEUDO.SEED = 0
    # Test presets only: build every model with random weights, announced loudly and recorded.
    cfg.PSEUDO.RANDOM_WEIGHTS = False
    # Weight download cache for SAM and CLIP ("" = ~/.cache/zip_d2 for SAM, open_clip's
    # ~/.cache/clip for CLIP).
    cfg.PSEUDO.CACHE_DIR = ""
    # How every model input (surgery, classification, boundary; sam-clip's crops) is resized
    # from the image: "pil" = PIL bicubic (a = -0.5, antialiased when downscaling), what the
    # authors' torchvision Resize on PIL images runs, bit for bit, done in the job's loader
    # workers; "opencv" = cv2 INTER_CUBIC (a = -0.75, no antialiasing), zip_d2 before issue 20:
    # up to 110 grey levels from PIL at 224x224 (README, "Model inputs").
    cfg.PSEUDO.RESIZE = "pil"

    cfg.PSEUDO.CLIP = CN()
    # open_clip model for semantic clues (classification and CLIP Surgery activation).
    cfg.PSEUDO.CLIP.MODEL = "ViT-B-16"
    # open_clip pretrained tag ("openai") or a local checkpoint file.
    cfg.PSEUDO.CLIP.PRETRAINED = "openai"
    # Square input side for the surgery ViT (512 gives a 32x32 patch grid at patch 16).
    cfg.PSEUDO.CLIP.INPUT_SIZE = 512
    # Number of final transformer blocks that run the value-value (surgery) path.
    cfg.PSEUDO.CLIP.SURGERY_DEPTH = 6
    # Prompt templates: "ensemble" (80 ImageNet + 5 scene templates) or "single"
    # ("a photo of a {}.").
    cfg.PSEUDO.CLIP.TEMPLATES = "ensemble"
    # Axis along which patch features are L2-normalised before the text product: 1 = over
    # tokens (the authors' demo, faithful default), 2 = over channels (per-token unit vectors).
    cfg.PSEUDO.CLIP.FEATURE_NORM_DIM = 1
    # Decide which classes are present by image-level CLIP classification (False: the caller
    # gives the classes per image, as the authors' demo does).
    cfg.PSEUDO.CLIP.CLASSIFY = True
    # Square input side for image-level classification (224 = CLIP's own); 0 = use the class
    # token of the INPUT_SIZE pass.
    cfg.PSEUDO.CLIP.CLASSIFY_SIZE = 224
    # Keep at most this many classes per image (0 = no top-k limit).
    cfg.PSEUDO.CLIP.TOPK = 5
    # Keep a class only if its image-level softmax probability is at least this.
    cfg.PSEUDO.CLIP.MIN_PROB = 0.1
    # Semantic region A = activation > RATIO * mean(activation).
    cfg.PSEUDO.CLIP.ACTIVATION_RATIO = 0.7

    cfg.PSEUDO.BOUNDARY = CN()
    # open_clip ResNet whose layer3 ("conv4_x") features carry the boundary prior.
    cfg.PSEUDO.BOUNDARY.MODEL = "RN50x64"
    # open_clip pretrained tag or local checkpoint file.
    cfg.PSEUDO.BOUNDARY.PRETRAINED = "openai"
    # Image short side fed to the trunk (aspect kept); features come out at stride 16.
    cfg.PSEUDO.BOUNDARY.SHORT_SIDE = 2048
    # Long side of the boundary input: "truncate" = int(SHORT_SIDE * long / short), the authors'
    # torchvision Resize(SHORT_SIDE) (480x640 -> 2048x2730, grid 128x170); "round16" = both
    # sides rounded to multiples of 16 (2048x2736, grid 128x171), zip_d2 before issue 20.
    cfg.PSEUDO.BOUNDARY.SIZE_RULE = "truncate"
    # Number of k-means clusters K.
    cfg.PSEUDO.BOUNDARY.NUM_CLUSTERS = 20
    # Maximum k-means iterations (stops earlier when centroids stop moving).
    cfg.PSEUDO.BOUNDARY.MAX_ITERS = 100
    # "uniform" (K evenly spaced pixels in raster order; the demo) or "semantic" (paper's
    # semantic-aware seeding from the activation map with automatic K).
    cfg.PSEUDO.BOUNDARY.INIT = "uniform"
    # "semantic" init only: bounds of the automatically chosen K.
    cfg.PSEUDO.BOUNDARY.MIN_CLUSTERS = 8
    cfg.PSEUDO.BOUNDARY.MAX_CLUSTERS = 40

    cfg.PSEUDO.DISCOVERY = CN()
    # Number of clusters ranked by overlap with the semantic region (label 0 takes a slot).
    cfg.PSEUDO.DISCOVERY.TOP_CLUSTERS = 20
    # Keep a fragment if |f ∩ A| / |f| exceeds this.
    cfg.PSEUDO.DISCOVERY.MIN_INSIDE_RATIO = 0.3
    # Keep a fragment if bbox_area(f) / |f| is below this (drops thin boundary fragments).
    cfg.PSEUDO.DISCOVERY.MAX_BOX_TO_AREA = 3.0
    # Drop instances smaller than this many clustering-grid cells.
    cfg.PSEUDO.DISCOVERY.MIN_INSTANCE_CELLS = 100
    # Not in the paper (0 = off): drop fragments with a smaller inscribed radius (grid cells).
    cfg.PSEUDO.DISCOVERY.MIN_INSCRIBED_RADIUS = 0.0

    cfg.PSEUDO.SAM = CN()
    # segment-anything model type: "vit_h", "vit_l" or "vit_b".
    cfg.PSEUDO.SAM.MODEL_TYPE = "vit_h"
    # Local checkpoint path; "" = download the published checkpoint into CACHE_DIR once.
    cfg.PSEUDO.SAM.CHECKPOINT = ""
    # Ask SAM for 3 masks per prompt and keep the one it scores highest.
    cfg.PSEUDO.SAM.MULTIMASK = True
    # Add a positive point at the instance's most activated cell to its box prompt.
    cfg.PSEUDO.SAM.POINT_PROMPT = False
    # Prompts per SAM mask-decoder call (also the automatic generator's points per batch).
    cfg.PSEUDO.SAM.BATCH_SIZE = 64

    cfg.PSEUDO.SCORE = CN()
    # CLIP factor of the score: "image_prob" (softmax over the whole vocabulary, also when the
    # classes are given) or "mask_activation" (mean activation inside the mask).
    cfg.PSEUDO.SCORE.CLIP_SCORE = "image_prob"
    # Mask-IoU above which the lower-scored of two detections is removed (across classes).
    cfg.PSEUDO.SCORE.NMS_IOU = 0.5
    # Keep at most this many detections per image.
    cfg.PSEUDO.SCORE.MAX_DETECTIONS = 100
    # Drop detections scored below this.
    cfg.PSEUDO.SCORE.MIN_SCORE = 0.0

    cfg.PSEUDO.SAM_CLIP = CN()
    # Baseline "sam-clip": SamAutomaticMaskGenerator grid density.
    cfg.PSEUDO.SAM_CLIP.POINTS_PER_SIDE = 32
    # Baseline "sam-clip": keep SAM masks with predicted IoU at least this.
    cfg.PSEUDO.SAM_CLIP.PRED_IOU_THRESH = 0.88
    # Baseline "sam-clip": keep SAM masks with stability score at least this.
    cfg.PSEUDO.SAM_CLIP.STABILITY_SCORE_THRESH = 0.95


def _add_open_vocab_config(cfg):
    """Open-vocabulary RoI classifier (Detic pattern) on CLIP text embeddings."""
    # The heads are chosen by MODEL.ROI_HEADS.NAME: "OpenVocabROIHeads" or
    # "OpenVocabCascadeROIHeads".
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB = CN()
    # Training embeddings file (tools/dump_clip_text_embeddings.py); "" = compute from VOCABULARY.
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.EMBEDDINGS = ""
    # Training vocabulary when EMBEDDINGS is "" (as PSEUDO.VOCABULARY: "coco", "lvis", a names
    # file, "a,b,c", "a," for one class); "" = the training dataset's class names.
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.VOCABULARY = ""
    # Test-time embeddings file (vocabulary swap); "" = same as training.
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.TEST_EMBEDDINGS = ""
    # Test-time vocabulary when TEST_EMBEDDINGS is "" (same forms as VOCABULARY); "" = the test
    # dataset's class names.
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.TEST_VOCABULARY = ""
    # CLIP text model the embeddings must come from; a file made with another is an error.
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.CLIP_MODEL = "ViT-B-16"
    # Its pretrained tag or checkpoint file (used when embeddings are computed in-process).
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.CLIP_PRETRAINED = "openai"
    # Prompt templates for in-process embeddings: "ensemble" or "single".
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.TEMPLATES = "ensemble"
    # Test presets only: compute in-process embeddings with a random-weight CLIP (announced loudly).
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.RANDOM_WEIGHTS = False
    # Logit scale applied to the cosine similarities.
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.TEMPERATURE = 50.0
    # Learn a scalar bias added to every class logit (Detic's option).
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.USE_BIAS = False
    # Background logit: "zero" (constant 0, Detic) or "learned" (cosine to a learned
    # text-space vector).
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.BACKGROUND = "zero"
    # Weight each foreground RoI's classification loss by its matched annotation's "score".
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.SCORE_WEIGHTED_LOSS = False


def _add_centernet_config(cfg):
    """CenterNet-style proposal generator (CenterNet2's first stage), zip_d2's own."""
    # Selected with MODEL.PROPOSAL_GENERATOR.NAME "CenterNetProposalGenerator".
    cfg.MODEL.CENTERNET = CN()
    # FPN levels the heatmap head runs on.
    cfg.MODEL.CENTERNET.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    # Object size range (max side, pixels) assigned to each level; overlapping ranges share objects.
    cfg.MODEL.CENTERNET.SOI = [[0, 80], [64, 160], [128, 320], [256, 640], [512, 100000]]
    # Number of 3x3 conv layers in the shared head tower.
    cfg.MODEL.CENTERNET.NUM_CONVS = 4
    # Normalisation in the head tower: "GN" or "".
    cfg.MODEL.CENTERNET.NORM = "GN"
    # Focal loss weight of positives (1 - alpha weighs negatives) on the centre heatmaps.
    cfg.MODEL.CENTERNET.FOCAL_ALPHA = 0.25
    # Focal loss focusing exponent.
    cfg.MODEL.CENTERNET.FOCAL_GAMMA = 2.0
    # Exponent of the Gaussian penalty reduction of negatives near a centre (CornerNet's beta).
    cfg.MODEL.CENTERNET.FOCAL_BETA = 4.0
    # Gaussian radius of a centre, as a fraction of the box's width/height.
    cfg.MODEL.CENTERNET.GAUSSIAN_SIGMA = 0.1
    # Heatmap loss weight.
    cfg.MODEL.CENTERNET.HM_WEIGHT = 1.0
    # GIoU box regression loss weight.
    cfg.MODEL.CENTERNET.REG_WEIGHT = 2.0
    # Proposals kept per image before NMS (per level) and after NMS, training.
    cfg.MODEL.CENTERNET.PRE_NMS_TOPK_TRAIN = 4000
    cfg.MODEL.CENTERNET.POST_NMS_TOPK_TRAIN = 2000
    # Proposals kept per image before NMS (per level) and after NMS, test.
    cfg.MODEL.CENTERNET.PRE_NMS_TOPK_TEST = 1000
    cfg.MODEL.CENTERNET.POST_NMS_TOPK_TEST = 256
    # NMS IoU threshold on proposals.
    cfg.MODEL.CENTERNET.NMS_THRESH = 0.9
    # Minimum heatmap score for a proposal.
    cfg.MODEL.CENTERNET.SCORE_THRESH = 0.0001
    # Final score = sqrt(proposal score * RoI class score) (CenterNet2's probabilistic two-stage).
    cfg.MODEL.CENTERNET.MULT_PROPOSAL_SCORE = True


def _add_self_training_config(cfg):
    """Self-training rounds (CutLER recipe) and DropLoss."""
    cfg.ZIP.SELF_TRAIN = CN()
    # Prediction score threshold for round k's new labels (index k-1; last value repeats).
    cfg.ZIP.SELF_TRAIN.SCORE_THRESHOLDS = [0.7, 0.65]
    # Keep an old pseudo-mask if its best mask IoU with the new predictions is below this.
    cfg.ZIP.SELF_TRAIN.KEEP_OLD_MAX_IOU = 0.5
    cfg.MODEL.ROI_HEADS.DROPLOSS = CN()
    # Ignore the loss of proposals that overlap no pseudo-mask (round 0).
    cfg.MODEL.ROI_HEADS.DROPLOSS.ENABLED = False
    # A proposal whose best IoU with any annotation is below this is dropped from the loss.
    cfg.MODEL.ROI_HEADS.DROPLOSS.IOU_THRESH = 0.01
