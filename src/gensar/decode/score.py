"""Exact identifier log-probabilities of given candidate items, in one pass per decoding step.

Beam search finds the items a model likes; a ranker that fuses several retrievers also needs the
model's score of items the beam did not propose. For each example and each of its candidates this
computes ``log p(identifier | input, prefix)``, the very score constrained beam search gives a
finished hypothesis (the forced prefix, e.g. ``<rec>``, is not part of it).

The encoder runs once per example; every candidate of an example becomes a decoder row that
shares the example's cross-attention keys/values (``T5BeamDecoder``), fed its whole identifier in
one pass (teacher forcing: the tokens are known), and no [rows, vocabulary] logits are formed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import T5ForConditionalGeneration

from gensar.decode.beam import prefix_matrix
from gensar.decode.t5_decoder import T5BeamDecoder
from gensar.errors import GensarError

NEG_INF = float("-inf")


def identifier_log_probs(
    model: T5ForConditionalGeneration,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    codes: torch.Tensor,
    candidates: torch.Tensor,
    prefix_tokens: torch.Tensor | Sequence[int],
    decoder: T5BeamDecoder | None = None,
) -> torch.Tensor:
    """float32 [B, C]: ``log p(codes[candidates[b, c]] | input_b, prefix)``; -inf where the candidate is -1.

    input_ids, attention_mask: [B, S]. codes: [N, D] int64 identifier tokens of every item,
    right-padded with -1 (identifiers may differ in length). candidates: [B, C] item rows, -1 pads.
    ``decoder``: the inputs already encoded (see ``constrained_beam_search``); not run again.
    """
    batch, width = candidates.shape
    if input_ids.shape[0] != batch:
        raise GensarError(f"{input_ids.shape[0]} inputs for {batch} candidate rows")
    if width == 0 or batch == 0:
        return torch.zeros(batch, width)
    if codes.dim() != 2 or int(candidates.max()) >= codes.shape[0]:
        raise GensarError(f"candidates must index the {codes.shape[0]} rows of codes [N, D]")
    valid = candidates >= 0  # [B, C]
    tokens = codes[candidates.clamp(min=0).reshape(-1)].reshape(batch, width, -1)  # [B, C, D]
    tokens = tokens.masked_fill(~valid[..., None], -1)
    with torch.inference_mode():
        decoder = T5BeamDecoder(model, input_ids, attention_mask) if decoder is None else decoder.fresh()
        head = decoder.head
        hidden = decoder.start(prefix_matrix(prefix_tokens, batch))  # [B, d]
        first = tokens[:, :, 0]  # [B, C]
        score = head.logits_at(hidden, first).float() - head.logsumexp(hidden).float()[:, None]  # [B, C]
        score = score.masked_fill(first < 0, 0.0)
        if tokens.shape[2] > 1:
            # One decoder row per (example, candidate), example-major as the decoder wants, fed the
            # identifier's tokens but the last in one pass; position t predicts token t + 1.
            origin = torch.arange(batch, device=input_ids.device).repeat_interleave(width)  # [B*C]
            fed = tokens[:, :, :-1].reshape(batch * width, -1)  # [B*C, D-1]
            hidden = decoder.extend(origin, fed).reshape(-1, decoder.model.config.d_model)  # [B*C*(D-1), d]
            nxt = tokens[:, :, 1:].reshape(-1, 1)  # [B*C*(D-1), 1]
            step_logp = head.logits_at(hidden, nxt).float()[:, 0] - head.logsumexp(hidden).float()
            score = score + step_logp.masked_fill(nxt[:, 0] < 0, 0.0).view(batch, width, -1).sum(dim=2)
    return score.masked_fill(~valid, NEG_INF).cpu()
