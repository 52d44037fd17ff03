"""Popularity: score a candidate by how often it was clicked in training events (both behaviors)."""

from __future__ import annotations

import numpy as np

from gensar.data.prepared import PreparedData


def held_out_event_ids(data: PreparedData) -> set[int]:
    """Events that are validation/test targets: never used for fitting any model."""
    ex = data.examples
    return set(ex.loc[ex["split"] != "train", "event_id"].astype(int))


def item_popularity(data: PreparedData) -> np.ndarray:
    """[n_items] click counts over training events."""
    held = held_out_event_ids(data)
    counts = np.zeros(len(data.items), dtype=np.float64)
    index = data.item_index
    for event_id, items in zip(data.events["event_id"], data.events["items"], strict=True):
        if int(event_id) not in held:
            for item in items:
                counts[index[item]] += 1
    return counts


def popularity_scores(data: PreparedData, candidates: np.ndarray) -> np.ndarray:
    """Scores [n, C] for a candidate matrix (item indices, -1 padding)."""
    pop = item_popularity(data)
    return np.where(candidates >= 0, pop[np.maximum(candidates, 0)], -np.inf)
