"""T5's decoder stepped one token per beam, for beam search.

``transformers``' ``generate()`` copies the encoder output and the cross-attention keys/values once
per beam (64 examples x 30 beams = 1,920 copies) and reads every copy at every step. Beams never
leave their example, so here the cross-attention keys/values stay at one copy per example and the
``beams x new tokens`` queries of an example attend to them together. The self-attention cache is
a plain [rows, heads, t, d_kv] tensor per layer, reordered to follow the surviving beams.

The encoder and the step run on the model's own weights regrouped for few ops (``T5Weights``: fused
projections, ``F.rms_norm``, no module calls), so any ``T5ForConditionalGeneration`` (T5, T5 v1.1
gated-GELU, any depth) gives the numbers of its ``forward`` up to float rounding; tests check this
against ``model(...)``. The causal relative position bias is built once per decoder for the lengths
it reaches, not at every step.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from transformers import T5ForConditionalGeneration

from gensar.decode.lm_head import OutputHead
from gensar.decode.t5_fused import T5Weights
from gensar.errors import GensarError


class T5BeamDecoder:
    """Encoder run once; decoder fed ``[R, T]`` new tokens per call, rows grouped by example.

    Rows are example-major: after ``advance`` with R = B * k rows, rows ``b*k .. b*k+k-1`` belong to
    example ``b``. ``start``/``advance`` return the final hidden state of each row's last token,
    scaled as ``T5ForConditionalGeneration`` scales it before ``lm_head``; ``head`` projects it.
    """

    def __init__(
        self, model: T5ForConditionalGeneration, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        weights: T5Weights | None = None,
    ):
        """``weights``: ``T5Weights.of(model)`` made once by a caller that holds a frozen model
        (serving), instead of regrouping the weights for every batch (~0.5 ms)."""
        if model.training:
            raise GensarError("decoding needs the model in eval mode (call model.eval())")
        cfg = model.config
        self.model = model
        with torch.no_grad():
            self.weights = T5Weights.of(model) if weights is None else weights
        self.heads, self.d_kv = self.weights.heads, self.weights.d_kv
        self.pad_token_id = int(cfg.pad_token_id)
        self.start_token_id = int(cfg.decoder_start_token_id)
        # transformers 5 names the flag scale_decoder_outputs; 4.x scales when embeddings are tied.
        scaled = getattr(cfg, "scale_decoder_outputs", None)
        self.scale = cfg.d_model**-0.5 if (cfg.tie_word_embeddings if scaled is None else scaled) else 1.0
        self.head = OutputHead(model.lm_head.weight, model.lm_head.bias)

        with torch.no_grad():  # a caller outside inference mode must not record a graph of the encoder
            enc = self.weights.encode(input_ids, attention_mask)  # [B, S, d]
            self.cross_k, self.cross_v = [], []  # per layer [B, H, S, d_kv]
            for block in self.weights.decoder:
                k, v = self.weights.heads_of(F.linear(enc, block.cross.kv), 2)
                self.cross_k.append(k)
                self.cross_v.append(v)
        self.batch = enc.shape[0]
        self.dtype = enc.dtype
        self.min_value = torch.finfo(enc.dtype).min
        keep = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, S]
        self.device = enc.device
        self.cross_bias = torch.zeros(keep.shape, dtype=enc.dtype, device=self.device).masked_fill(
            ~keep, self.min_value
        )
        self.self_k: list[torch.Tensor] = []  # per layer [R, H, t, d_kv]
        self.self_v: list[torch.Tensor] = []
        self.past = 0  # decoder tokens already cached
        # The causal position bias of the lengths reached so far [1, H, L, L], shared with every
        # ``fresh`` copy (a one-element list so that a copy's growth is seen by all).
        with torch.no_grad():
            self._bias_table: list[torch.Tensor] = [self.weights.causal_bias(8, self.device, self.dtype)]
        # The state after ``start`` per prefix, shared with every ``fresh`` copy: scoring after a beam
        # search starts from the very state the beam started from (cached tensors are never written
        # in place, only replaced).
        self._started: dict[tuple, tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]] = {}
        self._started_lse: dict[tuple, torch.Tensor] = {}  # and its full-vocabulary normalizer [B]

    def fresh(self) -> T5BeamDecoder:
        """A decoder over the same encoded inputs with no decoder tokens fed yet: a second decode
        of the same examples (scoring after a beam search) without running the encoder again."""
        new = copy.copy(self)
        new.self_k, new.self_v, new.past = [], [], 0
        return new

    def start(self, prefix_tokens: torch.Tensor) -> torch.Tensor:
        """Feed ``[start] + prefix_tokens`` [B, P]; hidden state for the next token [B, d]."""
        if self.past:
            raise GensarError("start() on a decoder already fed tokens (use fresh())")
        key = (tuple(prefix_tokens.shape), tuple(prefix_tokens.reshape(-1).tolist()))
        if key in self._started:
            hidden, self_k, self_v = self._started[key]
            self.self_k, self.self_v, self.past = list(self_k), list(self_v), prefix_tokens.shape[1] + 1
            return hidden
        start = torch.full((prefix_tokens.shape[0], 1), self.start_token_id, device=self.device)
        hidden = self._forward(torch.cat([start, prefix_tokens.to(self.device, torch.long)], dim=1))
        self._started[key] = (hidden, list(self.self_k), list(self.self_v))
        return hidden

    def start_logsumexp(self, prefix_tokens: torch.Tensor) -> torch.Tensor:
        """The log-normalizer over the whole vocabulary of the state after ``start(prefix_tokens)``,
        [B]; computed once per prefix and shared with every ``fresh`` copy (on a large vocabulary
        one row costs as much as ~50 rows in a batch: the projection is read from memory)."""
        key = (tuple(prefix_tokens.shape), tuple(prefix_tokens.reshape(-1).tolist()))
        if key not in self._started_lse:
            hidden = self._started[key][0] if key in self._started else self.fresh().start(prefix_tokens)
            self._started_lse[key] = self.head.logsumexp(hidden)
        return self._started_lse[key]

    def advance(self, origin: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Row r continues row ``origin[r]`` (same example) with ``tokens[r]`` (-1 = pad); [R, d]."""
        self.self_k = [k.index_select(0, origin) for k in self.self_k]
        self.self_v = [v.index_select(0, origin) for v in self.self_v]
        feed = torch.where(tokens >= 0, tokens, self.pad_token_id).view(-1, 1)  # [R, 1]
        return self._forward(feed)

    def extend(self, origin: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Row r continues row ``origin[r]`` with the ``T`` tokens ``tokens[r]`` [R, T] at once (-1 =
        pad); the hidden state after each of them, [R, T, d]. Scoring known continuations this way
        is one decoder pass instead of T, the same numbers as T ``advance`` calls."""
        self.self_k = [k.index_select(0, origin) for k in self.self_k]
        self.self_v = [v.index_select(0, origin) for v in self.self_v]
        return self._hidden(torch.where(tokens >= 0, tokens, self.pad_token_id))

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self._hidden(ids)[:, -1, :]  # [R, d]

    def _hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed ``ids`` [R, T]; the scaled final hidden state at each new position, [R, T, d]."""
        rows, new = ids.shape
        if rows % self.batch:
            raise GensarError(f"{rows} decoder rows for {self.batch} examples")
        w = self.weights
        x = F.embedding(ids, w.embed)  # [R, T, d]
        bias = self._self_bias(new)  # [1, H, T, past+T]
        first_step = not self.self_k
        for i, block in enumerate(w.decoder):
            # Self-attention over this row's cached tokens and the new ones.
            sa = block.self_attn
            q, k, v = w.heads_of(F.linear(w.norm(x, sa.norm), sa.qkv), 3)  # [R, H, T, dk] each
            if not first_step:
                k = torch.cat([self.self_k[i], k], dim=2)  # [R, H, past+T, dk]
                v = torch.cat([self.self_v[i], v], dim=2)
                self.self_k[i], self.self_v[i] = k, v
            else:
                self.self_k.append(k)
                self.self_v.append(v)
            # T5 does not scale q.k by 1/sqrt(d_kv)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)  # [R, H, T, dk]
            x = x + F.linear(w.merge(out), sa.out)
            # Cross-attention: the beams of one example share its encoder keys/values.
            ca = block.cross
            q = F.linear(w.norm(x, ca.norm), ca.q).view(self.batch, rows // self.batch * new, self.heads, self.d_kv)
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2), self.cross_k[i], self.cross_v[i], attn_mask=self.cross_bias, scale=1.0
            )  # [B, H, k*T, dk]
            x = x + F.linear(out.transpose(1, 2).reshape(rows, new, self.heads * self.d_kv), ca.out)
            x = block.ff(x)  # layer norm, (gated) feed-forward, residual
        self.past += new
        return w.norm(x, w.decoder_final_norm) * self.scale  # [R, T, d]

    def _self_bias(self, new: int) -> torch.Tensor:
        """Causal relative position bias, ``new`` queries after ``past`` cached ones: [1, H, T, past+T]."""
        end = self.past + new
        if end > self._bias_table[0].shape[-1]:
            grown = max(end, 2 * self._bias_table[0].shape[-1])
            self._bias_table[0] = self.weights.causal_bias(grown, self.device, self.dtype)
        return self._bias_table[0][:, :, self.past : end, :end]
