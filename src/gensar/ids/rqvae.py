"""The identifier RQ-VAE: shared and specific codebooks over semantic and collaborative embeddings.

GenSAR (Shi et al. 2025, sec. 3.2). MLP encoders map the semantic embedding ``v_s`` (text
encoder) and the collaborative embedding ``v_c`` (SASRec) to ``z_s``, ``z_c`` of ``specific_dim``
each. ``L_m`` *shared* residual levels quantize the concatenation ``[z_s; z_c]``; the residual
they leave is split back into its semantic and collaborative halves, and ``L_n`` *specific*
levels quantize each half. So ``[z_s; z_c] ~ q_shared + [q_sem; q_col]``, and MLP decoders
reconstruct ``v_s`` from the semantic half of that sum and ``v_c`` from the collaborative half.

    semantic ID      = shared codes + semantic-specific codes
    collaborative ID = shared codes + collaborative-specific codes

Variants ``semantic`` and ``collaborative`` are the TIGER-style baselines: one encoder, one
residual stack of ``single_levels`` levels, one decoder, over a single embedding.

Loss = reconstruction of both embeddings + sum over levels of (codebook + beta * commitment).
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gensar.config import from_dict, require, to_dict
from gensar.errors import ConfigError, GensarError
from gensar.ids.quantizer import ResidualOutput, ResidualQuantizer, VectorQuantizer
from gensar.io import atomic_write_bytes

Variant = Literal["joint", "semantic", "collaborative"]
VARIANTS: tuple[str, ...] = ("joint", "semantic", "collaborative")
CHECKPOINT_VERSION = 1
MAX_LEVELS = 20  # level letters a..t; "x" is reserved for the disambiguation token


@dataclass(frozen=True)
class RQVAEConfig:
    variant: Variant = "joint"
    codebook_size: int = 256  # codes per codebook (every level)
    shared_levels: int = 2  # L_m: levels over [z_s; z_c] (joint)
    specific_levels: int = 2  # L_n: levels over each half of the shared residual (joint)
    single_levels: int = 3  # levels of the semantic / collaborative variants
    specific_dim: int = 32  # size of z_s and of z_c
    shared_dim: int = 64  # size of [z_s; z_c]; must be 2 * specific_dim
    hidden_dims: tuple[int, ...] = (256, 128)  # encoder MLP hidden sizes (decoders mirror them)
    normalize_inputs: bool = True  # L2-normalize v_s and v_c so both reconstructions weigh alike
    beta: float = 0.25  # commitment weight
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 200
    batch_size: int = 512
    kmeans_init: bool = True  # k-means on the residuals of the whole catalog before training
    kmeans_iters: int = 20
    dead_code_reset: bool = True  # after each epoch, move codes no item chose onto recent residuals
    sinkhorn: Literal["off", "last", "all"] = "off"  # balanced assignment while training
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iters: int = 50
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> None:
        require(self.variant in VARIANTS, "variant", f"must be one of {list(VARIANTS)}")
        require(self.codebook_size >= 2, "codebook_size", f"must be >= 2, got {self.codebook_size}")
        require(self.shared_levels >= 1, "shared_levels", f"must be >= 1, got {self.shared_levels}")
        require(self.specific_levels >= 1, "specific_levels", f"must be >= 1, got {self.specific_levels}")
        require(self.single_levels >= 1, "single_levels", f"must be >= 1, got {self.single_levels}")
        require(self.shared_levels + self.specific_levels <= MAX_LEVELS, "specific_levels",
                f"shared_levels + specific_levels must be <= {MAX_LEVELS}")
        require(self.single_levels <= MAX_LEVELS, "single_levels", f"must be <= {MAX_LEVELS}")
        require(self.specific_dim >= 1, "specific_dim", f"must be >= 1, got {self.specific_dim}")
        require(self.shared_dim == 2 * self.specific_dim, "shared_dim",
                f"must equal 2 * specific_dim = {2 * self.specific_dim} (the shared levels quantize "
                f"the concatenation [z_s; z_c]), got {self.shared_dim}")
        require(all(h >= 1 for h in self.hidden_dims), "hidden_dims", "every hidden size must be >= 1")
        require(self.beta >= 0, "beta", f"must be >= 0, got {self.beta}")
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.epochs >= 0, "epochs", f"must be >= 0, got {self.epochs}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.kmeans_iters >= 0, "kmeans_iters", f"must be >= 0, got {self.kmeans_iters}")
        require(self.sinkhorn_epsilon > 0, "sinkhorn_epsilon", f"must be > 0, got {self.sinkhorn_epsilon}")
        require(self.sinkhorn_iters >= 1, "sinkhorn_iters", f"must be >= 1, got {self.sinkhorn_iters}")
        require(self.device == "cpu" or self.device.startswith("cuda"), "device",
                f"must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@dataclass
class RQVAECodes:
    """Codes of a batch of items (numpy, on the host). Absent parts have zero columns.

    joint:         shared [N, L_m], semantic [N, L_n], collaborative [N, L_n]
    semantic:      shared [N, 0],   semantic [N, single_levels], collaborative [N, 0]
    collaborative: shared [N, 0],   semantic [N, 0],             collaborative [N, single_levels]
    ``*_last_distances`` [N, K] are each item's squared distances to every code of the last
    semantic / collaborative level ([N, 0] when absent); collision resolution uses them.
    """

    shared: np.ndarray
    semantic: np.ndarray
    collaborative: np.ndarray
    semantic_last_distances: np.ndarray
    collaborative_last_distances: np.ndarray


@dataclass
class RQVAEOutput:
    # Reconstructions exist for the embeddings the variant uses (None for the unused one).
    semantic_recon: torch.Tensor | None  # [B, D_s]
    collaborative_recon: torch.Tensor | None  # [B, D_c]
    recon_semantic: torch.Tensor  # scalar, ||v_s - v_s_hat||^2 (0 when unused)
    recon_collaborative: torch.Tensor  # scalar
    codebook_loss: torch.Tensor  # scalar, summed over all levels
    commitment_loss: torch.Tensor  # scalar, summed over all levels
    loss: torch.Tensor  # recon + codebook + beta * commitment
    shared: ResidualOutput | None
    semantic: ResidualOutput | None
    collaborative: ResidualOutput | None


class RQVAE(nn.Module):
    def __init__(self, cfg: RQVAEConfig, semantic_dim: int, collaborative_dim: int) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.semantic_dim = semantic_dim
        self.collaborative_dim = collaborative_dim
        d, hidden = cfg.specific_dim, list(cfg.hidden_dims)

        def stack(dim: int, levels: int) -> ResidualQuantizer:
            sinkhorn_levels = {"off": (), "last": (levels - 1,), "all": tuple(range(levels))}[cfg.sinkhorn]
            return ResidualQuantizer(
                dim, levels, cfg.codebook_size, kmeans_init=cfg.kmeans_init, kmeans_iters=cfg.kmeans_iters,
                sinkhorn_levels=sinkhorn_levels, sinkhorn_epsilon=cfg.sinkhorn_epsilon,
                sinkhorn_iters=cfg.sinkhorn_iters,
            )

        uses_sem = cfg.variant in ("joint", "semantic")
        uses_col = cfg.variant in ("joint", "collaborative")
        specific_levels = cfg.specific_levels if cfg.variant == "joint" else cfg.single_levels
        self.semantic_encoder = _mlp([semantic_dim, *hidden, d]) if uses_sem else None
        self.semantic_decoder = _mlp([d, *reversed(hidden), semantic_dim]) if uses_sem else None
        self.collaborative_encoder = _mlp([collaborative_dim, *hidden, d]) if uses_col else None
        self.collaborative_decoder = _mlp([d, *reversed(hidden), collaborative_dim]) if uses_col else None
        self.shared_quantizer = stack(cfg.shared_dim, cfg.shared_levels) if cfg.variant == "joint" else None
        self.semantic_quantizer = stack(d, specific_levels) if uses_sem else None
        self.collaborative_quantizer = stack(d, specific_levels) if uses_col else None

    # ---- forward ---------------------------------------------------------------------------
    def _inputs(self, semantic: torch.Tensor, collaborative: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.normalize_inputs:
            semantic, collaborative = F.normalize(semantic, dim=-1), F.normalize(collaborative, dim=-1)
        return semantic, collaborative

    def forward(self, semantic: torch.Tensor, collaborative: torch.Tensor) -> RQVAEOutput:
        """``semantic`` [B, D_s], ``collaborative`` [B, D_c] (an unused one may be any [B, *])."""
        v_s, v_c = self._inputs(semantic, collaborative)
        zero = v_s.new_zeros(())
        sh = sem = col = None
        sem_recon = col_recon = None
        if self.cfg.variant == "joint":
            d = self.cfg.specific_dim
            z = torch.cat([self.semantic_encoder(v_s), self.collaborative_encoder(v_c)], 1)  # [B, 2d]
            sh = self.shared_quantizer(z)
            sem = self.semantic_quantizer(sh.residual[:, :d])  # [B, d] semantic half of the residual
            col = self.collaborative_quantizer(sh.residual[:, d:])  # [B, d]
            q = sh.quantized.detach() + torch.cat([sem.quantized, col.quantized], 1).detach()  # [B, 2d]
            z_hat = z + (q - z).detach()  # straight-through, once for all levels
            sem_recon = self.semantic_decoder(z_hat[:, :d])  # [B, D_s]
            col_recon = self.collaborative_decoder(z_hat[:, d:])  # [B, D_c]
            levels = [sh, sem, col]
        elif self.cfg.variant == "semantic":
            sem = self.semantic_quantizer(self.semantic_encoder(v_s))
            sem_recon = self.semantic_decoder(sem.quantized)  # [B, D_s]
            levels = [sem]
        else:
            col = self.collaborative_quantizer(self.collaborative_encoder(v_c))
            col_recon = self.collaborative_decoder(col.quantized)  # [B, D_c]
            levels = [col]
        recon_s = (sem_recon - v_s).pow(2).sum(1).mean() if sem_recon is not None else zero
        recon_c = (col_recon - v_c).pow(2).sum(1).mean() if col_recon is not None else zero
        codebook = sum((o.codebook_loss for o in levels), zero)
        commitment = sum((o.commitment_loss for o in levels), zero)
        loss = recon_s + recon_c + codebook + self.cfg.beta * commitment
        return RQVAEOutput(sem_recon, col_recon, recon_s, recon_c, codebook, commitment, loss, sh, sem, col)

    def vector_quantizers(self) -> list[VectorQuantizer]:
        """Every codebook level of every stack."""
        stacks = (self.shared_quantizer, self.semantic_quantizer, self.collaborative_quantizer)
        return [vq for rq in stacks if rq is not None for vq in rq.levels]

    # ---- inference -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def encode(self, semantic: np.ndarray, collaborative: np.ndarray, batch_size: int = 4096) -> RQVAECodes:
        """Codes (nearest code at every level, no Sinkhorn) of all rows, in eval mode."""
        was_training = self.training
        self.eval()
        n = len(semantic)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("sh", "sem", "col", "sem_d", "col_d")}
        try:
            for start in range(0, n, batch_size):
                out = self(_tensor(semantic[start : start + batch_size], self.device),
                           _tensor(collaborative[start : start + batch_size], self.device))
                b = len(semantic[start : start + batch_size])
                for key, res in (("sh", out.shared), ("sem", out.semantic), ("col", out.collaborative)):
                    parts[key].append(res.codes.cpu().numpy() if res is not None else np.zeros((b, 0), np.int64))
                for key, res in (("sem_d", out.semantic), ("col_d", out.collaborative)):
                    parts[key].append(res.last_distances.cpu().numpy() if res is not None
                                      else np.zeros((b, 0), np.float32))
        finally:
            self.train(was_training)

        def cat(key: str, dtype: type) -> np.ndarray:
            return np.concatenate(parts[key]).astype(dtype)

        return RQVAECodes(cat("sh", np.int64), cat("sem", np.int64), cat("col", np.int64),
                          cat("sem_d", np.float32), cat("col_d", np.float32))

    @torch.no_grad()
    def reconstruction_cosine(self, semantic: np.ndarray, collaborative: np.ndarray) -> dict[str, float]:
        """Mean cosine similarity between each (normalized) input and its reconstruction."""
        was_training = self.training
        self.eval()
        try:
            s, c = _tensor(semantic, self.device), _tensor(collaborative, self.device)
            out = self(s, c)
            v_s, v_c = self._inputs(s, c)
            result = {}
            if out.semantic_recon is not None:
                result["semantic"] = float(F.cosine_similarity(out.semantic_recon, v_s, dim=1).mean())
            if out.collaborative_recon is not None:
                result["collaborative"] = float(F.cosine_similarity(out.collaborative_recon, v_c, dim=1).mean())
            return result
        finally:
            self.train(was_training)


def _tensor(x: np.ndarray, device: torch.device | str) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=device)


# ---- training ----------------------------------------------------------------------------------
@dataclass
class TrainResult:
    model: RQVAE
    history: list[dict[str, float]] = field(default_factory=list)  # per-epoch mean losses
    seconds: float = 0.0

    @property
    def final_losses(self) -> dict[str, float]:
        return dict(self.history[-1]) if self.history else {}


def check_embeddings(semantic: np.ndarray, collaborative: np.ndarray) -> None:
    """Both [N, D], same N >= 1, finite: else a GensarError naming the bad one."""
    for name, x in (("semantic", semantic), ("collaborative", collaborative)):
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise GensarError(f"{name} embeddings must be a non-empty [items, dim] matrix, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise GensarError(f"{name} embeddings contain NaN or infinite values")
    if semantic.shape[0] != collaborative.shape[0]:
        raise GensarError(f"semantic embeddings have {semantic.shape[0]} rows but collaborative embeddings "
                          f"have {collaborative.shape[0]}")


def train_rqvae(semantic: np.ndarray, collaborative: np.ndarray, cfg: RQVAEConfig,
                progress: bool = False) -> TrainResult:
    """Fit an RQ-VAE on item embeddings ``semantic`` [N, D_s] and ``collaborative`` [N, D_c]."""
    check_embeddings(semantic, collaborative)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'rqvae.device': CUDA is not available on this machine")
    model = RQVAE(cfg, semantic.shape[1], collaborative.shape[1]).to(device)
    s_all, c_all = _tensor(semantic, device), _tensor(collaborative, device)
    n = len(s_all)
    start = time.perf_counter()
    model.train()
    with torch.no_grad():
        model(s_all, c_all)  # first pass: k-means-initializes every level on the whole catalog
    for vq in model.vector_quantizers():
        vq.usage.zero_()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, float]] = []
    bar = tqdm(range(cfg.epochs), desc="rq-vae", unit="epoch", disable=not progress)
    for epoch in bar:
        order = torch.randperm(n, generator=gen).to(device)
        sums = dict.fromkeys(
            ("loss", "recon_semantic", "recon_collaborative", "codebook", "commitment", "dead_codes"), 0.0)
        for i in range(0, n, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            out = model(s_all[idx], c_all[idx])
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            w = len(idx) / n
            sums["loss"] += w * float(out.loss.detach())
            sums["recon_semantic"] += w * float(out.recon_semantic.detach())
            sums["recon_collaborative"] += w * float(out.recon_collaborative.detach())
            sums["codebook"] += w * float(out.codebook_loss.detach())
            sums["commitment"] += w * float(out.commitment_loss.detach())
        if cfg.dead_code_reset and epoch < cfg.epochs - 1:
            sums["dead_codes"] = float(sum(vq.reset_dead_codes(gen) for vq in model.vector_quantizers()))
        history.append(sums)
        bar.set_postfix(loss=f"{sums['loss']:.4f}")
    model.eval()
    return TrainResult(model=model, history=history, seconds=time.perf_counter() - start)


# ---- checkpoints ---------------------------------------------------------------------------------
def save_checkpoint(model: RQVAE, path: str | Path) -> None:
    """Atomically write the weights together with everything needed to rebuild the model."""
    ckpt = {
        "version": CHECKPOINT_VERSION,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in to_dict(model.cfg).items()},
        "semantic_dim": model.semantic_dim,
        "collaborative_dim": model.collaborative_dim,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, device: str = "cpu") -> RQVAE:
    path = Path(path)
    if not path.is_file():
        raise GensarError(f"{path}: RQ-VAE checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise GensarError(f"{path}: not a readable RQ-VAE checkpoint ({type(err).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise GensarError(f"{path}: not an RQ-VAE checkpoint of version {CHECKPOINT_VERSION}")
    cfg = dataclasses.replace(from_dict(RQVAEConfig, ckpt["config"], "rqvae"), device=device)
    model = RQVAE(cfg, int(ckpt["semantic_dim"]), int(ckpt["collaborative_dim"]))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise GensarError(f"{path}: weights do not match the stored config: {str(err).splitlines()[0]}") from None
    return model.to(device).eval()
