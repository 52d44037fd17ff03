"""BM25 search baseline (bm25s) over item text: non-personalized lexical matching of the query."""

from __future__ import annotations

import bm25s
import numpy as np
import pandas as pd

from gensar.data.prepared import PreparedData


def bm25_scores(data: PreparedData, examples: pd.DataFrame, candidates: np.ndarray,
                k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """Scores [n, C]: the BM25 score of each candidate's text for the example's query."""
    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.index(bm25s.tokenize(data.item_texts, stopwords="en", show_progress=False), show_progress=False)
    out = np.full(candidates.shape, -np.inf)  # [n, C]
    queries = bm25s.tokenize(examples["query"].tolist(), stopwords="en", return_ids=False, show_progress=False)
    for row, tokens in enumerate(queries):
        full = retriever.get_scores(tokens)  # [n_items]
        valid = candidates[row] >= 0
        out[row, valid] = full[candidates[row, valid]]
    return out
