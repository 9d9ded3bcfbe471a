"""Registering COCO-format JSON files as Detectron2 datasets, from a config or the command line.

Detectron2's builtin names (``coco_2017_train``, ``lvis_v1_val``, ...) are registered by
detectron2 itself under ``$DETECTRON2_DATASETS`` and keep working; this module adds any other
COCO JSON — synthetic data, pseudo-labels, label subsets — without a code edit.
"""
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .coco_json import EXTRA_ANNOTATION_KEYS, unset_datasets_hint
from .validate import DatasetError, check_coco, load_json

logger = logging.getLogger(__name__)



def register_coco_json(name, json_file, image_root):
    """Register ``name`` as a COCO instances dataset; idempotent for the same files.

    Raises:
        DatasetError: ``name`` is already registered with different files.
    """
    json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if (meta.get("json_file"), meta.get("image_root")) == (json_file, image_root):
            return
        raise DatasetError(
            f"dataset name {name!r} is already registered with json_file="
            f"{meta.get('json_file')}; choose another name"
        )
    DatasetCatalog.register(
        name,
        lambda: load_coco_json(json_file, image_root, name,
                               extra_annotation_keys=EXTRA_ANNOTATION_KEYS),
    )
    meta = {"json_file": json_file, "image_root": image_root, "evaluator_type": "coco"}
    # load_coco_json sets the class names only when the data is first loaded, but the model is
    # built before that (an open-vocabulary head needs the names), so set them now, in the same
    # order and id mapping that load_coco_json will set.
    if os.path.isfile(json_file):
        try:
            data = load_json(json_file)
            cats = sorted(data.get("categories", []), key=lambda c: c["id"])
            # Box-only ground truth (no segmentation anywhere) is evaluated on boxes only.
            meta["has_masks"] = any(a.get("segmentation") for a in data.get("annotations", []))
        except (DatasetError, TypeError, KeyError, AttributeError):
            cats = []  # check_datasets reports the problem in one line
        if cats:
            meta["thing_classes"] = [c["name"] for c in cats]
            meta["thing_dataset_id_to_contiguous_id"] = {c["id"]: i for i, c in enumerate(cats)}
    MetadataCatalog.get(name).set(**meta)


def register_from_cfg(cfg):
    """Register every [name, json_file, image_root] triple of ``cfg.ZIP.DATASETS.REGISTER``
    (and zip_d2's OV-COCO names, as detectron2 registers its builtin ones)."""
    from . import ov_coco  # noqa: F401  (registers the OV-COCO names; it imports this module)

    for entry in cfg.ZIP.DATASETS.REGISTER:
        if len(entry) != 3:
            raise DatasetError(
                f"ZIP.DATASETS.REGISTER entries are [name, json_file, image_root]; got {entry}"
            )
        register_coco_json(*entry)


def check_datasets(cfg, names=None, require_annotations=(), require_masks=()):
    """Validate the COCO JSON behind each dataset name before any work starts: fields, ids,
    categories, image files (and sizes), and that every box and segmentation lies inside its
    image (an annotation that does not is an error, never clipped in silence).

    Args:
        cfg: config with ``ZIP.DATASETS.VALIDATE`` / ``CHECK_IMAGE_SIZES``.
        names (list[str] or None): dataset names; default: DATASETS.TRAIN + DATASETS.TEST.
        require_annotations (iterable[str]): names that must hold at least one annotation
            (training sets: detectron2 would otherwise fail later with an assertion).
        require_masks (iterable[str]): names whose every annotation (crowd ones aside) must
            have a segmentation (training sets of a mask model, whose mask head fails on a box
            without one). Any other dataset of a config must have masks on all its
            annotations or on none (box-only test sets are evaluated on boxes only).

    Raises:
        DatasetError: one line naming the dataset, the file and the first problem.
    """
    from . import ov_coco  # noqa: F401  (registers the OV-COCO names; it imports this module)

    if names is None:
        names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    registered = set(DatasetCatalog.list())
    for name in names:
        if name not in registered:
            raise DatasetError(
                f"dataset {name!r} is not registered: pass --register-dataset {name} JSON "
                "IMAGE_ROOT, add it to ZIP.DATASETS.REGISTER, or use a detectron2 builtin name"
            )
        meta = MetadataCatalog.get(name)
        json_file, image_root = meta.get("json_file"), meta.get("image_root")
        if json_file is None or not cfg.ZIP.DATASETS.VALIDATE:
            continue  # not a COCO-JSON dataset (e.g. LVIS's own loader) or checks turned off
        if not os.path.isfile(json_file):
            raise DatasetError(
                f"dataset {name!r}: JSON file not found: {json_file}"
                + (_builtin_hint(json_file) or unset_datasets_hint(json_file))
            )
        try:
            # Geometry too: detectron2's mapper silently clips a box that lies outside its
            # image, which trains on a box nobody drew.
            data = check_coco(json_file, image_root,
                              check_image_sizes=cfg.ZIP.DATASETS.CHECK_IMAGE_SIZES,
                              check_segmentations=True)
        except DatasetError as e:
            raise DatasetError(f"dataset {name!r}: {e}") from None
        if cfg.ZIP.DATASETS.CHECK_IMAGE_SIZES and image_root:
            _check_complete_images(name, json_file, image_root, data["images"])
        if name in require_annotations and not data["annotations"]:
            raise DatasetError(f"dataset {name!r}: {json_file} has no annotations to train on")
        anns = [a for a in data["annotations"] if not a.get("iscrowd")]
        bare = [a for a in anns if not a.get("segmentation")]
        if bare and (name in require_masks or (cfg.MODEL.MASK_ON and len(bare) < len(anns))):
            raise DatasetError(
                f"dataset {name!r}: {json_file}: {len(bare)} of {len(anns)} annotations have no "
                f"segmentation (first: annotation id {bare[0].get('id')})"
                + (", and MODEL.MASK_ON trains a mask on each; add masks, or set MODEL.MASK_ON "
                   "False to train boxes only" if name in require_masks else
                   "; give every annotation a mask, or none (boxes only)"))
        logger.info("dataset %r: %d images, %d annotations, %d categories: OK", name,
                    len(data["images"]), len(data["annotations"]), len(data["categories"]))


_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


def truncated_image(path):
    """Why the image file at ``path`` is cut short, or None: a PNG that does not end with its
    IEND chunk, a JPEG without its end-of-image marker (other formats: None). Reads a few
    bytes at each end of the file, so it costs what a header check costs; the header check
    alone passes such a file, and the loader then fails on it in the middle of training."""
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64))
        tail = f.read()
    if head.startswith(_PNG_START) and not tail.endswith(_PNG_END):
        return "the PNG ends without its IEND chunk"
    if head.startswith(_JPEG_START) and not tail.rstrip(b"\x00\r\n ").endswith(_JPEG_END):
        return "the JPEG ends without its end-of-image marker"
    return None


def _check_complete_images(name, json_file, image_root, images):
    for img in images:
        path = os.path.join(image_root, img["file_name"])
        try:
            why = truncated_image(path)
        except OSError as e:
            why = f"cannot be read: {e.strerror}"
        if why:
            raise DatasetError(f"dataset {name!r}: {json_file}: image {path} is truncated or "
                               f"damaged ({why}); re-export it, or remove it from the JSON")


def _builtin_hint(json_file):
    root = os.environ.get("DETECTRON2_DATASETS", "datasets")
    if os.path.abspath(json_file).startswith(os.path.abspath(root)):
        return (f" (builtin datasets live under $DETECTRON2_DATASETS={root}; "
                "see datasets/README.md for the layout)")
    return ""
