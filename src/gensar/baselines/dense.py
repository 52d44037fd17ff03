"""Dense retrieval search baseline: cosine similarity of MiniLM query and item embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gensar.data.prepared import PreparedData
from gensar.embed.semantic import SemanticConfig, encode_items


def dense_scores(data: PreparedData, examples: pd.DataFrame, candidates: np.ndarray,
                 cfg: SemanticConfig, cache_dir: Path | None = None) -> np.ndarray:
    """Scores [n, C]: cosine between the query embedding and each candidate's text embedding."""
    items = _normalize(encode_items(data.item_texts, cfg, cache_dir))  # [n_items, d]
    queries = _normalize(encode_items(examples["query"].tolist(), cfg, cache_dir))  # [n, d]
    safe = np.maximum(candidates, 0)
    scores = np.einsum("nd,ncd->nc", queries, items[safe])  # [n, C]
    return np.where(candidates >= 0, scores, -np.inf)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
