"""Registering COCO-format JSON files as Detectron2 datasets, from a config or the command line.

Detectron2's builtin names (``coco_2017_train``, ``lvis_v1_val``, ...) are registered by
detectron2 itself under ``$DETECTRON2_DATASETS`` and keep working; this module adds any other
COCO JSON — synthetic data, pseudo-labels, label subsets — without a code edit.
"""
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .json_stream import read_categories
from .validate import DatasetError, check_coco

logger = logging.getLogger(__name__)

# Per-annotation keys beyond detectron2's defaults that reach the dataset dicts: pseudo-label
# JSON carries a confidence "score" that training can use to weight the loss.
EXTRA_ANNOTATION_KEYS = ["score"]


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
        except (DatasetError, TypeError, KeyError):
            cats = []  # check_datasets reports the problem in one line
        if cats:
            meta["thing_classes"] = [c["name"] for c in cats]
            meta["thing_dataset_id_to_contiguous_id"] = {c["id"]: i for i, c in enumerate(cats)}
    MetadataCatalog.get(name).set(**meta)


def register_from_cfg(cfg):
    """Register every [name, json_file, image_root] triple of ``cfg.ZIP.DATASETS.REGISTER``."""
    for entry in cfg.ZIP.DATASETS.REGISTER:
        if len(entry) != 3:
            raise DatasetError(
                f"ZIP.DATASETS.REGISTER entries are [name, json_file, image_root]; got {entry}"
            )
        register_coco_json(*entry)


def check_datasets(cfg, names=None, require_annotations=()):
    """Validate the COCO JSON behind each dataset name before any work starts: fields, ids,
    categories, image files (and sizes), and that every box and segmentation lies inside its
    image (an annotation that does not is an error, never clipped in silence).

    Args:
        cfg: config with ``ZIP.DATASETS.VALIDATE`` / ``CHECK_IMAGE_SIZES``.
        names (list[str] or None): dataset names; default: DATASETS.TRAIN + DATASETS.TEST.
        require_annotations (iterable[str]): names that must hold at least one annotation
            (training sets: detectron2 would otherwise fail later with an assertion).

    Raises:
        DatasetError: one line naming the dataset, the file and the first problem.
    """
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
                + _builtin_hint(json_file)
            )
        try:
            # Geometry too: detectron2's mapper silently clips a box that lies outside its
            # image, which trains on a box nobody drew.
            counts = check_coco(json_file, image_root,
                                check_image_sizes=cfg.ZIP.DATASETS.CHECK_IMAGE_SIZES,
                                check_segmentations=True)
        except DatasetError as e:
            raise DatasetError(f"dataset {name!r}: {e}") from None
        if name in require_annotations and not counts["annotations"]:
            raise DatasetError(f"dataset {name!r}: {json_file} has no annotations to train on")
        logger.info("dataset %r: %d images, %d annotations, %d categories: OK", name,
                    counts["images"], counts["annotations"], counts["categories"])


def _builtin_hint(json_file):
    root = os.environ.get("DETECTRON2_DATASETS", "datasets")
    if os.path.abspath(json_file).startswith(os.path.abspath(root)):
        return (f" (builtin datasets live under $DETECTRON2_DATASETS={root}; "
                "see datasets/README.md for the layout)")
    return ""


# Last: ov_coco uses this module's EXTRA_ANNOTATION_KEYS. Registers the OV-COCO dataset names
# wherever datasets are registered.
from . import ov_coco  # noqa: E402,F401
