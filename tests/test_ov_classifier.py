"""The zero-shot classifier's math: temperature * cosine to text embeddings, plus background."""
import pytest
import torch
from torch.nn import functional as F

from zip_d2.modeling import ZeroShotClassifier


def _classifier(embeddings, **kwargs):
    head = ZeroShotClassifier(embeddings.shape[1], embeddings, **kwargs)
    with torch.no_grad():
        # Identity projection, so the expected logits can be written down from x directly.
        head.linear.weight.copy_(torch.eye(embeddings.shape[1]))
        head.linear.bias.zero_()
    return head


def test_logits_are_temperature_times_cosine_and_background_logit_is_zero():
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(5, 8, generator=gen)
    x = torch.randn(7, 8, generator=gen)
    head = _classifier(emb, temperature=50.0)
    logits = head(x)
    expected = 50.0 * F.cosine_similarity(x[:, None, :], emb[None, :, :], dim=2)
    assert logits.shape == (7, 6)
    torch.testing.assert_close(logits[:, :5], expected, rtol=1e-5, atol=1e-4)
    assert torch.all(logits[:, 5] == 0)


def test_temperature_scales_logits_linearly():
    emb = torch.randn(3, 4)
    x = torch.randn(2, 4)
    torch.testing.assert_close(
        _classifier(emb, temperature=10.0)(x) * 5, _classifier(emb, temperature=50.0)(x)
    )


def test_scale_of_features_and_embeddings_does_not_change_logits():
    emb = torch.randn(3, 6)
    x = torch.randn(4, 6)
    head = _classifier(emb)
    scaled = _classifier(emb * 7.0)
    torch.testing.assert_close(head(x), scaled(x * 3.0))
    # Every class logit is bounded by the temperature, whatever the feature norm.
    assert head(x * 1e3)[:, :-1].abs().max() <= 50.0 + 1e-3


def test_bias_shifts_foreground_logits_only():
    emb = torch.randn(3, 4)
    x = torch.randn(2, 4)
    plain = _classifier(emb)(x)
    biased_head = _classifier(emb, use_bias=True)
    with torch.no_grad():
        biased_head.bias.fill_(-2.0)
    biased = biased_head(x)
    torch.testing.assert_close(biased[:, :3], plain[:, :3] - 2.0)
    torch.testing.assert_close(biased[:, 3], plain[:, 3])


def test_learned_background_is_scored_as_cosine_to_a_learned_direction():
    emb = torch.randn(3, 4)
    x = torch.randn(5, 4)
    head = _classifier(emb, background="learned", temperature=20.0)
    with torch.no_grad():
        head.background_embedding.copy_(torch.tensor([0.0, 2.0, 0.0, 0.0]))
    expected = 20.0 * F.normalize(x, dim=1)[:, 1]
    torch.testing.assert_close(head(x)[:, 3], expected)


def test_text_embeddings_are_frozen_and_not_checkpointed():
    emb = torch.randn(3, 4)
    head = _classifier(emb)
    head(torch.randn(2, 4)).sum().backward()
    assert not head.text_embeddings.requires_grad
    # The vocabulary comes from the run's config, so a checkpoint must not pin it.
    assert "text_embeddings" not in head.state_dict()
    assert set(head.state_dict()) == {"linear.weight", "linear.bias"}


def test_swapping_embeddings_changes_number_of_classes_and_rejects_other_dimension():
    head = _classifier(torch.randn(3, 4))
    head.set_embeddings(torch.randn(9, 4))
    assert head(torch.randn(2, 4)).shape == (2, 10)
    with pytest.raises(ValueError, match="match this head"):
        head.set_embeddings(torch.randn(9, 5))


def test_centernet2_score_is_geometric_mean_of_class_and_proposal_scores():
    from detectron2.structures import Instances

    from zip_d2.modeling.open_vocab_fast_rcnn import multiply_proposal_scores

    probs = torch.tensor([[0.64, 0.36], [0.25, 0.75]])
    proposals = Instances((10, 10))
    proposals.objectness_logits = torch.logit(torch.tensor([0.25, 1.0 - 1e-6]))
    (out,) = multiply_proposal_scores([probs], [proposals])
    expected = torch.tensor([[0.4, 0.3], [0.5, 0.75**0.5]])
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
