"""The pseudo-label generation job: image lists in, validated COCO JSON out.

Stages, one module each: ``images`` (list and decode inputs, bad files become skip reasons),
``coco_output`` (detections to strict COCO records), ``shards`` (per-rank append-only shard
files, resume, merge), ``job`` (the run loop), ``writer`` (its record-writing thread),
``distributed`` (torchrun ranks), ``visualize`` (looking at the result). Scoring the result
against ground truth is ``zip_d2.evaluation.pseudo_labels``.
"""
