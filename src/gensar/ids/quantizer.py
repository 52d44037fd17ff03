"""Vector quantization layers: one codebook, and a residual stack of codebooks.

``VectorQuantizer`` maps each input vector to its nearest codebook vector (optionally with a
Sinkhorn-balanced assignment while training), initializes its codebook by k-means on the first
batch it sees, and returns the VQ-VAE codebook and commitment losses. ``ResidualQuantizer``
quantizes what the previous level left over, so the sum of the chosen codebook vectors
approximates the input ever more finely (RQ-VAE, Lee et al. 2022; TIGER, Rajput et al. 2023).

Gradients follow VQ-VAE (van den Oord et al. 2017): the codebook learns only from the codebook
loss ``||sg[r] - e||^2``, the encoder from the commitment loss ``||r - sg[e]||^2`` and, through
the straight-through estimator, from everything downstream of the quantized output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


# ---- kernels -------------------------------------------------------------------------------
def squared_distances(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``||x_i - e_k||^2`` for every row and code: [B, D] x [K, D] -> [B, K]."""
    # Expanded form avoids materializing [B, K, D]; clamp the tiny negatives it can produce.
    d = (x * x).sum(1, keepdim=True) - 2.0 * x @ codebook.T + (codebook * codebook).sum(1)[None, :]  # [B, K]
    return d.clamp_min_(0.0)


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding; returns ``k`` centroids [k, D].

    With fewer distinct points than ``k`` the surplus centroids are copies of data points plus a
    little noise, so that every code still starts near the data.
    """
    x = x.detach().float()
    n, dim = x.shape
    if n == 0:
        raise ValueError("k-means needs at least one point")
    # k-means++ seeding: each next centroid is a point drawn with probability ~ D(x)^2.
    centroids = torch.empty(k, dim, dtype=x.dtype, device=x.device)
    first = int(torch.randint(n, (1,), generator=generator, device="cpu"))
    centroids[0] = x[first]
    closest = squared_distances(x, centroids[:1])[:, 0]  # [N]
    for j in range(1, k):
        total = float(closest.sum())
        if total <= 0.0:  # every point is already a centroid: jitter copies of random points
            pick = torch.randint(n, (k - j,), generator=generator, device="cpu").to(x.device)
            scale = x.std().clamp_min(1e-3) * 1e-3
            noise = torch.randn(k - j, dim, generator=generator, device="cpu").to(x.device)
            centroids[j:] = x[pick] + scale * noise
            break
        idx = int(torch.multinomial(closest.cpu() / total, 1, generator=generator))
        centroids[j] = x[idx]
        closest = torch.minimum(closest, squared_distances(x, centroids[j : j + 1])[:, 0])
    for _ in range(iters):
        assign = squared_distances(x, centroids).argmin(1)  # [N]
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)  # [k, D]
        counts = torch.bincount(assign, minlength=k).to(x.dtype)  # [k]
        filled = counts > 0
        # Empty clusters keep their previous centroid rather than collapsing to zero.
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


def sinkhorn(cost: torch.Tensor, epsilon: float, iters: int) -> torch.Tensor:
    """Balanced soft assignment of B rows to K codes (entropic optimal transport).

    Returns a transport plan [B, K] whose rows sum to 1 and whose columns sum to ~B/K, i.e. every
    code receives the same mass; ``argmax`` over codes gives a near-uniform hard assignment.
    ``cost`` is rescaled to [-1, 1] first so that ``epsilon`` does not depend on the data's scale.
    """
    b, k = cost.shape
    lo, hi = cost.min(), cost.max()
    mid = (hi + lo) / 2
    amplitude = (hi - mid).clamp_min(1e-8)
    log_q = -((cost - mid) / amplitude) / epsilon  # [B, K]
    for _ in range(iters):  # alternate projections, in log space for stability
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(k)  # columns: 1/K each
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(b)  # rows: 1/B each
    return (log_q + math.log(b)).exp()  # [B, K], rows sum to 1


# ---- one codebook ----------------------------------------------------------------------------
@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # [B, D] straight-through: value = chosen code vectors, gradient -> input
    codes: torch.Tensor  # [B] int64
    distances: torch.Tensor  # [B, K] squared distance of each input to every code (detached)
    codebook_loss: torch.Tensor  # scalar, ||sg[x] - e||^2 (mean over rows, sum over dims)
    commitment_loss: torch.Tensor  # scalar, ||x - sg[e]||^2


class VectorQuantizer(nn.Module):
    """One codebook of ``codebook_size`` vectors of size ``dim``."""

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        kmeans_init: bool = True,
        kmeans_iters: int = 20,
        use_sinkhorn: bool = False,
        sinkhorn_epsilon: float = 0.05,
        sinkhorn_iters: int = 50,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.codebook_size = codebook_size
        self.kmeans_iters = kmeans_iters
        self.use_sinkhorn = use_sinkhorn
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iters = sinkhorn_iters
        self.codebook = nn.Parameter(torch.empty(codebook_size, dim))  # [K, D]
        nn.init.uniform_(self.codebook, -1.0 / codebook_size, 1.0 / codebook_size)
        # Saved with the weights so that a loaded model never re-initializes.
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        # Training-time bookkeeping for dead-code resets (not part of the checkpoint).
        self.register_buffer("usage", torch.zeros(codebook_size, dtype=torch.long), persistent=False)
        self._last_input: torch.Tensor | None = None

    @torch.no_grad()
    def init_codebook(self, x: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Set the codebook to the k-means centroids of ``x`` [N, D]."""
        self.codebook.data.copy_(kmeans(x, self.codebook_size, self.kmeans_iters, generator))
        self.initialized.fill_(True)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook vectors of ``codes`` [...] -> [..., D]."""
        return F.embedding(codes, self.codebook)

    @torch.no_grad()
    def reset_dead_codes(self, generator: torch.Generator | None = None) -> int:
        """Move every code no training input chose since the last reset onto a random recent input.

        A dead code never receives a codebook-loss gradient, so without this it stays dead and the
        level effectively has fewer codes (more ID collisions). Returns how many codes moved.
        """
        dead = torch.nonzero(self.usage == 0).flatten()  # [n_dead]
        self.usage.zero_()
        if self._last_input is None or len(dead) == 0:
            return 0
        x = self._last_input
        pick = torch.randint(len(x), (len(dead),), generator=generator).to(x.device)
        self.codebook.data[dead] = x[pick]
        return len(dead)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        if self.training and not bool(self.initialized):
            self.init_codebook(x)
        distances = squared_distances(x.detach(), self.codebook.detach())  # [B, K]
        if self.training and self.use_sinkhorn:
            codes = sinkhorn(distances, self.sinkhorn_epsilon, self.sinkhorn_iters).argmax(1)  # [B]
        else:
            codes = distances.argmin(1)  # [B]
        if self.training:
            self.usage += torch.bincount(codes, minlength=self.codebook_size)
            self._last_input = x.detach()
        e = self.lookup(codes)  # [B, D], gradient -> codebook
        codebook_loss = (x.detach() - e).pow(2).sum(1).mean()
        commitment_loss = (x - e.detach()).pow(2).sum(1).mean()
        quantized = x + (e - x).detach()  # straight-through estimator
        return QuantizerOutput(quantized, codes, distances, codebook_loss, commitment_loss)


# ---- residual stack ------------------------------------------------------------------------
@dataclass
class ResidualOutput:
    quantized: torch.Tensor  # [B, D] straight-through sum of the levels' code vectors
    codes: torch.Tensor  # [B, L] int64, level 0 first
    residual: torch.Tensor  # [B, D] what the last level left unquantized (x - sum of code vectors)
    last_distances: torch.Tensor  # [B, K] distances of the last level's input to its codes
    codebook_loss: torch.Tensor  # scalar, summed over levels
    commitment_loss: torch.Tensor  # scalar, summed over levels
    # [B, K] per level, level 0 first: each level's input to its codes (identifiers of items added
    # after training fall back from a taken code to the next nearest, gensar.ids.new_ids)
    distances: tuple[torch.Tensor, ...] = ()


class ResidualQuantizer(nn.Module):
    """``levels`` codebooks applied one after another to the running residual."""

    def __init__(
        self,
        dim: int,
        levels: int,
        codebook_size: int,
        *,
        kmeans_init: bool = True,
        kmeans_iters: int = 20,
        sinkhorn_levels: tuple[int, ...] = (),
        sinkhorn_epsilon: float = 0.05,
        sinkhorn_iters: int = 50,
    ) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError("a residual quantizer needs at least one level")
        self.dim = dim
        self.levels = nn.ModuleList(
            VectorQuantizer(
                dim,
                codebook_size,
                kmeans_init=kmeans_init,
                kmeans_iters=kmeans_iters,
                use_sinkhorn=level in sinkhorn_levels,
                sinkhorn_epsilon=sinkhorn_epsilon,
                sinkhorn_iters=sinkhorn_iters,
            )
            for level in range(levels)
        )

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of the code vectors of every level: [B, L] -> [B, D]."""
        return sum((vq.lookup(codes[:, i]) for i, vq in enumerate(self.levels)), torch.zeros(()))

    def forward(self, x: torch.Tensor) -> ResidualOutput:
        residual = x
        total = torch.zeros_like(x)  # [B, D] sum of code vectors (no gradient: the ST below carries it)
        codes, distances, codebook_loss, commitment_loss = [], [], x.new_zeros(()), x.new_zeros(())
        out: QuantizerOutput | None = None
        for vq in self.levels:
            out = vq(residual)
            e = out.quantized.detach()  # [B, D] the code vectors' values
            total = total + e
            # The next level sees the residual with the code vectors held constant, so its
            # commitment loss pulls the encoder (through ``residual``), not earlier codebooks.
            residual = residual - e
            codes.append(out.codes)
            distances.append(out.distances)
            codebook_loss = codebook_loss + out.codebook_loss
            commitment_loss = commitment_loss + out.commitment_loss
        assert out is not None
        quantized = x + (total - x).detach()  # one straight-through for the whole stack
        return ResidualOutput(
            quantized=quantized,
            codes=torch.stack(codes, 1),  # [B, L]
            residual=residual,
            last_distances=out.distances,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            distances=tuple(distances),
        )
