"""Semantic clues: CLIP Surgery against a direct computation, activation maps, class rules."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zip_d2.models import create_clip
from zip_d2.pseudo.clues import (
    classify,
    dense_activation,
    interpolate_pos_embed,
    select_classes,
    semantic_regions,
    surgery_tokens,
)


@pytest.fixture(scope="module")
def tiny_vit():
    torch.manual_seed(0)
    return create_clip("zip-tiny-vit", random_weights=True).model


def _heads_attention(q, k, v, heads):
    """softmax(q k^T / sqrt(d)) v, one head at a time."""
    L, D = q.shape
    d = D // heads
    out = []
    for h in range(heads):
        s = slice(h * d, (h + 1) * d)
        a = torch.softmax(q[:, s] @ k[:, s].T / math.sqrt(d), dim=-1)
        out.append(a @ v[:, s])
    return torch.cat(out, dim=1)


def _direct_surgery(visual, image, depth):
    """CLIP Surgery's formula (Li et al., 2023, as the Zip authors' demo uses it) written out
    for one image, block by block."""
    p = visual.patch_size[0]
    gh, gw = image.shape[-2] // p, image.shape[-1] // p
    patches = image[0].unfold(1, p, p).unfold(2, p, p).permute(1, 2, 0, 3, 4).reshape(gh * gw, -1)
    x = patches @ visual.conv1.weight.reshape(visual.conv1.weight.shape[0], -1).T
    x = torch.cat([visual.class_embedding[None], x])
    pos = visual.positional_embedding
    g0 = visual.grid_size
    grid = F.interpolate(
        pos[1:].T.reshape(1, -1, *g0), size=(gh, gw), mode="bilinear", align_corners=False
    )
    x = x + torch.cat([pos[:1], grid[0].reshape(pos.shape[1], -1).T])
    x = visual.ln_pre(x)
    blocks = visual.transformer.resblocks
    start = len(blocks) - depth
    x_new = None
    for i, blk in enumerate(blocks):
        if i == start:
            x_new = x.clone()
        W, b = blk.attn.in_proj_weight, blk.attn.in_proj_bias
        h = blk.ln_1(x)
        q, k, v = (h @ W.T + b).chunk(3, dim=1)
        out_w, out_b = blk.attn.out_proj.weight, blk.attn.out_proj.bias
        if i >= start:
            x_new = x_new + _heads_attention(v, v, v, blk.attn.num_heads) @ out_w.T + out_b
        x = x + _heads_attention(q, k, v, blk.attn.num_heads) @ out_w.T + out_b
        x = x + blk.mlp(blk.ln_2(x))
    tokens = torch.cat([x[:1], x_new[1:]])
    return (visual.ln_post(tokens) @ visual.proj)[None]


@pytest.mark.parametrize("size_hw, depth", [((64, 64), 2), ((48, 80), 3)])
def test_surgery_path_equals_direct_computation_of_the_formula(tiny_vit, size_hw, depth):
    torch.manual_seed(1)
    img = torch.randn(1, 3, *size_hw)
    with torch.no_grad():
        got = surgery_tokens(tiny_vit.visual, img, depth)
        want = _direct_surgery(tiny_vit.visual, img, depth)
    assert got.shape == (1, 1 + (size_hw[0] // 16) * (size_hw[1] // 16), 32)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_surgery_class_token_is_clips_ordinary_image_embedding(tiny_vit):
    torch.manual_seed(2)
    img = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(surgery_tokens(tiny_vit.visual, img, 2)[:, 0],
                                   tiny_vit.encode_image(img), rtol=1e-4, atol=1e-5)


def test_vit_b16_at_512_gives_a_32x32_patch_map():
    torch.manual_seed(0)
    visual = create_clip("ViT-B-16", random_weights=True).model.visual
    with torch.no_grad():
        tokens = surgery_tokens(visual, torch.randn(1, 3, 512, 512), depth=6)
    assert tokens.shape == (1, 1 + 32 * 32, 512)
    act = dense_activation(
        tokens, F.normalize(torch.randn(3, 512), dim=1), torch.zeros(512), (32, 32)
    )
    assert act.shape == (3, 32, 32)


def test_positional_embedding_interpolation_keeps_class_token_and_native_grid():
    pos = torch.randn(1 + 4 * 4, 8)
    assert torch.equal(interpolate_pos_embed(pos, (4, 4), (4, 4)), pos)
    out = interpolate_pos_embed(pos, (4, 4), (8, 6))
    assert out.shape == (1 + 48, 8) and torch.equal(out[0], pos[0])
    const = torch.ones(17, 8)
    torch.testing.assert_close(interpolate_pos_embed(const, (4, 4), (7, 3)), torch.ones(22, 8))


def test_activation_removes_the_empty_prompt_and_min_max_normalises_per_class():
    torch.manual_seed(0)
    tokens = torch.randn(1, 1 + 12, 5)
    text = F.normalize(torch.randn(2, 5), dim=1)
    empty = torch.randn(5)
    act = dense_activation(tokens, text, empty, (3, 4), norm_dim=2)
    sim = F.normalize(tokens[0, 1:], dim=1) @ (text - empty).T
    want = (sim - sim.min(0).values) / (sim.max(0).values - sim.min(0).values)
    torch.testing.assert_close(act, want.T.reshape(2, 3, 4))
    # The demo's default normalises over tokens instead, which changes the maps.
    demo = dense_activation(tokens, text, empty, (3, 4), norm_dim=1)
    assert not torch.allclose(demo, act)
    assert act.amin(dim=(1, 2)).tolist() == [0.0, 0.0] and torch.allclose(
        act.amax(dim=(1, 2)), torch.ones(2)
    )


def test_demo_normalisation_over_tokens_includes_the_class_token():
    # Two channels, a 2x2 patch grid. Over the patches alone both channels have norm 3, so
    # patches A=(3,0) and B=(0,3) would score alike; the class token (4,0) raises channel 0's
    # norm to 5 (as in the demo, which normalises the class token with the patches), so A
    # scores 3/5 of B. The class token itself is not part of the map.
    tokens = torch.tensor([[[4.0, 0.0], [3.0, 0.0], [0.0, 3.0], [0.0, 0.0], [0.0, 0.0]]])
    text = F.normalize(torch.ones(1, 2), dim=1)
    act = dense_activation(tokens, text, torch.zeros(2), (2, 2), norm_dim=1)
    torch.testing.assert_close(act, torch.tensor([[[0.6, 1.0], [0.0, 0.0]]]))
    # Per-token normalisation ignores the class token: A and B are both unit vectors at 45 degrees.
    per_token = dense_activation(tokens, text, torch.zeros(2), (2, 2), norm_dim=2)
    torch.testing.assert_close(per_token, torch.tensor([[[1.0, 1.0], [0.0, 0.0]]]))


def test_class_rule_applies_min_prob_then_top_k():
    probs = torch.tensor([0.05, 0.4, 0.25, 0.3])
    assert select_classes(probs, topk=2, min_prob=0.1).tolist() == [1, 3]
    assert select_classes(probs, topk=0, min_prob=0.26).tolist() == [1, 3]
    assert select_classes(probs, topk=5, min_prob=0.5).tolist() == []


def test_classification_is_a_softmax_over_scaled_cosines():
    text = torch.eye(3)
    p = classify(torch.tensor([2.0, 0.0, 0.0]), text, logit_scale=100.0)
    assert p.argmax().item() == 0 and abs(p.sum().item() - 1) < 1e-6


def test_semantic_region_is_activation_above_ratio_times_mean():
    act = torch.zeros(1, 4, 4)
    act[0, :2, :2] = 1.0  # mean 0.25 -> threshold 0.175
    up, region = semantic_regions(act, (4, 4), (4, 4), ratio=0.7)
    np.testing.assert_array_equal(region[0], act[0].numpy() > 0.175)
    up, region = semantic_regions(act, (8, 12), (2, 3), ratio=0.7)
    assert up.shape == (1, 8, 12) and region.shape == (1, 2, 3)
    assert region[0, 0, 0] and not region[0, 1, 2]
