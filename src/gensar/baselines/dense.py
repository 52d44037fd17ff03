"""Dense retrieval search baseline: cosine similarity of MiniLM query and item embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gensar.baselines.scorer import Request, candidate_scores
from gensar.data.prepared import PreparedData
from gensar.data.schema import SEARCH
from gensar.embed.semantic import SemanticConfig, encode_items


MAX_CACHED_QUERIES = 100_000  # query embeddings kept in memory (~150 MB at 384 float32 dims)


class ItemEmbeddings:
    """Unit-length text embeddings of every item, [n_items, d] float32 (``matrix``), encoded once
    (cached under ``cache_dir``) and shared by the text scorers (dense search, content
    recommendation), so the texts of added items are encoded once too."""

    def __init__(self, data: PreparedData, cfg: SemanticConfig, cache_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.matrix = normalize(encode_items(data.item_texts, cfg, cache_dir)).astype(np.float32)

    def add_items(self, data: PreparedData, start: int) -> None:
        if len(self.matrix) == len(data.items):  # a scorer sharing these embeddings grew them already
            return
        # Only the new texts are encoded (not cached: the run directory may be read-only when serving).
        new = normalize(encode_items(data.item_texts[start:], self.cfg)).astype(np.float32)
        self.matrix = np.concatenate([self.matrix[:start], new])


class DenseScorer:
    """Cosine between the query's and every item's text embedding (``ItemEmbeddings``); each distinct
    query is encoded once and kept in memory."""

    name = "dense"
    behaviors: tuple[str, ...] = (SEARCH,)

    def __init__(self, embeddings: ItemEmbeddings) -> None:
        self.embeddings = embeddings
        self.cfg = embeddings.cfg
        self._queries: dict[str, np.ndarray] = {}

    @property
    def items(self) -> np.ndarray:
        return self.embeddings.matrix  # [n_items, d]

    def add_items(self, data: PreparedData, start: int) -> None:
        self.embeddings.add_items(data, start)

    def forget_queries(self) -> None:
        """Drop the encoded queries (a benchmark that must pay every query's encoding)."""
        self._queries.clear()

    def scores(self, requests: Sequence[Request]) -> np.ndarray:
        new = list(dict.fromkeys(r.query for r in requests if r.query not in self._queries))
        if len(self._queries) + len(new) > MAX_CACHED_QUERIES:  # a long-running server: bounded memory
            self._queries.clear()
        if new:
            for text, vec in zip(new, normalize(encode_items(new, self.cfg)), strict=True):
                self._queries[text] = vec.astype(np.float32)
        if not requests:
            return np.zeros((0, len(self.items)), dtype=np.float32)
        q = np.stack([self._queries[r.query] for r in requests])  # [B, d]
        return q @ self.items.T  # [B, n_items]


def dense_scores(data: PreparedData, examples: pd.DataFrame, candidates: np.ndarray,
                 cfg: SemanticConfig, cache_dir: Path | None = None) -> np.ndarray:
    """Scores [n, C]: cosine between the query embedding and each candidate's text embedding."""
    requests = [Request(str(q), ()) for q in examples["query"]]
    return candidate_scores(DenseScorer(ItemEmbeddings(data, cfg, cache_dir)), requests, candidates)


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
