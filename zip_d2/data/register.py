"""Registering COCO-format JSON files as Detectron2 datasets, from a config or the command line.

Detectron2's builtin names (``coco_2017_train``, ``lvis_v1_val``, ...) are registered by
detectron2 itself under ``$DETECTRON2_DATASETS`` and keep working; this module adds any other
COCO JSON — synthetic data, pseudo-labels, label subsets — without a code edit.
"""
import logging
import os
from collections.abc import Iterator

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .coco_json import EXTRA_ANNOTATION_KEYS, unset_datasets_hint
from .json_stream import iter_object, read_categories
from .validate import DatasetError, check_coco, truncated_image  # noqa: F401  (re-exported)

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
    # zip_d2_registered: training may load it as one shared file (data/shared_dataset.py)
    meta = {"json_file": json_file, "image_root": image_root, "evaluator_type": "coco",
            "zip_d2_registered": True}
    # load_coco_json sets the class names only when the data is first loaded, but the model is
    # built before that (an open-vocabulary head needs the names), so set them now, in the same
    # order and id mapping that load_coco_json will set. Only the categories are read (a
    # pseudo-label file holds them at its start), never the whole file.
    if os.path.isfile(json_file):
        try:
            cats = sorted(read_categories(json_file), key=lambda c: c["id"])
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
            counts = check_coco(json_file, image_root,
                                check_image_sizes=cfg.ZIP.DATASETS.CHECK_IMAGE_SIZES,
                                check_segmentations=True,
                                check_complete=cfg.ZIP.DATASETS.CHECK_IMAGE_SIZES)
        except DatasetError as e:
            raise DatasetError(f"dataset {name!r}: {e}") from None
        if name in require_annotations and not counts["annotations"]:
            raise DatasetError(f"dataset {name!r}: {json_file} has no annotations to train on")
        bare, instances = counts["without_segmentation"], counts["instances"]
        if bare and (name in require_masks or (cfg.MODEL.MASK_ON and bare < instances)):
            raise DatasetError(
                f"dataset {name!r}: {json_file}: {bare} of {instances} annotations have no "
                f"segmentation (first: annotation id {counts['first_without_segmentation']})"
                + (", and MODEL.MASK_ON trains a mask on each; add masks, or set MODEL.MASK_ON "
                   "False to train boxes only" if name in require_masks else
                   "; give every annotation a mask, or none (boxes only)"))
        logger.info("dataset %r: %d images, %d annotations, %d categories: OK", name,
                    counts["images"], counts["annotations"], counts["categories"])


def has_masks(json_file):
    """Whether any annotation of the COCO JSON file has a segmentation (box-only ground truth
    is evaluated on boxes only). Read as a stream, up to the first annotation that has one."""
    pairs = iter_object(json_file)
    try:
        for key, value in pairs:
            if key == "annotations" and isinstance(value, Iterator):
                return any(isinstance(a, dict) and a.get("segmentation") for a in value)
        return False
    finally:
        pairs.close()


def _builtin_hint(json_file):
    root = os.environ.get("DETECTRON2_DATASETS", "datasets")
    if os.path.abspath(json_file).startswith(os.path.abspath(root)):
        return (f" (builtin datasets live under $DETECTRON2_DATASETS={root}; "
                "see datasets/README.md for the layout)")
    return ""

