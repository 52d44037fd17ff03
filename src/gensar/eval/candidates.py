"""The sampled evaluation protocol: rank each example's saved candidate list (target first).

Every method (GenSAR, SASRec, BM25, dense retrieval, popularity) produces a score matrix
aligned with ``candidate_matrix``; ``evaluate_scores`` turns it into the paper's metrics, so all
methods are measured on identical examples, candidates and tie rules.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gensar.data.prepared import PreparedData
from gensar.metrics import summarize_tied, tied_ranks


def eval_examples(data: PreparedData, split: str, behavior: str, limit: int | None = None) -> pd.DataFrame:
    """The examples of a split/behavior that have candidate lists, in a stable order."""
    ex = data.split(split, behavior)
    ex = ex[ex["example_id"].isin(data.candidate_lists)].sort_values("example_id")
    return ex.head(limit) if limit is not None else ex


def candidate_matrix(data: PreparedData, examples: pd.DataFrame) -> np.ndarray:
    """Item indices of each example's candidates [n, C], target in column 0, padded with -1."""
    lists = [data.candidate_lists[int(e)] for e in examples["example_id"]]
    width = max((len(c) for c in lists), default=0)
    out = np.full((len(lists), width), -1, dtype=np.int64)  # [n, C]
    index = data.item_index
    for row, cands in enumerate(lists):
        out[row, : len(cands)] = [index[c] for c in cands]
    return out


def evaluate_scores(scores: np.ndarray, candidates: np.ndarray) -> dict[str, float]:
    """Metrics for scores [n, C] over ``candidate_matrix`` output (target = column 0).

    Padding columns (candidate -1) never outrank the target; ties count against the target,
    so a constant scorer gets no credit.
    """
    if scores.shape != candidates.shape:
        raise ValueError(f"scores {scores.shape} do not match candidates {candidates.shape}")
    scores = np.where(candidates >= 0, scores, -np.inf)  # [n, C]
    better, ties = tied_ranks(scores, np.zeros(len(scores), dtype=np.int64))  # [n] each
    return summarize_tied(better, ties) | {"n": len(better)}
