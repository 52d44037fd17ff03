"""Popularity: score an item by how often it was clicked in training events (both behaviors)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gensar.baselines.scorer import Request
from gensar.data.prepared import PreparedData
from gensar.data.schema import BEHAVIORS


def item_popularity(data: PreparedData) -> np.ndarray:
    """[n_items] click counts over training events."""
    held = data.held_out_event_ids
    counts = np.zeros(len(data.items), dtype=np.float64)
    index = data.item_index
    for event_id, items in zip(data.events["event_id"], data.events["items"], strict=True):
        if int(event_id) not in held:
            for item in items:
                counts[index[item]] += 1
    return counts


class PopularityScorer:
    """The same training click counts for every request (counts are exact in float32)."""

    name = "popularity"
    behaviors: tuple[str, ...] = BEHAVIORS

    def __init__(self, data: PreparedData) -> None:
        self.popularity = item_popularity(data).astype(np.float32)  # [n_items]

    def add_items(self, data: PreparedData, start: int) -> None:
        self.popularity = np.concatenate([self.popularity[:start], np.zeros(len(data.items) - start, np.float32)])

    def scores(self, requests: Sequence[Request]) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(requests), len(self.popularity))).copy()  # [B, n_items]


def popularity_scores(data: PreparedData, candidates: np.ndarray) -> np.ndarray:
    """Scores [n, C] for a candidate matrix (item indices, -1 padding)."""
    pop = item_popularity(data)
    return np.where(candidates >= 0, pop[np.maximum(candidates, 0)], -np.inf)
