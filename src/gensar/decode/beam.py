"""Batched beam search over a T5 encoder-decoder, constrained to the identifiers in an ``IdTrie``.

The encoder runs once per example. The decoder reads the start token and the forced prefix (the
behavior token, e.g. ``<rec>``) in one pass at batch B, picks the first identifier token for
``beam_size`` beams, and from then on runs one token per beam with its key/value cache, which is
reordered to follow the surviving beams (``T5BeamDecoder``; beams share their example's
cross-attention keys/values).

Each step normalises over the *full* vocabulary and only then restricts to the tokens the trie
allows, so a hypothesis's score is its true log-probability ``log p(identifier | input, prefix)``.
Instead of masking a [rows, V] tensor, only the allowed tokens' logits are computed (the trie's
padded child lists) next to a chunked log-normaliser (``OutputHead``): the constraint costs less
than the top-k over the vocabulary that unconstrained search needs.

Identifiers may differ in length: a beam that reaches a leaf keeps competing with its final score
(one "stay" candidate with log-prob 0) while longer identifiers are still being extended.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import T5ForConditionalGeneration

from gensar.decode.lm_head import OutputHead
from gensar.decode.t5_decoder import T5BeamDecoder
from gensar.errors import GensarError
from gensar.ids.trie import IdTrie

NEG_INF = float("-inf")


@dataclass(frozen=True)
class RankedItems:
    """Per example, the best items first. Shapes: B examples, K = top_k, D = trie.max_depth."""

    items: torch.Tensor  # [B, K] int64 item indices; -1 where fewer than K valid items were found
    scores: torch.Tensor  # [B, K] float32 log p(identifier | input, prefix); -inf where items == -1
    tokens: torch.Tensor  # [B, K, D] int64 identifier tokens, -1 after a shorter identifier's end
    # The search's trace, for bounding what it did not find: after step j (0-based), the trie node of
    # each of the ``beam_size`` hypotheses kept (-1: dead) and their scores, descending [B, D, beam].
    # An identifier whose first j + 1 tokens' node is not among step j's, although its first j were
    # among step j - 1's, scores at most ``kept_scores[:, j, -1]`` (it lost that step's top-k).
    kept: torch.Tensor
    kept_scores: torch.Tensor


@dataclass(frozen=True)
class RankedSequences:
    """Unconstrained beam search result: the best token sequences first."""

    tokens: torch.Tensor  # [B, K, num_steps] int64
    scores: torch.Tensor  # [B, K] float32 sequence log-probabilities


# candidates(state [R], hidden [R, d], head) -> (tokens [R, C], next_state [R, C], step_logp [R, C])
# tokens = -1 feeds the pad token (a finished or dead beam); step_logp = -inf marks an invalid slot.
CandidateFn = Callable[
    [torch.Tensor, torch.Tensor, OutputHead], tuple[torch.Tensor, torch.Tensor, torch.Tensor]
]


def constrained_beam_search(
    model: T5ForConditionalGeneration,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trie: IdTrie,
    prefix_tokens: torch.Tensor | Sequence[int],
    beam_size: int = 30,
    top_k: int | None = None,
    roots: torch.Tensor | None = None,
    decoder: T5BeamDecoder | None = None,
) -> RankedItems:
    """Top ``top_k`` (default ``beam_size``) items per example, decoding only identifiers in ``trie``.

    input_ids, attention_mask: [B, S] encoder input. prefix_tokens: [P] or [B, P] tokens forced after
    the decoder start token (P may be 0); they are not part of the score. ``roots`` [B] picks each
    example's root in a forest; by default root 0 for a one-root trie, root b for a forest of B roots.
    Runs on the model's device (move a reused trie there once with ``trie.to``); results are on CPU.
    ``decoder``: these inputs already encoded (``T5BeamDecoder(model, input_ids, attention_mask)``,
    so that a caller can score other candidates of the same inputs without encoding them again).
    """
    batch = input_ids.shape[0]
    device = input_ids.device
    if trie.device != device:
        trie = trie.to(device)
    top_k = beam_size if top_k is None else top_k
    _check_sizes(beam_size, top_k)
    if roots is None:
        if trie.num_roots not in (1, batch):
            raise GensarError(f"trie has {trie.num_roots} roots for a batch of {batch}: pass roots=")
        roots = torch.zeros(batch, dtype=torch.long, device=device) if trie.num_roots == 1 else trie.roots
    roots = roots.to(device, torch.long)
    if roots.shape != (batch,) or (batch and (int(roots.min()) < 0 or int(roots.max()) >= trie.num_roots)):
        raise GensarError(f"roots must be {batch} root ids in [0, {trie.num_roots})")

    def candidates(nodes: torch.Tensor, hidden: torch.Tensor, head: OutputHead):
        tok, child = trie.children(nodes)  # [R, C]
        if tok.shape[1] == 0:  # every row is a leaf or dead: keep one slot for the "stay" candidate
            tok = nodes.new_full((nodes.shape[0], 1), -1)
            child = tok.clone()
        # the first step's normalizer is the decoder's cached one, which exact scoring reuses
        lse = first_lse if hidden is first_hidden else head.logsumexp(hidden)
        logp = head.logits_at(hidden, tok).float() - lse.float()[:, None]  # [R, C]
        logp = logp.masked_fill(tok < 0, NEG_INF)
        finished = trie.item_at(nodes) >= 0  # [R]
        if bool(finished.any()):
            logp[finished, 0] = 0.0  # a complete identifier keeps its score ...
            child[finished, 0] = nodes[finished]  # ... and stays at its leaf (fed pad, tok -1)
        return tok, child, logp

    if trie.max_depth == 0:  # no identifiers at all
        return RankedItems(items=torch.full((batch, top_k), -1), scores=torch.full((batch, top_k), NEG_INF),
                           tokens=torch.full((batch, top_k, 0), -1), kept=torch.full((batch, 0, beam_size), -1),
                           kept_scores=torch.full((batch, 0, beam_size), NEG_INF))
    with torch.inference_mode():
        decoder = T5BeamDecoder(model, input_ids, attention_mask) if decoder is None else decoder.fresh()
        prefix = prefix_matrix(prefix_tokens, batch)
        first_hidden = decoder.start(prefix)  # [B, d]
        first_lse = decoder.start_logsumexp(prefix)
        nodes, scores, tokens, kept, kept_scores = _beam_loop(
            decoder, first_hidden, roots, trie.max_depth, beam_size, candidates
        )
    items = trie.item_at(nodes[:, :top_k]).cpu()  # [B, K]
    scores, tokens = scores[:, :top_k].cpu(), tokens[:, :top_k].cpu()
    valid = (items >= 0) & torch.isfinite(scores)
    return RankedItems(
        items=torch.where(valid, items, -1),
        scores=scores.masked_fill(~valid, NEG_INF),
        tokens=tokens.masked_fill(~valid[..., None], -1),
        kept=kept.cpu(),
        kept_scores=kept_scores.cpu(),
    )


def beam_search(
    model: T5ForConditionalGeneration,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prefix_tokens: torch.Tensor | Sequence[int],
    num_steps: int,
    beam_size: int = 30,
    top_k: int | None = None,
) -> RankedSequences:
    """Unconstrained beam search for ``num_steps`` tokens after the prefix (same machinery, any token)."""
    batch = input_ids.shape[0]
    top_k = beam_size if top_k is None else top_k
    _check_sizes(beam_size, top_k)
    if num_steps < 1:
        raise GensarError(f"num_steps must be >= 1, got {num_steps}")

    def candidates(state: torch.Tensor, hidden: torch.Tensor, head: OutputHead):
        # The best beam_size tokens of each row are the only ones that can survive the step.
        top, tok, lse = head.topk(hidden, min(beam_size, head.vocab_size))  # [R, C], [R, C], [R]
        return tok, torch.zeros_like(tok), top.float() - lse.float()[:, None]

    with torch.inference_mode():
        decoder = T5BeamDecoder(model, input_ids, attention_mask)
        first_hidden = decoder.start(prefix_matrix(prefix_tokens, batch))
        state0 = torch.zeros(batch, dtype=torch.long, device=input_ids.device)
        _, scores, tokens, _, _ = _beam_loop(decoder, first_hidden, state0, num_steps, beam_size, candidates)
    return RankedSequences(tokens=tokens[:, :top_k].cpu(), scores=scores[:, :top_k].cpu())


def _beam_loop(
    decoder: T5BeamDecoder,
    hidden: torch.Tensor,
    state: torch.Tensor,
    num_steps: int,
    beam_size: int,
    candidates: CandidateFn,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shared loop. Returns (state [B, beam], scores [B, beam] sorted descending, tokens [B, beam, steps],
    and after each step the kept states and scores [B, steps, beam])."""
    batch = state.shape[0]
    rows = 1  # rows per example: 1 before the first expansion, then beam_size
    scores = hidden.new_zeros(batch, dtype=torch.float32)  # [B*rows]
    tokens = state.new_zeros(batch, 0, dtype=torch.long)  # [B*rows, t]
    state = state.long()
    trace_states, trace_scores = [], []
    for t in range(num_steps):
        tok, nxt, logp = candidates(state, hidden, decoder.head)  # [B*rows, C]
        width = tok.shape[1]
        total = (scores[:, None] + logp).view(batch, rows * width)  # [B, rows*C]
        if total.shape[1] < beam_size:  # fewer candidates than beams: pad with dead slots
            total = torch.cat([total, total.new_full((batch, beam_size - total.shape[1]), NEG_INF)], dim=1)
        top, idx = total.topk(beam_size, dim=1)  # [B, beam]
        idx = idx.clamp(max=rows * width - 1)  # padded slots point anywhere; their score is -inf
        dead = torch.isinf(top)
        first_row = torch.arange(batch, device=idx.device)[:, None] * rows  # [B, 1]
        origin = (first_row + idx // width).view(-1)  # [B*beam] rows continued
        new_tok = tok.view(batch, -1).gather(1, idx).masked_fill(dead, -1).view(-1)  # [B*beam]
        state = nxt.view(batch, -1).gather(1, idx).masked_fill(dead, -1).view(-1)  # [B*beam]
        tokens = torch.cat([tokens[origin], new_tok[:, None]], dim=1)  # [B*beam, t+1]
        scores = top.view(-1)
        trace_states.append(state.view(batch, beam_size))
        trace_scores.append(top)
        if t + 1 < num_steps:
            hidden = decoder.advance(origin, new_tok)  # [B*beam, d]; the first call expands B -> B*beam
        rows = beam_size
    return (state.view(batch, rows), scores.view(batch, rows), tokens.view(batch, rows, -1),
            torch.stack(trace_states, dim=1), torch.stack(trace_scores, dim=1))


def prefix_matrix(prefix_tokens: torch.Tensor | Sequence[int], batch: int) -> torch.Tensor:
    prefix = torch.as_tensor(prefix_tokens, dtype=torch.long)
    if prefix.dim() == 1:
        prefix = prefix[None, :].expand(batch, -1)
    if prefix.dim() != 2 or prefix.shape[0] != batch:
        raise GensarError(f"prefix_tokens must be [P] or [{batch}, P], got shape {tuple(prefix.shape)}")
    return prefix  # [B, P]


def _check_sizes(beam_size: int, top_k: int) -> None:
    if beam_size < 1 or not 1 <= top_k <= beam_size:
        raise GensarError(f"need 1 <= top_k <= beam_size, got top_k={top_k}, beam_size={beam_size}")
