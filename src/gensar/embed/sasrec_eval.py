"""Evaluating a SASRec on an ``EvalSet``: candidate scores, target ranks, sampled metrics, and the
popularity floor.

Ranks are 0-based and count ties pessimistically (rank = #candidates scoring >= the target,
minus one), so a constant scorer gets no credit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gensar.embed.sasrec import SASRec
from gensar.embed.sasrec_protocols import EvalSet
from gensar.metrics import METRIC_KEYS, rank_of_target, summarize


def target_ranks(scores: np.ndarray) -> np.ndarray:
    """0-based rank of column 0 (the target) in each row of ``scores`` [n, C], ties against it."""
    return rank_of_target(scores, np.zeros(len(scores), dtype=np.int64))


def sampled_metrics(ranks: np.ndarray) -> dict[str, float]:
    """hr@1, hr@5, hr@10, ndcg@5, ndcg@10 of 0-based target ranks (all 0.0 with no examples)."""
    if len(ranks) == 0:
        return dict.fromkeys(METRIC_KEYS, 0.0)
    return summarize(ranks)


def pad_histories(histories: Sequence[list[int]], max_len: int) -> np.ndarray:
    """Left-padded tokens [n, T] of each history's newest ``max_len`` items, T = longest kept."""
    width = max(1, min(max_len, max((len(h) for h in histories), default=1)))
    out = np.zeros((len(histories), width), dtype=np.int64)
    for row, h in enumerate(histories):
        h = h[-width:]
        if h:
            out[row, width - len(h) :] = np.asarray(h, dtype=np.int64) + 1
    return out


@torch.no_grad()
def sasrec_scores(model: SASRec, histories: list[list[int]], candidates: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Scores [n, C] of each candidate row after its history."""
    model.eval()
    out = np.empty(candidates.shape, dtype=np.float32)
    order = np.argsort([len(h) for h in histories], kind="stable")  # similar lengths, less padding
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        seq = torch.from_numpy(pad_histories([histories[i] for i in idx], model.cfg.max_len))  # [B, T]
        cand = torch.from_numpy(candidates[idx])  # [B, C], -1 = padding
        out[idx] = model.score(seq, cand.clamp_min(0)).masked_fill(cand < 0, float("-inf")).numpy()
    return out


def evaluate(model: SASRec, eval_set: EvalSet) -> dict[str, float]:
    """hr@{1,5,10}, ndcg@{5,10} of ranking each example's target among its candidates."""
    if len(eval_set) == 0:
        return sampled_metrics(np.zeros(0))
    return sampled_metrics(target_ranks(sasrec_scores(model, eval_set.histories, eval_set.candidates)))


def popularity_metrics(train_seqs: Sequence[list[int]], n_items: int, eval_set: EvalSet) -> dict[str, float]:
    """The same metrics for ranking candidates by training interaction counts (a floor)."""
    counts = np.bincount(np.concatenate([np.asarray(s, dtype=np.int64) for s in train_seqs] or [np.zeros(0, np.int64)]), minlength=n_items)
    cands = eval_set.candidates
    scores = np.where(cands >= 0, counts[np.maximum(cands, 0)].astype(np.float64), -np.inf)
    return sampled_metrics(target_ranks(scores))
