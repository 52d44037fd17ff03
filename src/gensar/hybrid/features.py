"""Fusion features of (request, candidate) pairs, and the candidate union of several retrievers.

Every feature is a number per candidate that a linear fusion can weigh on one scale across
requests, so each scorer's raw catalog scores pass through one normalizer, picked once by name
(``normalizer``):

    generative        log p(identifier | input)            (exact; already a log-probability)
    sasrec            log-softmax of SASRec's logits over the catalog
    bm25              BM25 score / the request's best BM25 score over the catalog (0 when none matches)
    dense             cosine of query and item embeddings
    content           cosine of the user's recent items' mean embedding and the item's
    match-popularity  the baseline's own score: 1 + a popularity prior in [0, 1) when the item
                      contains every query word, else the prior alone (so this part alone ranks
                      exactly as the match-popularity baseline, which the fit's fallback can then pick)
    popularity        log(1 + clicks) / log(1 + most clicks)
    seen              1 when the user clicked the item before (repeat behaviour differs by dataset)
    new               1 for an item added after training (``gensar add-items``, cold items): the
                      generative model and SASRec never saw it, so their features of it are its
                      peers' mean (the request's trained candidates that only text retrievers
                      proposed, ``impute_new``: no evidence either way) and this
                      indicator lets a fit on new targets learn what such an item is worth (a
                      fit without any leaves its weight ~0, unless ``hybrid.pseudo_new`` makes
                      some trained items look new)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

GENERATIVE = "generative"
SEEN = "seen"
NEW = "new"
UNTRAINED = (GENERATIVE, "sasrec")  # features learned from interactions: no evidence on a new item
BEAM = "beam"  # proposal sources beside the scorers: the generative beam, exact-title matches
TITLE = "title"

Normalizer = Callable[[np.ndarray], np.ndarray]  # catalog scores [B, N] -> features [B, N]


def feature_names(scorers: Sequence[str]) -> tuple[str, ...]:
    return (GENERATIVE, *scorers, SEEN, NEW)


def beam_source(width: int) -> str:
    """The source name of a narrower beam's proposals, collected beside the full beam for a fit."""
    return f"{BEAM}@{width}"


def fusion_scorers(fusion) -> tuple[str, ...]:
    """The scorers whose features a fusion (``LinearFusion``) was fitted on."""
    return tuple(f for f in fusion.features if f not in (GENERATIVE, SEEN, NEW))


def normalizer(name: str) -> Normalizer:
    """The normalizer of scorer ``name`` (see the module doc)."""
    table: dict[str, Normalizer] = {
        "sasrec": _log_softmax,
        "bm25": _over_row_max,
        "dense": _identity,
        "content": _identity,
        "match-popularity": _identity,
        "popularity": _log_over_max,
    }
    if name not in table:
        raise KeyError(f"no feature normalizer for scorer '{name}'")
    return table[name]


def _identity(s: np.ndarray) -> np.ndarray:
    return np.nan_to_num(s, neginf=0.0)


def _log_softmax(s: np.ndarray) -> np.ndarray:
    s = s.astype(np.float64)
    top = s.max(axis=1, keepdims=True)
    return s - top - np.log(np.exp(s - top).sum(axis=1, keepdims=True))


def _over_row_max(s: np.ndarray) -> np.ndarray:
    top = s.max(axis=1, keepdims=True)
    return np.where(top > 0, s / np.where(top > 0, top, 1.0), 0.0)


def _log_over_max(s: np.ndarray) -> np.ndarray:
    logs = np.log1p(np.maximum(s, 0.0))
    top = logs.max(axis=1, keepdims=True)
    return logs / np.where(top > 0, top, 1.0)


def gather(matrix: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """``matrix[b, candidates[b, c]]`` [B, C]; 0 where the candidate is -1."""
    out = np.take_along_axis(matrix, np.maximum(candidates, 0), axis=1)
    return np.where(candidates >= 0, out, 0.0)


def seen_feature(histories: Sequence[Sequence[int]], candidates: np.ndarray) -> np.ndarray:
    """[B, C] 1.0 where the candidate is in the request's history."""
    out = np.zeros(candidates.shape, dtype=np.float64)
    for b, history in enumerate(histories):
        if history:
            out[b] = np.isin(candidates[b], np.fromiter(history, dtype=np.int64))
    return np.where(candidates >= 0, out, 0.0)


def is_model_source(name: str) -> bool:
    """A proposal source learned from interactions (the beam, a narrower beam, SASRec)."""
    return name.split("@")[0] == BEAM or name in UNTRAINED


def model_proposed(source_ranks: np.ndarray, sources: Sequence[str]) -> np.ndarray:
    """[B, C] bool: candidates that a source learned from interactions proposed (the beam, a
    narrower beam, SASRec): sources that can never propose a new item."""
    cols = [s for s, name in enumerate(sources) if is_model_source(name)]
    if not cols:
        return np.zeros(source_ranks.shape[:2], dtype=bool)
    return (source_ranks[..., cols] >= 0).any(axis=-1)


def impute_new(column: np.ndarray, new: np.ndarray, valid: np.ndarray, by_model: np.ndarray) -> np.ndarray:
    """``column`` [B, C] with its new items' entries replaced by the mean over the request's peers of
    a new item: its valid trained candidates that only the text retrievers proposed (``by_model``
    [B, C] False), since only those can propose a new item and the model's candidates score
    higher by selection; where a request has none, over all its valid trained candidates (0 where
    it has none)."""
    known = valid & ~new
    peers = known & ~by_model
    peers = np.where(peers.any(axis=1, keepdims=True), peers, known)
    mean = np.where(peers, column, 0.0).sum(axis=1) / np.maximum(peers.sum(axis=1), 1)  # [B]
    return np.where(new & valid, mean[:, None], column)


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """[B, k] item rows of each row's ``k`` best finite scores, best first (-1 pads); ties: lower row first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else \
        np.tile(np.arange(scores.shape[1]), (len(scores), 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    rows = np.take_along_axis(part, order, axis=1)
    return np.where(np.isfinite(np.take_along_axis(vals, order, axis=1)), rows, -1)


def union_candidates(proposals: Sequence[np.ndarray]) -> np.ndarray:
    """[B, C] the distinct item rows of every proposal matrix [B, K_i], in first-seen order; -1 pads."""
    rows = [list(dict.fromkeys(int(i) for p in proposals for i in p[b] if i >= 0))
            for b in range(proposals[0].shape[0])]
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for b, r in enumerate(rows):
        out[b, : len(r)] = r
    return out


def source_ranks(proposals: Sequence[np.ndarray], candidates: np.ndarray) -> np.ndarray:
    """[B, C, S] int32: each candidate's 0-based position in each proposal matrix [B, K_s] (best
    first), -1 where that proposal lacks it (pads included)."""
    out = np.full(candidates.shape + (len(proposals),), -1, dtype=np.int32)
    for s, prop in enumerate(proposals):
        match = (candidates[:, :, None] == prop[:, None, :]) & (prop >= 0)[:, None, :]  # [B, C, K]
        out[..., s] = np.where(match.any(axis=2), match.argmax(axis=2), -1)
    return np.where((candidates >= 0)[..., None], out, -1)
