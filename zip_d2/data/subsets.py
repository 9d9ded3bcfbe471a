"""Label-efficient finetuning: seeded random image subsets of a COCO dataset, and their schedules.

Protocol (CutLER's label-efficient COCO experiments, after Unbiased Teacher): a subset holds
``p`` % of the training *images*, chosen uniformly at random, with *all* their annotations.

How a subset is drawn, exactly (so anyone can rebuild it):
1. sort the images by ``id``;
2. draw one permutation with ``numpy.random.default_rng(seed).permutation(N)``;
3. take the first ``n = max(1, floor(N * p / 100 + 0.5))`` images (rounding half up) of that
   permutation, and write them
   back in id order with all their annotations (crowd ones included).

The same seed uses the same permutation for every percentage, so subsets are nested
(1 % ⊂ 2 % ⊂ 5 % ⊂ 10 %): a larger label budget only adds images. Different seeds give
independent draws (CutLER/Unbiased Teacher report the mean over several seeds).

Schedules (``scaled_schedule``): the subset is trained for as many *epochs* as the full-data
schedule gives the full dataset, i.e. iterations and LR steps scale linearly with the label
fraction, with a floor so tiny subsets still get a usable schedule.
"""
import os

import numpy as np

__all__ = ["LABEL_PERCENTS", "make_label_subset", "subset_size", "scaled_schedule",
           "subset_file_name", "percent_text"]

# The label budgets of CutLER's label-efficient table.
LABEL_PERCENTS = (1, 2, 5, 10)


def subset_size(num_images, percent):
    """Number of images in a ``percent`` % subset of ``num_images`` (at least one)."""
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    if num_images < 1:
        raise ValueError("the dataset has no images")
    return max(1, int(np.floor(num_images * percent / 100.0 + 0.5)))


def percent_text(percent):
    """A percentage written exactly (10 -> "10", 0.5 -> "0.5", 10.0000001 -> "10.0000001")."""
    text = repr(float(percent))
    return text[:-2] if text.endswith(".0") else text


def subset_file_name(coco_json, percent, seed):
    """``<stem>_<p>pct_seed<seed>.json`` for a subset of ``coco_json``; ``p`` is
    :func:`percent_text`, so two different percentages never share a file."""
    stem = os.path.splitext(os.path.basename(coco_json))[0]
    return f"{stem}_{percent_text(percent)}pct_seed{seed}.json"


def make_label_subset(coco, percent, seed, source=""):
    """The ``percent`` % subset of a COCO instances dict drawn with ``seed`` (see module doc).

    Returns:
        dict: COCO data with the chosen images (id order), their annotations, all categories,
        and ``info.label_subset`` = {percent, seed, num_images, source_num_images, source}.
    """
    images = sorted(coco["images"], key=lambda img: img["id"])
    n = subset_size(len(images), percent)
    order = np.random.default_rng(seed).permutation(len(images))
    chosen = {images[i]["id"] for i in order[:n]}
    info = dict(coco.get("info", {}))
    info["label_subset"] = {"percent": percent, "seed": seed, "num_images": n,
                            "source_num_images": len(images), "source": source,
                            "rule": "zip_d2.data.subsets: first n of default_rng(seed)."
                                    "permutation(N) over images sorted by id"}
    return {"info": info, "licenses": coco.get("licenses", []),
            "images": [img for img in images if img["id"] in chosen],
            "annotations": [a for a in coco["annotations"] if a["image_id"] in chosen],
            "categories": coco["categories"]}


def scaled_schedule(percent, full_max_iter, full_steps, min_iter):
    """(max_iter, steps) for a ``percent`` % subset: the full schedule's epochs, floored.

    ``full_steps`` keep their relative positions; with the floor, steps are scaled too.
    """
    max_iter = max(min_iter, int(round(full_max_iter * percent / 100.0)))
    steps = tuple(int(round(s * max_iter / full_max_iter)) for s in full_steps)
    return max_iter, steps
