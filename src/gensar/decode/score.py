"""Exact identifier log-probabilities of given candidate items, in one pass per decoding step.

Beam search finds the items a model likes; a ranker that fuses several retrievers also needs the
model's score of items the beam did not propose. For each example and each of its candidates this
computes ``log p(identifier | input, prefix)``, the very score constrained beam search gives a
finished hypothesis (the forced prefix, e.g. ``<rec>``, is not part of it).

The encoder runs once per example; every candidate of an example becomes a decoder row that
shares the example's cross-attention keys/values (``T5BeamDecoder``), fed its whole identifier in
one pass (teacher forcing: the tokens are known), and no [rows, vocabulary] logits are formed.
The full-vocabulary normalizers are most of the cost on a large vocabulary; given the trie node of
each prefix (``prefix_nodes``), candidates that share a prefix share its normalizer (on a 7.5K-token
vocabulary ~300 candidate positions hold ~210 distinct prefixes), all computed in one call (on
few rows the projection is read from memory once per call), and the first step's is the beam's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import T5ForConditionalGeneration

from gensar.decode.beam import prefix_matrix
from gensar.decode.lm_head import OutputHead
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
    prefix_nodes: torch.Tensor | None = None,
) -> torch.Tensor:
    """float32 [B, C]: ``log p(codes[candidates[b, c]] | input_b, prefix)``; -inf where the candidate is -1.

    input_ids, attention_mask: [B, S]. codes: [N, D] int64 identifier tokens of every item,
    right-padded with -1 (identifiers may differ in length). candidates: [B, C] item rows, -1 pads.
    ``decoder``: the inputs already encoded (see ``constrained_beam_search``); not run again.
    ``prefix_nodes``: [N, D] the trie node after each token of each item (``IdTrie.item_paths``):
    rows of one prefix then share one normalizer (the same numbers, computed once).
    """
    batch, width = candidates.shape
    if input_ids.shape[0] != batch:
        raise GensarError(f"{input_ids.shape[0]} inputs for {batch} candidate rows")
    if width == 0 or batch == 0:
        return torch.zeros(batch, width)
    if codes.dim() != 2 or int(candidates.max()) >= codes.shape[0]:
        raise GensarError(f"candidates must index the {codes.shape[0]} rows of codes [N, D]")
    if prefix_nodes is not None and tuple(prefix_nodes.shape) != tuple(codes.shape):
        raise GensarError(f"prefix_nodes must be [N, D] like codes {tuple(codes.shape)}, got {tuple(prefix_nodes.shape)}")
    valid = candidates >= 0  # [B, C]
    tokens = codes[candidates.clamp(min=0).reshape(-1)].reshape(batch, width, -1)  # [B, C, D]
    tokens = tokens.masked_fill(~valid[..., None], -1)
    with torch.inference_mode():
        decoder = T5BeamDecoder(model, input_ids, attention_mask) if decoder is None else decoder.fresh()
        head = decoder.head
        prefix = prefix_matrix(prefix_tokens, batch)
        hidden = decoder.start(prefix)  # [B, d]
        first = tokens[:, :, 0]  # [B, C]
        score = head.logits_at(hidden, first).float() - decoder.start_logsumexp(prefix).float()[:, None]  # [B, C]
        score = score.masked_fill(first < 0, 0.0)
        if tokens.shape[2] > 1:
            # One decoder row per (example, candidate), example-major as the decoder wants, fed the
            # identifier's tokens but the last in one pass; position t predicts token t + 1.
            origin = torch.arange(batch, device=input_ids.device).repeat_interleave(width)  # [B*C]
            fed = tokens[:, :, :-1].reshape(batch * width, -1)  # [B*C, D-1]
            hidden = decoder.extend(origin, fed).reshape(-1, decoder.model.config.d_model)  # [B*C*(D-1), d]
            nxt = tokens[:, :, 1:].reshape(-1, 1)  # [B*C*(D-1), 1]
            step_logp = head.logits_at(hidden, nxt).float()[:, 0] - _normalizers(head, hidden, candidates,
                                                                                 prefix_nodes)
            score = score + step_logp.masked_fill(nxt[:, 0] < 0, 0.0).view(batch, width, -1).sum(dim=2)
    return score.masked_fill(~valid, NEG_INF).cpu()


def _normalizers(head: OutputHead, hidden: torch.Tensor, candidates: torch.Tensor,
                 prefix_nodes: torch.Tensor | None) -> torch.Tensor:
    """logsumexp of each row of ``hidden`` [B*C*(D-1), d] (row (b, c, t): candidate c of example b
    after its first t + 1 tokens), once per distinct (example, prefix node) when the nodes are known."""
    if prefix_nodes is None:
        return head.logsumexp(hidden).float()
    batch, width = candidates.shape
    nodes = prefix_nodes[candidates.clamp(min=0)][:, :, :-1]  # [B, C, D-1]
    key = torch.arange(batch)[:, None, None] * (int(prefix_nodes.max()) + 1) + nodes
    # a pad candidate is fed pad tokens, and an item outside the trie has no node: rows of their own
    alone = (candidates < 0)[:, :, None] | (nodes < 0)
    key = torch.where(alone, -1 - torch.arange(key.numel()).view(key.shape), key)
    used, where = torch.unique(key.reshape(-1), return_inverse=True)
    first = torch.full((len(used),), len(where), dtype=torch.long).scatter_reduce(
        0, where, torch.arange(len(where)), reduce="amin")  # one row of each distinct prefix
    return head.logsumexp(hidden[first]).float()[where]
