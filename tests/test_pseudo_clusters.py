"""k-means of the boundary prior against a plain reference, and the seeding rules."""
import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from zip_d2.pseudo.clusters import kmeans, semantic_init, short_side_size, uniform_init


def _reference_kmeans(x, c, iters):
    """Textbook Lloyd iterations, one point and one cluster at a time."""
    x, c = x.astype(np.float64), c.astype(np.float64).copy()
    labels = np.zeros(len(x), int)
    for _ in range(iters):
        for i, p in enumerate(x):
            labels[i] = int(np.argmin([np.sum((p - q) ** 2) for q in c]))
        new = c.copy()
        for j in range(len(c)):
            members = x[labels == j]
            if len(members):
                new[j] = members.mean(axis=0)
        settled = np.allclose(new, c, rtol=1e-5, atol=1e-8)
        c = new
        if settled:
            break
    return labels, c


def test_kmeans_agrees_with_a_plain_reference_on_small_data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 6)) * 4
    x = np.concatenate([centres[i] + rng.normal(size=(30, 6)) for i in range(4)])
    x = x[rng.permutation(len(x))].astype(np.float32)
    init = uniform_init(torch.from_numpy(x), 5)
    labels, cents = kmeans(torch.from_numpy(x), max_iters=50, init=init)
    ref_labels, ref_cents = _reference_kmeans(x, init.numpy(), 50)
    np.testing.assert_array_equal(labels.numpy(), ref_labels)
    np.testing.assert_allclose(cents.numpy(), ref_cents, rtol=1e-5, atol=1e-5)


def test_uniform_init_takes_evenly_spaced_pixels_from_first_to_last():
    x = torch.arange(20.0)[:, None]
    assert uniform_init(x, 4).flatten().tolist() == [0.0, 6.0, 13.0, 19.0]
    assert len(uniform_init(torch.arange(3.0)[:, None], 5)) == 3


def test_an_empty_cluster_keeps_its_centroid():
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    far = torch.tensor([100.0, -100.0])
    init = torch.stack([x[0], x[2], far])
    labels, cents = kmeans(x, max_iters=10, init=init)
    assert labels.tolist() == [0, 0, 1, 1]
    assert torch.equal(cents[2], far)
    assert torch.allclose(cents[:2], torch.tensor([[0.05, 0.0], [5.05, 5.0]]))


def test_kmeans_is_deterministic_and_stops_when_centroids_settle():
    torch.manual_seed(0)
    x = torch.randn(500, 8)
    a = kmeans(x, k=6, max_iters=100)
    b = kmeans(x, k=6, max_iters=100)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # A converged run is a fixed point: one more iteration from its centroids changes nothing.
    again = kmeans(x, max_iters=1, init=a[1])
    assert torch.equal(again[0], a[0])


def test_semantic_init_seeds_at_activation_peaks_and_chooses_k_within_bounds():
    h, w = 12, 16
    act = torch.zeros(1, h, w)
    act[0, 3, 3] = 1.0
    act[0, 8, 12] = 0.8
    x = torch.arange(h * w, dtype=torch.float32)[:, None]  # feature = raster index
    seeds = semantic_init(x, act, (h, w), min_k=4, max_k=10, background_seeds=3)
    assert 4 <= len(seeds) <= 10
    assert seeds[0].item() == 3 * w + 3 and seeds[1].item() == 8 * w + 12
    assert len(set(seeds.flatten().tolist())) == len(seeds)
    few = semantic_init(x, act, (h, w), min_k=2, max_k=3, background_seeds=1)
    assert len(few) == 3


def test_round16_short_side_rule_keeps_aspect_at_stride_16():
    assert short_side_size((480, 640), 2048, "round16") == (2048, 2736)
    assert short_side_size((480, 640), 2048, "round16")[1] // 16 == 171


class _RecordProducts(TorchFunctionMode):
    """Records dtype and finiteness of every matrix product run inside the ``with`` block."""

    def __init__(self):
        super().__init__()
        self.products = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "__name__", "") in ("matmul", "__matmul__", "mm"):
            self.products.append((out.dtype, bool(torch.isfinite(out).all())))
        return out


def _large_relu_clusters(n_per=100, dim=256, seed=0):
    """Four well-separated clusters of non-negative features with norms ~450, like ReLU
    outputs of a deep trunk; in blocks, so the raster-uniform seeds take one per cluster."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.relu(torch.randn(4, dim, generator=g)) * 40
    x = centres.repeat_interleave(n_per, dim=0) + torch.randn(4 * n_per, dim, generator=g) * 3
    return torch.relu(x), torch.arange(4).repeat_interleave(n_per)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_kmeans_cannot_overflow_and_gives_the_fp32_partition(dtype):
    x, truth = _large_relu_clusters()
    # The data is hostile: multiplied as they are in float16, the products overflow.
    assert torch.isinf(x.half() @ x.half()[::100].T).any()
    ref_labels, ref_cents = kmeans(x, k=4, max_iters=20)
    np.testing.assert_array_equal(ref_labels.numpy(), truth.numpy())
    with _RecordProducts() as rec:
        labels, cents = kmeans(x.to(dtype), k=4, max_iters=20)
    # The products really ran in half precision (what CUDA runs), and none overflowed.
    assert rec.products and all(d == dtype and finite for d, finite in rec.products)
    np.testing.assert_array_equal(labels.numpy(), ref_labels.numpy())
    # Centroids come back in the features' units (the scaling is undone).
    torch.testing.assert_close(cents, ref_cents, rtol=1e-2, atol=0.5)


def test_kmeans_refuses_features_that_already_overflowed():
    x = torch.ones(10, 4, dtype=torch.float16)
    x[3, 1] = float("inf")
    with pytest.raises(ValueError, match="inf or nan"):
        kmeans(x, k=2)
