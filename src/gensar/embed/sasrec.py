"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over a user's item sequence.

Item ids are shifted by one inside the model: index 0 is padding, item ``i`` (row ``i`` of the
item table) is token ``i + 1``. Sequences are left-padded so the newest item is always the last
position. The output layer is tied to the item embedding table, so the trained table doubles as
the collaborative item embedding used by the RQ-VAE.

Positions are counted from a sequence's first real item (not from the padded array's start), and
attention never looks at padding, so an output does not depend on how much padding precedes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from gensar.config import require

Loss = Literal["full_ce", "sampled_ce", "bce"]


@dataclass(frozen=True)
class SASRecConfig:
    # model
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.3
    max_len: int = 50  # newest items kept per input sequence
    # training
    loss: Loss = "full_ce"  # full softmax over all items; "bce" is the original paper's loss
    negatives: int = 100  # sampled_ce: uniform negatives per position (bce always uses one)
    lr: float = 1e-3
    weight_decay: float = 4.0  # AdamW (decoupled, times lr); not on biases/LayerNorm; chosen by measurement
    batch_size: int = 128
    epochs: int = 200
    patience: int = 10  # evaluations without a better valid NDCG@10 before stopping
    eval_every: int = 1  # epochs between validation runs
    seed: int = 0
    # evaluation (the `sasrec` protocol): negatives sampled per example
    eval_negatives: int = 100

    def validate(self) -> None:
        require(self.hidden > 0, "hidden", "must be positive")
        require(self.layers > 0, "layers", "must be positive")
        require(self.heads > 0, "heads", "must be positive")
        require(self.hidden % self.heads == 0, "heads", f"must divide hidden ({self.hidden})")
        require(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")
        require(self.max_len > 0, "max_len", "must be positive")
        require(self.negatives > 0, "negatives", "must be positive")
        require(self.lr > 0, "lr", "must be positive")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(self.batch_size > 0, "batch_size", "must be positive")
        require(self.epochs > 0, "epochs", "must be positive")
        require(self.patience > 0, "patience", "must be positive")
        require(self.eval_every > 0, "eval_every", "must be positive")
        require(self.eval_negatives > 0, "eval_negatives", "must be positive")


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape  # x: [B, T, D]; allowed: [B, 1, T, T] bool, True = may attend
        q, k, v = self.qkv(x).split(d, dim=2)  # 3 x [B, T, D]
        q = q.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # [B, H, T, D/H]
        k = k.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # [B, H, T, D/H]
        v = v.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # [B, H, T, D/H]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )  # [B, H, T, D/H]
        y = y.transpose(1, 2).reshape(b, t, d)  # [B, T, D]
        return self.resid_dropout(self.proj(y))


class Block(nn.Module):
    """Pre-LayerNorm transformer block (attention, then a position-wise feed-forward)."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(cfg.hidden)
        self.attn = CausalSelfAttention(cfg)
        self.ln_ffn = nn.LayerNorm(cfg.hidden)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.hidden, 4 * cfg.hidden),
            nn.GELU(),
            nn.Linear(4 * cfg.hidden, cfg.hidden),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x), allowed)  # [B, T, D]
        x = x + self.ffn(self.ln_ffn(x))  # [B, T, D]
        return x


class SASRec(nn.Module):
    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.n_items = n_items
        self.cfg = cfg
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)  # row 0 = padding
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.layers)])
        self.ln_out = nn.LayerNorm(cfg.hidden)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden state after each position. seq: [B, T] tokens (0 = pad), T <= max_len."""
        t = seq.shape[1]
        if t > self.cfg.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len {self.cfg.max_len}")
        real = seq > 0  # [B, T]
        pos = (real.long().cumsum(dim=1) - 1).clamp(min=0)  # [B, T] 0 at the first real item
        x = self.item_emb(seq) * math.sqrt(self.cfg.hidden) + self.pos_emb(pos)  # [B, T, D]
        x = self.emb_dropout(x) * real.unsqueeze(-1)  # [B, T, D]
        causal = torch.ones(t, t, dtype=torch.bool, device=seq.device).tril()  # [T, T]
        # Attend to real items at or before t; a padding query attends to itself only, so that
        # no row of the softmax is empty (its output is discarded anyway).
        eye = torch.eye(t, dtype=torch.bool, device=seq.device)  # [T, T]
        allowed = (causal & real.unsqueeze(1)) | eye  # [B, T, T]
        allowed = allowed.unsqueeze(1)  # [B, 1, T, T]
        for block in self.blocks:
            x = block(x, allowed) * real.unsqueeze(-1)  # [B, T, D]
        return self.ln_out(x)  # [B, T, D]

    def item_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Scores of every item (tied output layer). h: [..., D] -> [..., n_items]."""
        return h @ self.item_emb.weight[1:].T

    def score(self, seq: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Scores of candidate items after each sequence. seq: [B, T] tokens, candidates: [B, C]
        item indices (0-based, not tokens) -> [B, C]."""
        h = self.forward(seq)[:, -1]  # [B, D] state after the newest item
        cand = self.item_emb(candidates + 1)  # [B, C, D]
        return torch.einsum("bd,bcd->bc", h, cand)  # [B, C]

    def item_embeddings(self) -> torch.Tensor:
        """The learned item table without the padding row: [n_items, D], row i = item i."""
        return self.item_emb.weight[1:].detach()
