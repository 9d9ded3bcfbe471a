"""Open-vocabulary COCO (OV-COCO): the 48 base / 17 novel split, split files and dataset names.

The split is the one introduced by OVR-CNN (Zareian et al., "Open-Vocabulary Object Detection
Using Captions", CVPR 2021) and used unchanged by Detic (Zhou et al., ECCV 2022) for its OV-COCO
numbers: 65 of COCO's 80 classes, 48 "base" (boxes may be used for training) and 17 "novel"
(never annotated in training). The 15 other COCO classes are not part of the benchmark. Names
are detectron2's COCO names (``detectron2.data.datasets.builtin_meta.COCO_CATEGORIES``).

``tools/make_ov_coco_splits.py`` writes the split files from the standard COCO annotation files,
under ``$DETECTRON2_DATASETS/coco/annotations/`` (``datasets`` when unset):

- ``instances_train2017_ov_base.json``: train images with base annotations, the 48 base classes;
- ``instances_val2017_ov_all.json``: val images with any of the 65 classes, all 65 (generalised
  evaluation: base and novel scored together);
- ``ov_coco_vocabulary_65.txt`` / ``ov_coco_vocabulary_48_base.txt``: class names in COCO id
  order, for ``tools/generate_pseudo_labels.py --vocabulary`` and the open-vocabulary heads.

Importing this module registers the dataset names of ``OV_COCO_DATASETS`` (lazily: the files
are read when the dataset is first loaded, and ``check_datasets`` says which file is missing).
"""
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from .coco_json import EXTRA_ANNOTATION_KEYS, DatasetError, load_json, write_json_atomic
from .paths import refuse_overwriting_inputs
from .validate import validate_coco

__all__ = ["OV_COCO_BASE", "OV_COCO_NOVEL", "OV_COCO_DATASETS", "build_ov_split",
           "make_ov_coco_splits", "register_ov_coco"]

# OVR-CNN's base classes (48), as used by Detic's OV-COCO benchmark.
OV_COCO_BASE = [
    "person", "bicycle", "car", "motorcycle", "train", "truck", "boat", "bench", "bird", "horse",
    "sheep", "bear", "zebra", "giraffe", "backpack", "handbag", "suitcase", "frisbee", "skis",
    "kite", "surfboard", "bottle", "fork", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "pizza", "donut", "chair", "bed", "toilet", "tv", "laptop",
    "mouse", "remote", "microwave", "oven", "toaster", "refrigerator", "book", "clock", "vase",
    "toothbrush",
]
# OVR-CNN's novel classes (17): no training box of these may be used in the base-annotated setting.
OV_COCO_NOVEL = [
    "airplane", "bus", "cat", "dog", "cow", "elephant", "umbrella", "tie", "snowboard",
    "skateboard", "cup", "knife", "cake", "couch", "keyboard", "sink", "scissors",
]

# name -> (split-file name under coco/annotations, image folder under coco, which classes)
OV_COCO_DATASETS = {
    "coco_2017_train_ov_base": ("instances_train2017_ov_base.json", "train2017", "base"),
    "coco_2017_train_ov_all": ("instances_train2017_ov_all.json", "train2017", "all"),
    "coco_2017_val_ov_all": ("instances_val2017_ov_all.json", "val2017", "all"),
}
SOURCE_FILES = {"train2017": "instances_train2017.json", "val2017": "instances_val2017.json"}


def build_ov_split(coco, keep_names, source=""):
    """COCO instances data restricted to the classes ``keep_names``.

    Args:
        coco (dict): COCO instances data (e.g. instances_val2017.json).
        keep_names (list[str]): class names to keep; all must be in ``coco["categories"]``.
        source (str): recorded in ``info``.

    Returns:
        dict: the kept categories (original ids), their annotations, and the images holding at
        least one kept annotation (crowd included), in the input's order.
    """
    by_name = {c["name"]: c for c in coco["categories"]}
    missing = [n for n in keep_names if n not in by_name]
    if missing:
        raise DatasetError(f"classes not in the annotation file: {missing}")
    keep_ids = {by_name[n]["id"] for n in keep_names}
    annotations = [a for a in coco["annotations"] if a["category_id"] in keep_ids]
    image_ids = {a["image_id"] for a in annotations}
    info = dict(coco.get("info", {}))
    info.update({"ov_coco_split": "OVR-CNN 48 base / 17 novel (as in Detic)",
                 "classes_kept": len(keep_ids), "source": source})
    return {"info": info, "licenses": coco.get("licenses", []),
            "images": [img for img in coco["images"] if img["id"] in image_ids],
            "annotations": annotations,
            "categories": [c for c in coco["categories"] if c["id"] in keep_ids]}


def _dataset_root(root=None):
    return root or os.environ.get("DETECTRON2_DATASETS", "datasets")


def make_ov_coco_splits(root=None, splits=("train2017", "val2017")):
    """Write the OV-COCO split files and vocabularies; return {output name: path}.

    Reads ``<root>/coco/annotations/instances_{train,val}2017.json``.
    """
    ann_dir = os.path.join(_dataset_root(root), "coco", "annotations")
    written = {}
    for split in splits:
        src = os.path.join(ann_dir, SOURCE_FILES[split])
        if not os.path.isfile(src):
            raise DatasetError(f"COCO annotation file not found: {src} (set $DETECTRON2_DATASETS "
                               "to the folder holding coco/annotations)")
        outputs = [fname for fname, image_dir, _ in OV_COCO_DATASETS.values() if image_dir == split]
        outputs += ["ov_coco_vocabulary_65.txt", "ov_coco_vocabulary_48_base.txt"]
        refuse_overwriting_inputs([("output", os.path.join(ann_dir, f)) for f in outputs],
                                  {"COCO annotation file": src})
        coco = load_json(src)
        for name, (fname, image_dir, which) in OV_COCO_DATASETS.items():
            if image_dir != split:
                continue
            keep = OV_COCO_BASE if which == "base" else OV_COCO_BASE + OV_COCO_NOVEL
            data = build_ov_split(coco, keep, source=src)
            problems = validate_coco(data)
            if problems:
                raise DatasetError(f"{fname}: {problems[0]}")
            path = os.path.join(ann_dir, fname)
            write_json_atomic(data, path)
            written[fname] = path
        # Vocabulary files in COCO id order, so pseudo-label ids 1..N follow the same order
        # as the registered datasets' contiguous ids.
        id_of = {c["name"]: c["id"] for c in coco["categories"]}
        for fname, names in (("ov_coco_vocabulary_65.txt", OV_COCO_BASE + OV_COCO_NOVEL),
                             ("ov_coco_vocabulary_48_base.txt", OV_COCO_BASE)):
            path = os.path.join(ann_dir, fname)
            with open(path, "w") as f:
                f.write("\n".join(sorted(names, key=id_of.__getitem__)) + "\n")
            written[fname] = path
    return written


def _coco_ids(names):
    id_of = {c["name"]: c["id"] for c in COCO_CATEGORIES if c["isthing"]}
    return sorted(id_of[n] for n in names), {v: k for k, v in id_of.items()}


def register_ov_coco(root=None):
    """Register every name of ``OV_COCO_DATASETS`` with evaluator_type ``"ov_coco"``.

    Class names and the id mapping are set now (COCO id order, as load_coco_json will set
    them), because open-vocabulary heads are built before any data is loaded.
    """
    root = _dataset_root(root)
    for name, (fname, image_dir, which) in OV_COCO_DATASETS.items():
        if name in DatasetCatalog.list():
            continue
        json_file = os.path.abspath(os.path.join(root, "coco", "annotations", fname))
        image_root = os.path.abspath(os.path.join(root, "coco", image_dir))
        DatasetCatalog.register(name, lambda j=json_file, r=image_root, n=name: load_coco_json(
            j, r, n, extra_annotation_keys=EXTRA_ANNOTATION_KEYS))
        ids, name_of = _coco_ids(OV_COCO_BASE if which == "base" else OV_COCO_BASE + OV_COCO_NOVEL)
        MetadataCatalog.get(name).set(
            json_file=json_file, image_root=image_root, evaluator_type="ov_coco",
            thing_classes=[name_of[i] for i in ids],
            thing_dataset_id_to_contiguous_id={i: k for k, i in enumerate(ids)},
            ov_base_classes=list(OV_COCO_BASE), ov_novel_classes=list(OV_COCO_NOVEL))


register_ov_coco()
