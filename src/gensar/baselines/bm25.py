"""BM25 search baseline (bm25s) over item text: non-personalized lexical matching of the query."""

from __future__ import annotations

from collections.abc import Sequence

import bm25s
import numpy as np
import pandas as pd

from gensar.baselines.scorer import Request, candidate_scores
from gensar.data.prepared import PreparedData
from gensar.data.schema import SEARCH


class BM25Scorer:
    """BM25 of every item's text for the request's query; the index is built once."""

    name = "bm25"
    behaviors: tuple[str, ...] = (SEARCH,)

    def __init__(self, data: PreparedData, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self._index(data.item_texts)

    def _index(self, texts: list[str]) -> None:
        self.retriever = bm25s.BM25(k1=self.k1, b=self.b)
        self.retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        self.n_items = len(texts)

    def add_items(self, data: PreparedData, start: int) -> None:
        # Re-indexed whole: document frequencies and the mean length are the grown catalog's, so
        # warm items' scores shift a little too (as they would in any BM25 index that grows).
        self._index(data.item_texts)

    def scores(self, requests: Sequence[Request]) -> np.ndarray:
        out = np.zeros((len(requests), self.n_items), dtype=np.float32)  # [B, n_items]
        if not requests:
            return out
        queries = bm25s.tokenize([r.query for r in requests], stopwords="en", return_ids=False,
                                 show_progress=False)
        for row, tokens in enumerate(queries):
            if tokens:  # a query with no indexable word matches nothing: every item scores 0
                out[row] = self.retriever.get_scores(tokens)
        return out


def bm25_scores(data: PreparedData, examples: pd.DataFrame, candidates: np.ndarray,
                k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """Scores [n, C]: the BM25 score of each candidate's text for the example's query."""
    requests = [Request(str(q), ()) for q in examples["query"]]
    return candidate_scores(BM25Scorer(data, k1, b), requests, candidates)
