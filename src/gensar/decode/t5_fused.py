"""T5's weights regrouped for decoding with few ops: the encoder and one decoder block as plain
tensor functions.

Decoding a request runs a handful of tiny matrix products per layer and step (30 beam rows), so
its cost is the number of ops and module calls, not arithmetic (benchmarks/README, "Where a
generative request's time goes"). Here each attention's projections that read the same input run
as one matrix product (self-attention q, k and v; cross-attention k and v; a gated feed-forward's
two input projections), layer norms are ``F.rms_norm`` (T5's layer norm is RMS normalization with
a weight and no bias), and nothing goes through ``nn.Module.__call__``. The numbers are those of
``T5ForConditionalGeneration.forward`` up to float rounding; tests check them against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import T5ForConditionalGeneration
from transformers.activations import ACT2FN

__all__ = ["CrossBlock", "DecoderBlock", "EncoderBlock", "FeedForward", "SelfAttention", "T5Weights"]


@dataclass(frozen=True)
class FeedForward:
    """T5's feed-forward sublayer with its residual: ``x + wo(act(wi(norm(x))))``, or gated
    ``x + wo(act(wi_0 h) * wi_1 h)`` with ``wi_0`` and ``wi_1`` stacked in ``wi``."""

    norm: torch.Tensor  # [d]
    wi: torch.Tensor  # [d_ff, d], gated [2 * d_ff, d]
    wo: torch.Tensor  # [d, d_ff]
    act: Callable[[torch.Tensor], torch.Tensor]
    gated: bool
    eps: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h = F.linear(F.rms_norm(x, self.norm.shape, self.norm, self.eps), self.wi)
        if self.gated:
            gate, linear = h.chunk(2, dim=-1)
            h = self.act(gate) * linear
        else:
            h = self.act(h)
        return x + F.linear(h, self.wo)


@dataclass(frozen=True)
class SelfAttention:
    norm: torch.Tensor  # [d]
    qkv: torch.Tensor  # [3 * inner, d]: q, k and v in one projection
    out: torch.Tensor  # [d, inner]


@dataclass(frozen=True)
class CrossBlock:
    norm: torch.Tensor  # [d]
    q: torch.Tensor  # [inner, d]
    kv: torch.Tensor  # [2 * inner, d]: k and v of the encoder output in one projection
    out: torch.Tensor  # [d, inner]


@dataclass(frozen=True)
class DecoderBlock:
    self_attn: SelfAttention
    cross: CrossBlock
    ff: FeedForward


@dataclass(frozen=True)
class EncoderBlock:
    self_attn: SelfAttention
    ff: FeedForward


@dataclass(frozen=True)
class T5Weights:
    """A model's weights as the fused functions read them (views or small concatenations of its
    parameters, made at construction: a model that trains on is read afresh by the next decoder)."""

    heads: int
    d_kv: int
    eps: float
    embed: torch.Tensor  # [V, d], shared by encoder and decoder
    encoder: tuple[EncoderBlock, ...]
    encoder_final_norm: torch.Tensor
    encoder_position: torch.nn.Module  # the first encoder block's attention: its relative position bias
    decoder: tuple[DecoderBlock, ...]
    decoder_final_norm: torch.Tensor
    decoder_position: torch.nn.Module  # the first decoder block's self-attention: its (causal) bias

    @staticmethod
    def of(model: T5ForConditionalGeneration) -> T5Weights:
        """Call under ``torch.no_grad()``: the concatenations are copies, not part of a graph."""
        cfg = model.config
        eps = float(cfg.layer_norm_epsilon)
        act = ACT2FN[cfg.dense_act_fn]
        gated = bool(cfg.is_gated_act)

        def self_attn(layer) -> SelfAttention:
            a = layer.SelfAttention
            return SelfAttention(layer.layer_norm.weight, torch.cat([a.q.weight, a.k.weight, a.v.weight]), a.o.weight)

        def ff(layer) -> FeedForward:
            dense = layer.DenseReluDense
            wi = torch.cat([dense.wi_0.weight, dense.wi_1.weight]) if gated else dense.wi.weight
            return FeedForward(layer.layer_norm.weight, wi, dense.wo.weight, act, gated, eps)

        encoder = tuple(EncoderBlock(self_attn(b.layer[0]), ff(b.layer[-1])) for b in model.encoder.block)
        decoder = []
        for b in model.decoder.block:
            c = b.layer[1].EncDecAttention
            cross = CrossBlock(b.layer[1].layer_norm.weight, c.q.weight, torch.cat([c.k.weight, c.v.weight]), c.o.weight)
            decoder.append(DecoderBlock(self_attn(b.layer[0]), cross, ff(b.layer[-1])))
        first = model.encoder.block[0].layer[0].SelfAttention
        return T5Weights(
            heads=first.n_heads,
            d_kv=first.key_value_proj_dim,
            eps=eps,
            embed=model.shared.weight,
            encoder=encoder,
            encoder_final_norm=model.encoder.final_layer_norm.weight,
            encoder_position=first,
            decoder=tuple(decoder),
            decoder_final_norm=model.decoder.final_layer_norm.weight,
            decoder_position=model.decoder.block[0].layer[0].SelfAttention,
        )

    def norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, weight.shape, weight, self.eps)

    def heads_of(self, x: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
        """[N, L, parts * H * dk] -> ``parts`` tensors [N, H, L, dk]."""
        n, length = x.shape[0], x.shape[1]
        return x.view(n, length, parts, self.heads, self.d_kv).permute(2, 0, 3, 1, 4).unbind(0)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """[N, H, L, dk] -> [N, L, H * dk]."""
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], self.heads * self.d_kv)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden state [B, S, d] (``model.get_encoder()(...).last_hidden_state``)."""
        x = F.embedding(input_ids, self.embed)
        length = input_ids.shape[1]
        bias = self.encoder_position.compute_bias(length, length, device=x.device)  # [1, H, S, S]
        keep = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, S]
        bias = bias.masked_fill(~keep, torch.finfo(x.dtype).min)  # [B, H, S, S]
        for block in self.encoder:
            a = block.self_attn
            q, k, v = self.heads_of(F.linear(self.norm(x, a.norm), a.qkv), 3)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)  # T5: no 1/sqrt(dk)
            x = block.ff(x + F.linear(self.merge(out), a.out))
        return self.norm(x, self.encoder_final_norm)

    def causal_bias(self, length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The decoder's self-attention bias of every query position < ``length`` to every key
        position, later keys masked: [1, H, L, L]."""
        bias = self.decoder_position.compute_bias(length, length, device=device).to(dtype)
        pos = torch.arange(length, device=device)
        return bias.masked_fill(pos[None, :] > pos[:, None], torch.finfo(dtype).min)
