"""Reference decoders, for tests and benchmarks only.

``DictTrie`` + ``hf_constrained_generate`` is what generative-retrieval research code usually does
(and what the GenSAR paper's code does): a Python dict from identifier prefix to allowed next
tokens, consulted per beam by ``transformers``' ``generate(prefix_allowed_tokens_fn=...)``.
``brute_force_scores`` teacher-forces every candidate identifier: the exact ranking that beam
search approximates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import T5ForConditionalGeneration

from gensar.decode.beam import prefix_matrix


class DictTrie:
    """Prefix tuple -> allowed next tokens, as plain Python dicts."""

    def __init__(self, sequences: Sequence[Sequence[int]], item_indices: Sequence[int] | None = None):
        items = range(len(sequences)) if item_indices is None else item_indices
        self.next: dict[tuple[int, ...], list[int]] = {}
        self.item: dict[tuple[int, ...], int] = {}
        for seq, item in zip(sequences, items, strict=True):
            seq = tuple(int(t) for t in seq)
            for depth in range(len(seq)):
                allowed = self.next.setdefault(seq[:depth], [])
                if seq[depth] not in allowed:
                    allowed.append(seq[depth])
            self.item[seq] = int(item)

    def allowed(self, prefix: tuple[int, ...]) -> list[int]:
        return self.next.get(prefix, [])


def hf_constrained_generate(
    model: T5ForConditionalGeneration,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    tries: DictTrie | Sequence[DictTrie],
    prefix_tokens: torch.Tensor | Sequence[int],
    id_length: int,
    beam_size: int,
    top_k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``model.generate`` beam search over fixed-length identifiers: (items [B, K], scores [B, K]).

    ``tries`` is one DictTrie for all examples or one per example. No EOS is generated (generation
    stops after ``id_length`` tokens) and ``length_penalty=0``, so scores are summed log-probs.
    """
    batch = input_ids.shape[0]
    per_example = [tries] * batch if isinstance(tries, DictTrie) else list(tries)
    prefix = prefix_matrix(prefix_tokens, batch)  # [B, P]
    start = torch.full((batch, 1), int(model.config.decoder_start_token_id), dtype=torch.long)
    decoder_input_ids = torch.cat([start, prefix], dim=1)  # [B, 1+P]
    skip = decoder_input_ids.shape[1]
    pad = int(model.config.pad_token_id)

    def allowed(batch_id: int, sent: torch.Tensor) -> list[int]:
        # A beam that left the trie already scores -inf; any token keeps it there.
        return per_example[batch_id].allowed(tuple(sent[skip:].tolist())) or [pad]

    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
            num_beams=beam_size, num_return_sequences=top_k, max_new_tokens=id_length, do_sample=False,
            length_penalty=0.0, early_stopping=False, prefix_allowed_tokens_fn=allowed,
            output_scores=True, return_dict_in_generate=True,
        )
    seqs = out.sequences[:, skip:].view(batch, top_k, -1)  # [B, K, id_length]
    scores = out.sequences_scores.view(batch, top_k).float()  # [B, K]
    items = torch.tensor(
        [[per_example[b].item.get(tuple(s.tolist()), -1) for s in seqs[b]] for b in range(batch)]
    )
    scores = scores.masked_fill(items < 0, float("-inf"))
    return items, scores


def brute_force_scores(
    model: T5ForConditionalGeneration,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prefix_tokens: torch.Tensor | Sequence[int],
    sequences: Sequence[Sequence[int]],
) -> torch.Tensor:
    """[B, M] log p(sequences[m] | input_b, prefix_b) by teacher forcing every identifier."""
    batch, m = input_ids.shape[0], len(sequences)
    width = max(len(s) for s in sequences)
    prefix = prefix_matrix(prefix_tokens, batch)  # [B, P]
    ids = torch.full((m, width), int(model.config.pad_token_id), dtype=torch.long)
    keep = torch.zeros(m, width, dtype=torch.bool)
    for j, s in enumerate(sequences):
        ids[j, : len(s)] = torch.tensor(list(s))
        keep[j, : len(s)] = True
    start = torch.full((m, 1), int(model.config.decoder_start_token_id), dtype=torch.long)
    out = torch.empty(batch, m)
    with torch.inference_mode():
        for b in range(batch):
            dec = torch.cat([start, prefix[b].expand(m, -1), ids], dim=1)  # [M, 1+P+L]
            logits = model(
                input_ids=input_ids[b : b + 1].expand(m, -1),
                attention_mask=attention_mask[b : b + 1].expand(m, -1),
                decoder_input_ids=dec[:, :-1],
            ).logits  # [M, P+L, V]
            logp = logits[:, -width:].float().log_softmax(-1).gather(2, ids[..., None]).squeeze(2)  # [M, L]
            out[b] = (logp * keep).sum(1)
    return out
