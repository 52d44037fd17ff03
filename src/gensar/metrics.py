"""Ranking metrics on 0-based ranks (numpy only).

A rank is the 0-based position of a relevant item in a ranking; ``np.inf`` means it was not
retrieved. With a single relevant item per example (the usual next-item setting) ``ranks`` is a
[B] array; with several relevant items (e.g. a search session that bought more than one item)
it is [B, R], padded with ``np.nan`` where an example has fewer than R relevant items.

    HR@k      = mean_b [rank_b < k]
    NDCG@k    = mean_b DCG_b / IDCG_b,  DCG = sum_{relevant, rank < k} 1 / log2(rank + 2),
                IDCG = sum_{i < min(k, n_relevant)} 1 / log2(i + 2)   (= 1 for one relevant item)
    Recall@k  = mean_b |relevant with rank < k| / n_relevant_b

Tied scores. A scorer that gives several items the target's exact score (BM25 on short texts,
popularity, a boolean match) does not order them; the pessimistic rank (``rank_of_target``) puts
the target last among them, which understates such a scorer by a lot on the whole catalog. The
tie-aware metrics (McSherry & Najork, ECIR 2008) take the expectation over a uniformly random
order of the tied items instead: with ``g`` items scoring strictly higher and ``e`` others equal,
the rank is uniform on ``g .. g + e``, so

    E[HR@k]   = clip(k - g, 0, e + 1) / (e + 1)
    E[NDCG@k] = (D(min(g + e + 1, k)) - D(min(g, k))) / (e + 1),  D(n) = sum_{r < n} 1 / log2(r + 2)

equal to the plain metrics when nothing ties, and fair to a constant scorer (it gets chance level).

A leaf module (numpy and ``gensar.errors`` only) that every layer may import. The metric names
are defined here once: ``METRIC_KEYS`` (the paper's sampled protocol, what ``summarize`` returns)
and ``FULL_KS`` (the full-ranking protocol's cutoffs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

from gensar.errors import GensarError

__all__ = [
    "FULL_KS", "FULL_METRIC_KEYS", "HR_KS", "METRIC_KEYS", "NDCG_KS", "MetricKey", "hit_rate_at_k", "ndcg_at_k",
    "rank_from_retrieved", "rank_of_target", "recall_at_k", "summarize", "tied_ranks", "expected_hit_rate", "expected_ndcg",
    "expected_hit_rate_each", "expected_ndcg_each",
    "summarize_tied", "full_ranking_tied",
]

HR_KS = (1, 5, 10)  # the paper's sampled protocol: HR@1/5/10 and NDCG@5/10
NDCG_KS = (5, 10)
MetricKey = Literal["hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10"]  # a Literal so configs can name one
METRIC_KEYS: tuple[MetricKey, ...] = get_args(MetricKey)
FULL_KS = (5, 10, 20)  # full-catalog ranking: recall@k and ndcg@k
FULL_METRIC_KEYS = tuple(f"recall@{k}" for k in FULL_KS) + tuple(f"ndcg@{k}" for k in FULL_KS)


def hit_rate_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of examples whose (best) relevant item is ranked in the top k."""
    r = _as_matrix(ranks, k)
    return float((np.nan_to_num(r, nan=np.inf) < k).any(axis=1).mean())


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Mean share of each example's relevant items ranked in the top k (= HR@k for one item)."""
    r = _as_matrix(ranks, k)
    n_rel = (~np.isnan(r)).sum(axis=1)  # [B]
    hits = (np.nan_to_num(r, nan=np.inf) < k).sum(axis=1)  # [B]
    return float((hits / n_rel).mean())


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """Mean NDCG@k with binary relevance; one relevant item gives 1 / log2(rank + 2) if rank < k."""
    r = _as_matrix(ranks, k)
    n_rel = (~np.isnan(r)).sum(axis=1)  # [B]
    inside = np.nan_to_num(r, nan=np.inf) < k  # [B, R]
    gains = np.where(inside, 1.0 / np.log2(np.where(inside, r, 0.0) + 2.0), 0.0)  # [B, R]
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)  # [k]
    ideal = np.cumsum(discounts)[np.minimum(n_rel, k) - 1]  # [B]
    return float((gains.sum(axis=1) / ideal).mean())


def rank_of_target(scores: np.ndarray, target_index: np.ndarray) -> np.ndarray:
    """[B] 0-based rank of ``scores[b, target_index[b]]`` among ``scores[b]`` (higher = better).

    Ties count against the target (every item scoring the same is placed before it), so a model
    that scores everything equally gets the worst rank, not the best. A target scoring -inf or
    NaN was not retrieved: rank ``np.inf``.
    """
    s, target = _scores_and_target(scores, target_index)  # [B, N], [B, 1]
    rank = (s >= target).sum(axis=1) - 1.0  # NaN compares False, so NaN scores never outrank
    return np.where(target[:, 0] > -np.inf, rank, np.inf)  # False for -inf and NaN


def tied_ranks(scores: np.ndarray, target_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(``better`` [B], ``ties`` [B]): items scoring strictly above the target, and other items scoring
    the same. A target scoring -inf or NaN was not retrieved: ``better`` = inf, ``ties`` = 0."""
    s, target = _scores_and_target(scores, target_index)  # [B, N], [B, 1]
    found = target[:, 0] > -np.inf  # False for -inf and NaN
    better = (s > target).sum(axis=1).astype(np.float64)
    ties = ((s == target).sum(axis=1) - 1).astype(np.float64)
    return np.where(found, better, np.inf), np.where(found, ties, 0.0)


def expected_hit_rate(better: np.ndarray, ties: np.ndarray, k: int) -> float:
    """Mean E[HR@k] under a random order of tied items (see the module doc)."""
    return float(expected_hit_rate_each(better, ties, k).mean())


def expected_hit_rate_each(better: np.ndarray, ties: np.ndarray, k: int) -> np.ndarray:
    """[B] E[HR@k] of each example (what ``expected_hit_rate`` averages)."""
    g, e = _tied(better, ties, k)
    return np.clip(k - g, 0.0, e + 1.0) / (e + 1.0)


def expected_ndcg(better: np.ndarray, ties: np.ndarray, k: int) -> float:
    """Mean E[NDCG@k] (one relevant item) under a random order of tied items."""
    return float(expected_ndcg_each(better, ties, k).mean())


def expected_ndcg_each(better: np.ndarray, ties: np.ndarray, k: int) -> np.ndarray:
    """[B] E[NDCG@k] of each example (what ``expected_ndcg`` averages), e.g. for paired comparisons."""
    g, e = _tied(better, ties, k)
    cum = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))])  # D(0..k)
    hi = np.minimum(g + e + 1.0, k).astype(np.int64)
    lo = np.minimum(g, k).astype(np.int64)
    return (cum[hi] - cum[lo]) / (e + 1.0)


def summarize_tied(better: np.ndarray, ties: np.ndarray, ks: Sequence[int] = HR_KS,
                   ndcg_ks: Sequence[int] = NDCG_KS) -> dict[str, float]:
    """``summarize`` with tie-aware expectations: the keys of ``METRIC_KEYS``."""
    out = {f"hr@{k}": expected_hit_rate(better, ties, k) for k in ks}
    return out | {f"ndcg@{k}": expected_ndcg(better, ties, k) for k in ndcg_ks}


def full_ranking_tied(better: np.ndarray, ties: np.ndarray, ks: Sequence[int] = FULL_KS) -> dict[str, float]:
    """Whole-catalog ``FULL_METRIC_KEYS`` (recall = hit rate for one relevant item), tie-aware."""
    out = {f"recall@{k}": expected_hit_rate(better, ties, k) for k in ks}
    return out | {f"ndcg@{k}": expected_ndcg(better, ties, k) for k in ks}


def _scores_and_target(scores: np.ndarray, target_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scores`` as float64 [B, N] and each row's target score [B, 1]; shapes and indices checked."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(target_index, dtype=np.int64).reshape(-1)
    if s.ndim != 2 or s.shape[0] != t.shape[0]:
        raise GensarError(f"scores must be [B, N] with B = {t.shape[0]} targets, got shape {s.shape}")
    if t.size and (t.min() < 0 or t.max() >= s.shape[1]):
        raise GensarError(f"target index out of range [0, {s.shape[1]})")
    target = s[np.arange(len(t)), t][:, None]  # [B, 1]
    return s, target


def _tied(better: np.ndarray, ties: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if int(k) != k or k < 1:
        raise GensarError(f"k must be a positive integer, got {k}")
    g = np.asarray(better, dtype=np.float64).reshape(-1)
    e = np.asarray(ties, dtype=np.float64).reshape(-1)
    if g.shape != e.shape or g.size == 0:
        raise GensarError(f"better and ties must be equal non-empty [B] arrays, got {g.shape} and {e.shape}")
    if (g < 0).any() or (e < 0).any():
        raise GensarError("better and ties must be >= 0")
    return np.where(np.isinf(g), float(k), g), np.where(np.isinf(g), 0.0, e)


def rank_from_retrieved(retrieved_items: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[B] position of ``targets[b]`` in ``retrieved_items[b]`` [B, K] (first match), else ``np.inf``."""
    got = np.asarray(retrieved_items)
    t = np.asarray(targets).reshape(-1)
    if got.ndim != 2 or got.shape[0] != t.shape[0]:
        raise GensarError(
            f"retrieved_items must be [B, K] with B = {t.shape[0]} targets, got shape {got.shape}"
        )
    match = got == t[:, None]  # [B, K]
    return np.where(match.any(axis=1), match.argmax(axis=1).astype(np.float64), np.inf)


def summarize(
    ranks: np.ndarray, ks: Sequence[int] = HR_KS, ndcg_ks: Sequence[int] = NDCG_KS
) -> dict[str, float]:
    """``{"hr@1": ..., "hr@5": ..., "hr@10": ..., "ndcg@5": ..., "ndcg@10": ...}``: ``METRIC_KEYS``, in order."""
    out = {f"hr@{k}": hit_rate_at_k(ranks, k) for k in ks}
    out.update({f"ndcg@{k}": ndcg_at_k(ranks, k) for k in ndcg_ks})
    return out


def _as_matrix(ranks: np.ndarray, k: int) -> np.ndarray:
    if int(k) != k or k < 1:
        raise GensarError(f"k must be a positive integer, got {k}")
    r = np.asarray(ranks, dtype=np.float64)
    if r.ndim == 1:
        r = r[:, None]
    if r.ndim != 2 or r.shape[0] == 0:
        raise GensarError(f"ranks must be a non-empty [B] or [B, R] array, got shape {r.shape}")
    if (np.isnan(r).all(axis=1)).any():
        raise GensarError("every example needs at least one relevant item (a row of ranks is all NaN)")
    if (r[~np.isnan(r)] < 0).any():
        raise GensarError("ranks must be >= 0 (0-based) or inf")
    return r
