"""Vector quantizer and residual stack: lookups, gradients, k-means, Sinkhorn."""

from __future__ import annotations

import pytest
import torch

from gensar.ids.quantizer import ResidualQuantizer, VectorQuantizer, kmeans, sinkhorn, squared_distances


def _clusters(centers: torch.Tensor, per: int, noise: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pts = centers.repeat_interleave(per, 0)
    return pts + noise * torch.randn(pts.shape, generator=g)


def test_squared_distances_matches_formula():
    x = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    e = torch.tensor([[1.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    # hand-computed ||x - e||^2
    assert torch.allclose(squared_distances(x, e), torch.tensor([[1.0, 25.0, 0.0], [4.0, 8.0, 5.0]]))


def test_vector_quantizer_picks_nearest_code_and_lookup_reproduces_it():
    vq = VectorQuantizer(2, 3, kmeans_init=False).eval()
    vq.codebook.data = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.tensor([[1.0, 1.0], [9.0, -1.0], [2.0, 7.0], [6.0, 0.0]])
    out = vq(x)
    assert out.codes.tolist() == [0, 1, 2, 1]
    assert torch.equal(out.quantized, vq.lookup(out.codes))
    # commitment = mean over rows of ||x - e||^2 = (2 + 2 + 13 + 16) / 4
    assert out.commitment_loss.item() == pytest.approx(33 / 4)
    assert out.codebook_loss.item() == pytest.approx(33 / 4)


def test_residual_round_trip_codes_lookup_and_residual_sum():
    torch.manual_seed(0)
    rq = ResidualQuantizer(8, 3, 16, kmeans_iters=5)
    x = torch.randn(64, 8)
    rq.train()
    rq(x)  # k-means init of every level
    rq.eval()
    out = rq(x)
    assert out.codes.shape == (64, 3) and out.codes.dtype == torch.int64
    per_level = [rq.levels[i].lookup(out.codes[:, i]) for i in range(3)]
    # codes -> codebook lookup reproduces the quantized output ...
    assert torch.allclose(rq.lookup(out.codes), out.quantized, atol=1e-5)
    # ... which is the sum of the levels' code vectors, and input = quantized + residual
    assert torch.allclose(sum(per_level), out.quantized, atol=1e-5)
    assert torch.allclose(out.quantized + out.residual, x, atol=1e-5)
    # each level is the nearest code to what the previous levels left over
    residual = x
    for i in range(3):
        assert torch.equal(squared_distances(residual, rq.levels[i].codebook).argmin(1), out.codes[:, i])
        residual = residual - per_level[i]
    # more levels quantize more finely
    err = [(x - sum(per_level[: i + 1])).pow(2).sum(1).mean().item() for i in range(3)]
    assert err[0] > err[1] > err[2]


def test_straight_through_gradient_reaches_the_input():
    rq = ResidualQuantizer(4, 2, 8, kmeans_iters=3)
    x = torch.randn(32, 4)
    rq.train()
    rq(x)
    x = x.clone().requires_grad_(True)
    out = rq(x)
    w = torch.randn(4)
    (out.quantized @ w).sum().backward()
    # d(quantized)/dx is the identity under the straight-through estimator
    assert torch.allclose(x.grad, w.expand(32, 4))
    # the codebooks get no gradient from downstream, only from the codebook loss
    assert all(vq.codebook.grad is None for vq in rq.levels)
    out = rq(x)
    out.codebook_loss.backward()
    assert all(vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0 for vq in rq.levels)


def test_kmeans_puts_centroids_on_clusters():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = _clusters(centers, 50, 0.3)
    got = kmeans(x, 4, iters=10, generator=torch.Generator().manual_seed(1))
    # every true center has a centroid within noise of it, and vice versa
    d = squared_distances(centers, got).sqrt()
    assert d.min(1).values.max() < 0.2
    assert d.min(0).values.max() < 0.2


def test_kmeans_with_fewer_points_than_codes_keeps_codes_near_data():
    x = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-2.0, 3.0]])
    got = kmeans(x, 8, iters=3, generator=torch.Generator().manual_seed(0))
    assert got.shape == (8, 2)
    assert squared_distances(got, x).min(1).values.max() < 1e-2


def test_quantizer_kmeans_init_happens_once_on_first_training_batch():
    centers = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [0.0, -5.0]])
    x = _clusters(centers, 30, 0.1)
    vq = VectorQuantizer(2, 3, kmeans_iters=10)
    assert not bool(vq.initialized)
    vq.train()
    vq(x)
    assert bool(vq.initialized)
    assert squared_distances(centers, vq.codebook.data).min(1).values.max() < 0.05
    before = vq.codebook.data.clone()
    vq(x + 100.0)  # a second batch does not re-initialize
    assert torch.equal(before, vq.codebook.data)


def test_sinkhorn_balances_a_skewed_assignment():
    g = torch.Generator().manual_seed(0)
    codebook = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # every point is nearest to code 0
    x = 0.2 * torch.rand(64, 2, generator=g)
    cost = squared_distances(x, codebook)
    assert torch.bincount(cost.argmin(1), minlength=4).tolist() == [64, 0, 0, 0]
    plan = sinkhorn(cost, epsilon=0.05, iters=100)
    assert torch.allclose(plan.sum(1), torch.ones(64), atol=1e-4)
    assert torch.allclose(plan.sum(0), torch.full((4,), 16.0), atol=0.5)
    counts = torch.bincount(plan.argmax(1), minlength=4)
    assert counts.min() >= 12 and counts.max() <= 20


def test_vector_quantizer_uses_sinkhorn_only_while_training():
    vq = VectorQuantizer(2, 4, kmeans_init=False, use_sinkhorn=True, sinkhorn_epsilon=0.05, sinkhorn_iters=100)
    vq.codebook.data = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    x = 0.2 * torch.rand(64, 2, generator=torch.Generator().manual_seed(0))
    assert torch.bincount(vq.train()(x).codes, minlength=4).min() >= 12
    assert vq.eval()(x).codes.tolist() == [0] * 64


def test_dead_code_reset_moves_unused_codes_onto_recent_inputs():
    vq = VectorQuantizer(2, 3, kmeans_init=False).train()
    vq.codebook.data = torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]])  # code 2 is never chosen
    x = torch.tensor([[0.1, 0.0], [0.9, 1.0], [1.1, 0.9], [0.0, 0.2]])
    vq(x)
    assert vq.usage.tolist() == [2, 2, 0]
    assert vq.reset_dead_codes(torch.Generator().manual_seed(0)) == 1
    assert squared_distances(vq.codebook.data[2:], x).min().item() == 0.0  # now sits on an input
    assert torch.equal(vq.codebook.data[:2], torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    assert vq.usage.tolist() == [0, 0, 0]
    vq.eval()(x + 50.0)  # evaluation does not count usage
    assert vq.usage.tolist() == [0, 0, 0]
