"""The shard merge as it was before it streamed (zip_d2/labels/shards.py at e01bea5), kept as
the oracle of tests/test_labels_shards.py: the streaming merge must write the same images,
annotations, categories, skipped images and info. Holds every record in memory: small data only.
"""
import json
import os

from zip_d2.labels.coco_output import build_info
from zip_d2.labels.shards import MANIFEST, shard_files


def read_shard(path):
    with open(path, "rb") as f:
        data = f.read()
    end = data.rfind(b"\n")
    records = [json.loads(line) for line in data[:end + 1].splitlines() if line.strip()]
    # since settings format 4 a shard opens with a header line naming its job's settings
    return records[1:] if records and "shard" in records[0] else records


def latest_records(records):
    chosen, duplicates = {}, 0
    for r in records:
        old = chosen.get(r["file_name"])
        if old is None:
            chosen[r["file_name"]] = r
            continue
        duplicates += 1
        newer = r.get("run", 0) > old.get("run", 0)
        better = (r.get("run", 0) == old.get("run", 0) and "skipped" in old
                  and "skipped" not in r)
        if newer or better:
            chosen[r["file_name"]] = r
    return chosen, duplicates


def merge_shards(shard_dir, allow_partial=False, listed=None):
    with open(os.path.join(shard_dir, MANIFEST), encoding="utf-8") as f:
        manifest = json.load(f)
    settings, job = manifest["settings"], manifest["job"]
    records = [r for path in shard_files(shard_dir) for r in read_shard(path)]
    chosen, duplicates = latest_records(records)
    not_listed = 0
    if listed is not None:
        not_listed = sum(1 for name in chosen if name not in listed)
        chosen = {name: r for name, r in chosen.items() if name in listed}
    expected = job.get("num_images")
    if expected is not None and len(chosen) < expected and not allow_partial:
        raise ValueError("unfinished")
    labeled = [r for r in chosen.values() if "skipped" not in r]
    skipped = [r for r in chosen.values() if "skipped" in r]
    if all("id" in r for r in labeled):
        labeled.sort(key=lambda r: r["id"])
    else:
        labeled.sort(key=lambda r: r["file_name"])
        for i, r in enumerate(labeled, 1):
            r["id"] = i
    images, annotations = [], []
    for r in labeled:
        images.append({"id": r["id"], "file_name": r["file_name"], "width": r["width"],
                       "height": r["height"]})
        for ann in r["annotations"]:
            annotations.append({"id": len(annotations) + 1, "image_id": r["id"], **ann})
    skipped_images = sorted(({k: r[k] for k in ("id", "file_name") if k in r}
                             | {"reason": r["skipped"]} for r in skipped),
                            key=lambda s: s["file_name"])
    counts = {"images_listed": expected, "images_labeled": len(images),
              "images_skipped": len(skipped_images), "annotations": len(annotations),
              "duplicate_records_dropped": duplicates,
              "records_of_unlisted_images_dropped": not_listed}
    return {
        "info": build_info(settings, job, counts),
        "images": images,
        "annotations": annotations,
        "categories": settings["categories"],
        "skipped_images": skipped_images,
    }
