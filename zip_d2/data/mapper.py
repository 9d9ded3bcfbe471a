"""A DatasetMapper that carries each pseudo-label's ``score`` into the training Instances.

detectron2's ``DatasetMapper`` builds ``Instances`` from the fields it knows (box, class, mask,
keypoints) and drops the rest. Pseudo-label JSONs carry a per-annotation ``score`` (registered
with ``extra_annotation_keys=["score"]``); this mapper keeps it as ``instances.gt_scores``
((N,) float32, 1.0 where an annotation has no score), filtered together with the other fields,
so the RoI heads' score-weighted loss can read it from the matched annotation.
"""
import torch

from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils

__all__ = ["ScoredDatasetMapper"]


class ScoredDatasetMapper(DatasetMapper):
    """``DatasetMapper`` whose Instances also have ``gt_scores``; otherwise identical."""

    def _transform_annotations(self, dataset_dict, transforms, image_shape):
        for anno in dataset_dict["annotations"]:
            if not self.use_instance_mask:
                anno.pop("segmentation", None)
            if not self.use_keypoint:
                anno.pop("keypoints", None)
        annos = [
            utils.transform_instance_annotations(
                obj, transforms, image_shape, keypoint_hflip_indices=self.keypoint_hflip_indices
            )
            for obj in dataset_dict.pop("annotations")
            if obj.get("iscrowd", 0) == 0
        ]
        instances = utils.annotations_to_instances(
            annos, image_shape, mask_format=self.instance_mask_format
        )
        instances.gt_scores = torch.tensor(
            [float(obj.get("score", 1.0)) for obj in annos], dtype=torch.float32
        )
        if self.recompute_boxes:
            instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
        # Filtering indexes every field, so gt_scores stays aligned with the boxes it belongs to.
        dataset_dict["instances"] = utils.filter_empty_instances(instances)
