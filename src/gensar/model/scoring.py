"""Rank each example's candidate list by the model's likelihood of each candidate's target.

A candidate's score is ``log p(<rec> collaborative ID | input)`` for recommendation examples
and ``log p(<search> semantic ID | input)`` for search examples: the sum of the identifier
tokens' log-probabilities, without ``</s>``. That is exactly the score constrained beam search
gives an identifier (the behavior token's log-prob is the same for every candidate), so both
evaluation methods rank the candidates identically; identifier sets are prefix-free, so ``</s>``
carries no choice between candidates. Each input is encoded once; all candidates of a group of
examples are scored by the decoder in one batch.

Ranks are 0-based and pessimistic (``gensar.metrics.rank_of_target``): the target's rank is
the number of candidates scoring strictly higher plus the number of *other* candidates scoring
equal, so a model that gives every candidate the same score gets the worst rank, not the best.

Training's validation (early stopping) uses it, and ``gensar evaluate --method likelihood``; it is
exact (no beam can miss the target), where the default evaluation, constrained beam search
(``gensar.decode``), can miss a target that falls out of the beam.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gensar.data.schema import BEHAVIORS
from gensar.metrics import HR_KS, hit_rate_at_k, ndcg_at_k, rank_of_target
from gensar.model.encoder import SampleEncoder
from gensar.model.samples import Sample


def pad_batch(seqs: Sequence[Sequence[int]], pad: int) -> torch.Tensor:
    """Right-pad int sequences into a [N, max_len] int64 tensor."""
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


@torch.no_grad()
def candidate_log_likelihoods(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Sum of target log-probabilities of every candidate of every example.

    input_ids, attention_mask: [B, L]; labels: [B, C, T] candidate targets padded with -100.
    Returns [B, C] float32.
    """
    b, c, t = labels.shape
    encoder = model.get_encoder()
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, L, D]
    length, d = hidden.shape[1], hidden.shape[2]
    hidden = hidden[:, None].expand(b, c, length, d).reshape(b * c, length, d)  # [B*C, L, D]
    mask = attention_mask[:, None].expand(b, c, length).reshape(b * c, length)  # [B*C, L]
    flat = labels.reshape(b * c, t)  # [B*C, T]
    decoder_input_ids = model._shift_right(flat)  # [B*C, T]: start token, then the target shifted
    from transformers.modeling_outputs import BaseModelOutput

    logits = model(
        encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
        attention_mask=mask,
        decoder_input_ids=decoder_input_ids,
        use_cache=False,
    ).logits  # [B*C, T, V]
    logp = torch.log_softmax(logits.float(), dim=-1)  # [B*C, T, V]
    valid = flat != -100  # [B*C, T]
    token_logp = logp.gather(-1, flat.clamp_min(0)[..., None]).squeeze(-1)  # [B*C, T]
    return (token_logp * valid).sum(-1).reshape(b, c)  # [B, C]


@torch.no_grad()
def rank_examples(
    model,
    encoder: SampleEncoder,
    samples: Sequence[Sample],
    candidates: Sequence[Sequence[str]],
    batch_examples: int = 4,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Pessimistic 0-based rank [N] (float) of each sample's target among its candidates.

    ``samples`` are ``rec``/``search`` samples; every candidate list has the target first
    (``candidates[i][0] == samples[i].item``).
    """
    was_training = model.training
    model.eval()
    pad = int(encoder.tokenizer.pad_token_id)
    ranks: list[np.ndarray] = []
    try:
        for start in range(0, len(samples), batch_examples):
            chunk = samples[start : start + batch_examples]
            cands = candidates[start : start + batch_examples]
            for s, cl in zip(chunk, cands, strict=True):
                if s.task not in BEHAVIORS or not cl or cl[0] != s.item:
                    raise ValueError(
                        f"example {s.example_id}: candidate list must start with the target item"
                    )
            width = max(len(cl) for cl in cands)
            if any(len(cl) != width for cl in cands):  # ragged lists: score one example at a time
                for s, cl in zip(chunk, cands, strict=True):
                    ranks.append(rank_examples(model, encoder, [s], [cl], 1, device))
                continue
            inputs = pad_batch([encoder.input(s) for s in chunk], pad).to(device)  # [B, L]
            targets = [
                encoder.item_target(s.task, item)[:-1]  # without </s>, as beam search scores
                for s, cl in zip(chunk, cands, strict=True) for item in cl
            ]
            labels = pad_batch(targets, -100).reshape(len(chunk), width, -1).to(device)  # [B, C, T]
            scores = candidate_log_likelihoods(model, inputs, inputs != pad, labels)  # [B, C]
            ranks.append(rank_of_target(scores.cpu().numpy(), np.zeros(len(chunk), dtype=np.int64)))
    finally:
        model.train(was_training)
    return np.concatenate(ranks) if ranks else np.zeros(0)


def behavior_metrics(
    ranks_by_behavior: dict[str, np.ndarray], ks: Sequence[int] = HR_KS
) -> dict[str, float]:
    """``{behavior}_hr@k`` and ``{behavior}_ndcg@k`` per behavior; ``hr@k``/``ndcg@k``: their mean."""
    out: dict[str, float] = {}
    present = [b for b in BEHAVIORS if len(ranks_by_behavior.get(b, ())) > 0]
    for k in ks:
        for name, fn in (("hr", hit_rate_at_k), ("ndcg", ndcg_at_k)):
            per = {b: fn(ranks_by_behavior[b], k) for b in present}
            for b, v in per.items():
                out[f"{b}_{name}@{k}"] = v
            out[f"{name}@{k}"] = float(np.mean(list(per.values()))) if per else float("nan")
    for b in present:
        out[f"{b}_examples"] = float(len(ranks_by_behavior[b]))
    return out
