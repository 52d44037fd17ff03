"""Search twins: one interaction logged twice.

Under the ``duplicate`` protocol (``gensar.data.queries``) every interaction is both a rec event and,
right after it, a search session of the same items at the same timestamp. Models of the item
sequence alone (SASRec, and the history-based features of the hybrid) read the twin as a second
click: every item twice in a row, half of SASRec's training positions teach it to repeat the last
item, and its window of ``max_len`` items covers half as many interactions. They skip twins; the
generative model keeps both events (its input tells the two behaviors apart, as the paper's does).

A twin is an event whose predecessor (the same user's previous event) has the other behavior, the
same items and the same timestamp: a real repeat, even of the same item, happens later.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["is_twin", "twin_mask"]


def is_twin(prev_behavior: str, prev_items: Sequence[str], prev_time: int,
            behavior: str, items: Sequence[str], timestamp: int) -> bool:
    """Whether an event repeats the event just before it in the other behavior (see the module doc)."""
    return prev_behavior != behavior and prev_time == timestamp and tuple(prev_items) == tuple(items)


def twin_mask(events: pd.DataFrame) -> np.ndarray:
    """bool [n] per row of a canonical events table (sorted by user, then timestamp): is it a twin.
    Vectorized over the rows (millions of events); only rows that follow an event of the same user,
    the other behavior and the same timestamp have their items compared."""
    users = events["user_id"].to_numpy()
    behaviors = events["behavior"].to_numpy()
    times = events["timestamp"].to_numpy()
    items = events["items"].to_numpy()
    out = np.zeros(len(events), dtype=bool)
    near = np.zeros(len(events), dtype=bool)
    near[1:] = (users[1:] == users[:-1]) & (behaviors[1:] != behaviors[:-1]) & (times[1:] == times[:-1])
    for row in np.flatnonzero(near):
        out[row] = is_twin(behaviors[row - 1], items[row - 1], times[row - 1], behaviors[row], items[row], times[row])
    return out
