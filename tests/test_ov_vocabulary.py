"""Vocabulary resolution and swap for the open-vocabulary RoI heads, built from zip_d2 configs.

Embedding files here are constructed tensors (no CLIP weights exist on test machines), saved in
the real TextEmbeddings format with the metadata that the heads check.
"""
import pytest
import torch

from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model

import zip_d2.modeling  # noqa: F401
from zip_d2.config import get_cfg
from zip_d2.text import TextEmbeddings

SYNTHETIC_OV = "configs/open_vocab/mask_rcnn_R18_ov_synthetic.yaml"
CENTERNET2_OV = "configs/open_vocab/centernet2_R18_ov_synthetic.yaml"
TRAIN_NAMES = ["circle", "square", "triangle", "hexagon"]


def _embeddings_file(tmp_path, names, clip_model="zip-tiny-vit", dim=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(len(names), dim, generator=gen), dim=1)
    path = tmp_path / f"{clip_model}_{len(names)}_{seed}.pth"
    TextEmbeddings(emb, list(names), clip_model, "constructed", "single").save(str(path))
    return str(path)


def _cfg(tmp_path, config=SYNTHETIC_OV, **ov):
    cfg = get_cfg()
    cfg.merge_from_file(config)
    cfg.DATASETS.TRAIN = ()
    cfg.DATASETS.TEST = ()
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.EMBEDDINGS = _embeddings_file(tmp_path, TRAIN_NAMES)
    for k, v in ov.items():
        cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB[k] = v
    return cfg


def test_test_vocabulary_from_config_changes_number_of_scored_classes(tmp_path):
    test_names = ["a", "b", "c", "d", "e", "f", "g"]
    cfg = _cfg(tmp_path, TEST_EMBEDDINGS=_embeddings_file(tmp_path, test_names, seed=1))
    model = build_model(cfg)
    predictor = model.roi_heads.box_predictor
    x = torch.randn(6, predictor.cls_score.linear.in_features)
    model.train()
    assert predictor(x)[0].shape == (6, len(TRAIN_NAMES) + 1)
    model.eval()
    assert predictor(x)[0].shape == (6, len(test_names) + 1)
    assert predictor.test_class_names == test_names
    # Boxes stay class-agnostic whatever the vocabulary.
    assert predictor(x)[1].shape == (6, 4)


def test_set_test_vocabulary_swaps_every_cascade_stage_at_run_time(tmp_path):
    model = build_model(_cfg(tmp_path, config=CENTERNET2_OV))
    model.eval()
    in_dim = model.roi_heads.box_predictor[0].cls_score.linear.in_features
    x = torch.randn(3, in_dim)
    assert all(p(x)[0].shape == (3, 5) for p in model.roi_heads.box_predictor)
    two = TextEmbeddings(torch.randn(2, 32), ["dog", "cat"], "zip-tiny-vit", "constructed")
    model.roi_heads.set_test_vocabulary(two)
    assert all(p(x)[0].shape == (3, 3) for p in model.roi_heads.box_predictor)


def test_test_embeddings_from_another_clip_model_are_an_error(tmp_path):
    other = _embeddings_file(tmp_path, ["a", "b"], clip_model="ViT-B-32")
    with pytest.raises(ValueError, match="ViT-B-32"):
        build_model(_cfg(tmp_path, TEST_EMBEDDINGS=other))


def test_training_embeddings_from_another_clip_model_are_an_error(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.EMBEDDINGS = _embeddings_file(tmp_path, TRAIN_NAMES, "RN50")
    with pytest.raises(ValueError, match="RN50"):
        build_model(cfg)


def test_run_time_swap_to_another_clip_model_is_an_error(tmp_path):
    model = build_model(_cfg(tmp_path))
    foreign = TextEmbeddings(torch.randn(3, 32), ["a", "b", "c"], "ViT-L-14", "openai")
    with pytest.raises(ValueError, match="ViT-L-14"):
        model.roi_heads.set_test_vocabulary(foreign)
    # The failed swap left the previous vocabulary in place.
    assert model.roi_heads.box_predictor.test_class_names == TRAIN_NAMES


def test_training_vocabulary_must_match_num_classes(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        build_model(cfg)


def test_class_specific_masks_are_rejected(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK = False
    with pytest.raises(ValueError, match="CLS_AGNOSTIC_MASK"):
        build_model(cfg)


@pytest.fixture
def computed(monkeypatch):
    """The class-name lists the heads compute text embeddings for (random embeddings)."""
    names_seen = []

    def fake_embeddings(cfg, names):
        names_seen.append(list(names))
        return TextEmbeddings(torch.randn(len(names), 32), list(names), "zip-tiny-vit", "random")

    monkeypatch.setattr("zip_d2.modeling.vocabulary.embeddings_for_names", fake_embeddings)
    return names_seen


def test_dataset_class_names_are_the_default_vocabularies(tmp_path, computed):
    # Train and test datasets with different classes: the test set's names are scored in eval.
    MetadataCatalog.get("ov_vocab_test_train").set(thing_classes=TRAIN_NAMES)
    MetadataCatalog.get("ov_vocab_test_val").set(thing_classes=["star", "cross"])
    cfg = _cfg(tmp_path, EMBEDDINGS="")
    cfg.DATASETS.TRAIN = ("ov_vocab_test_train",)
    cfg.DATASETS.TEST = ("ov_vocab_test_val",)
    predictor = build_model(cfg).roi_heads.box_predictor
    assert predictor.train_class_names == TRAIN_NAMES
    assert predictor.test_class_names == ["star", "cross"]
    assert computed == [TRAIN_NAMES, ["star", "cross"]]


def test_a_model_built_for_inference_scores_the_test_set_without_a_training_vocabulary(
        tmp_path, computed):
    # train_net.py --eval-only builds with DATASETS.TRAIN empty: the test set's names are the
    # vocabulary, computed once, and NUM_CLASSES (a training setting) does not have to match.
    test_names = ["star", "cross", "ring"]
    MetadataCatalog.get("ov_vocab_inference_val").set(thing_classes=test_names)
    cfg = _cfg(tmp_path, EMBEDDINGS="")
    cfg.DATASETS.TEST = ("ov_vocab_inference_val",)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 48
    model = build_model(cfg)
    predictor = model.roi_heads.box_predictor
    assert predictor.test_class_names == test_names and computed == [test_names]
    model.eval()
    x = torch.randn(5, predictor.cls_score.linear.in_features)
    assert predictor(x)[0].shape == (5, len(test_names) + 1)


def test_no_vocabulary_source_is_an_error_for_training_and_for_inference(tmp_path):
    cfg = _cfg(tmp_path, EMBEDDINGS="")
    cfg.DATASETS.TRAIN = ("ov_vocab_never_registered",)
    with pytest.raises(ValueError, match="no training vocabulary"):
        build_model(cfg)
    cfg.DATASETS.TRAIN = ()
    with pytest.raises(ValueError, match="built for inference: no vocabulary"):
        build_model(cfg)


def test_checkpoint_of_a_head_trained_for_another_clip_model_is_refused(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    # Both tiny CLIPs have 32-dim text embeddings: without the check this would load silently.
    trained = build_model(_cfg(tmp_path))
    path = tmp_path / "model.pth"
    torch.save({"model": trained.state_dict()}, path)
    cfg = _cfg(tmp_path, CLIP_MODEL="zip-tiny-rn")
    cfg.MODEL.ROI_BOX_HEAD.OPEN_VOCAB.EMBEDDINGS = _embeddings_file(
        tmp_path, TRAIN_NAMES, "zip-tiny-rn"
    )
    other = build_model(cfg)
    with pytest.raises(ValueError, match="zip-tiny-vit"):
        DetectionCheckpointer(other).load(str(path))
    # The same CLIP model loads.
    DetectionCheckpointer(build_model(_cfg(tmp_path))).load(str(path))


def test_random_weight_embeddings_file_is_refused_outside_test_runs(tmp_path):
    path = str(tmp_path / "random.pth")
    TextEmbeddings(torch.randn(4, 32), TRAIN_NAMES, "zip-tiny-vit", "random",
                   random_weights=True).save(path)
    cfg = _cfg(tmp_path, EMBEDDINGS=path, RANDOM_WEIGHTS=False)
    with pytest.raises(ValueError, match="random-weight"):
        build_model(cfg)


def test_random_weight_embeddings_are_the_same_in_every_process(tmp_path):
    # Training, evaluation and the demo each build the model in their own process: a test-preset
    # (random-weight) CLIP must give them the same text space, whatever the global RNG state.
    from zip_d2.modeling.vocabulary import embeddings_for_names

    cfg = _cfg(tmp_path, RANDOM_WEIGHTS=True, CLIP_MODEL="zip-tiny-vit", TEMPLATES="single")
    torch.manual_seed(1)
    expected_next = torch.rand(1)
    torch.manual_seed(1)
    first = embeddings_for_names(cfg, TRAIN_NAMES).embeddings
    # The caller's RNG stream is left alone.
    assert torch.equal(torch.rand(1), expected_next)
    torch.manual_seed(2)
    second = embeddings_for_names(cfg, TRAIN_NAMES).embeddings
    torch.testing.assert_close(first, second)
