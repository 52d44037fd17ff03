"""Cold items: a seeded fraction of the catalog held out of training as *new* items.

``gensar prepare --cold-items R`` (config key ``cold_items``) marks ``round(R * items)`` items as
cold (at least one, never all), drawn uniformly with the prepare seed, and measures how the
system finds items it never trained on (issue 16, "Cold-start evaluation"):

* a *cold event* is an event that clicks a cold item (a search session with one cold click among
  several is cold as a whole). No train example comes from a cold event, no history contains one
  (train, valid or test: the system never saw anyone interact with a cold item), and nothing that
  fits on training events (SASRec, popularity, the ID stage, the T5) reads one
  (``PreparedData.held_out_event_ids``);
* the leave-one-out positions are taken over the whole log, so the valid/test examples are the
  ones the same data gives without cold items; those whose target is a cold item are the *cold*
  examples, the others *warm* (``gensar.eval.groups``). Their histories are the user's earlier
  events without the cold ones, so a cold example's input shows only warm items;
* the cold items stay in the catalog with their text (a new item is in the catalog from the day it
  is listed): candidate lists are drawn over the whole catalog, so a list may hold cold items as
  target or negatives, and full ranking ranks every item;
* ``items.parquet`` lists the warm items first (in their order), then the cold ones, and
  ``cold_items.json`` names them: the catalog as the run serves it once the pipeline's ``cold``
  stage has added them after training (``gensar.ids.cold_items``). The training stages read
  ``PreparedData.training_view()``, which has the warm items only.

With ``R = 0`` (the default) nothing changes: no cold items, no ``cold_items.json``.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

__all__ = ["choose_cold_items", "cold_event_mask", "warm_first"]


def choose_cold_items(item_ids: list[str], fraction: float, seed: int) -> list[str]:
    """The cold items among ``item_ids`` (in their order): ``round(fraction * n)`` of them, at
    least one when ``fraction > 0`` and at most ``n - 1``, uniformly at random (seeded)."""
    n = len(item_ids)
    if fraction <= 0 or n < 2:
        return []
    k = min(n - 1, max(1, round(fraction * n)))
    picked = np.random.default_rng([seed, 0xC01D]).choice(n, size=k, replace=False)
    return [item_ids[i] for i in np.sort(picked).tolist()]


def cold_event_mask(events: pd.DataFrame, cold: Collection[str]) -> np.ndarray:
    """bool [n_events]: the events that click at least one item of ``cold``."""
    if not cold:
        return np.zeros(len(events), dtype=bool)
    cold = set(cold)
    clicks = (not cold.isdisjoint(items) for items in events["items"])
    return np.fromiter(clicks, dtype=bool, count=len(events))


def warm_first(items: pd.DataFrame, cold: Collection[str]) -> pd.DataFrame:
    """The items table with the cold items moved to the end (each part keeps its order)."""
    is_cold = items["item_id"].isin(set(cold)).to_numpy()
    return pd.concat([items[~is_cold], items[is_cold]], ignore_index=True)
