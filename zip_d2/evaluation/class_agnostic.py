"""Class-agnostic COCO box/mask AP: every category merged into one "object" category.

Annotation-free methods are first judged on whether they find and delineate objects at all,
whatever their label (CutLER's protocol); this evaluator reports exactly that, beside the
class-aware numbers, from the same predictions.
"""
from detectron2.data.catalog import Metadata
from detectron2.evaluation import COCOEvaluator

from .coco_eval import AGNOSTIC_CATEGORY, coco_from_dict, to_class_agnostic


class ClassAgnosticCOCOEvaluator(COCOEvaluator):
    """COCOEvaluator whose ground truth and predictions all carry one category.

    Its results are keyed ``bbox_agnostic`` / ``segm_agnostic`` so it can run beside a
    class-aware COCOEvaluator in one DatasetEvaluators. Predictions are not written to disk
    (the class-aware evaluator already writes them).
    """

    def __init__(self, dataset_name, tasks=None, distributed=True, output_dir=None, **kwargs):
        super().__init__(dataset_name, tasks=tasks, distributed=distributed, output_dir=None,
                         **kwargs)
        self._coco_api = coco_from_dict(to_class_agnostic(self._coco_api.dataset))
        self._metadata = Metadata(name=f"{dataset_name} (class-agnostic)",
                                  thing_classes=[AGNOSTIC_CATEGORY["name"]],
                                  thing_dataset_id_to_contiguous_id={AGNOSTIC_CATEGORY["id"]: 0})

    def process(self, inputs, outputs):
        n_before = len(self._predictions)
        super().process(inputs, outputs)
        for prediction in self._predictions[n_before:]:
            for instance in prediction.get("instances", []):
                instance["category_id"] = 0  # contiguous id of "object"

    def evaluate(self, img_ids=None):
        results = super().evaluate(img_ids)
        if results is None:  # non-main process in distributed evaluation
            return results
        return {f"{task}_agnostic": metrics for task, metrics in results.items()}
