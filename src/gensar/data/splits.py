"""Leave-one-out splits per user and per behavior, and each example's history.

For each user and each behavior separately, events are taken in time order:

* the last event is the *test* example, the one before it the *valid* example, the rest *train*;
* a user with fewer than ``min_events`` events of a behavior contributes only train examples of
  that behavior (with ``min_events=3`` every evaluated user also has at least one train example);
* a search session yields one train example per clicked item, but a valid/test session is
  evaluated on its first clicked item only (one example, so each user has at most one valid and
  one test example per behavior, and ranking metrics stay one-target-per-list).

Every example carries the user's *history*: the event ids of that user's events with a timestamp
strictly earlier than the target event, the last ``max_history`` of them, oldest first. Events
with the same timestamp never see each other, which keeps the search twin of a rec event (the
``duplicate`` protocol) out of its history and vice versa. A *train* example's history also skips
every valid/test event of either behavior (a rec train example after the user's test search
would otherwise see that search's query and item), so nothing held out is ever seen in training;
valid/test histories keep all earlier events, as at serving time.

*Cold events* (``cold``: the events that click a cold item, ``gensar.data.cold``) keep their
leave-one-out positions, so the valid/test examples do not change; but no train example comes
from one, and no history of any split contains one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gensar.data.prepared import EXAMPLE_COLUMNS
from gensar.data.schema import SEARCH


def history_bounds(events: pd.DataFrame, max_history: int) -> tuple[np.ndarray, np.ndarray]:
    """Per event row, the half-open event-id range ``[lo, hi)`` of its history.

    Relies on the canonical order (sorted by user, timestamp; event_id = row), so a history is
    a contiguous run of rows: from the user's first event up to the first event that shares the
    target's timestamp.
    """
    n = len(events)
    idx = np.arange(n)
    user = events["user_id"].to_numpy()
    ts = events["timestamp"].to_numpy()
    new_user = np.ones(n, dtype=bool)
    new_user[1:] = user[1:] != user[:-1]
    new_time = new_user.copy()
    new_time[1:] |= ts[1:] != ts[:-1]
    user_start = np.maximum.accumulate(np.where(new_user, idx, 0))  # (n,)
    hi = np.maximum.accumulate(np.where(new_time, idx, 0))  # (n,) first row with this user+timestamp
    lo = np.maximum(user_start, hi - max_history)  # (n,)
    return lo, hi


def leave_one_out(events: pd.DataFrame, max_history: int = 5, min_events: int = 3,
                  cold: np.ndarray | None = None) -> pd.DataFrame:
    """The examples table (columns ``EXAMPLE_COLUMNS``), ordered by event then click position.

    ``cold``: bool [n_events], the cold events (module doc); None = none."""
    if not (events["event_id"].to_numpy() == np.arange(len(events))).all():
        raise ValueError("events must be in canonical order (event_id = row number)")
    # Rank of each event from the end, within (user, behavior).
    grouped = events.groupby(["user_id", "behavior"], sort=False)
    from_end = grouped.cumcount(ascending=False).to_numpy()
    size = grouped["event_id"].transform("size").to_numpy()
    evaluated = size >= min_events
    split = np.full(len(events), "train", dtype=object)
    split[evaluated & (from_end == 1)] = "valid"
    split[evaluated & (from_end == 0)] = "test"
    cold = np.zeros(len(events), dtype=bool) if cold is None else np.asarray(cold, dtype=bool)
    lo, hi = history_bounds(events, max_history)
    histories = _histories(events, split, lo, hi, max_history, cold)

    # One example per clicked item of train search sessions, else one per event (first item);
    # none from a cold train event.
    is_search = (events["behavior"] == SEARCH).to_numpy()
    lengths = np.fromiter((len(its) for its in events["items"]), dtype=np.int64, count=len(events))
    per_event = np.where(is_search & (split == "train"), lengths, 1)
    per_event = np.where(cold & (split == "train"), 0, per_event)
    rows = np.repeat(np.arange(len(events)), per_event)  # (n_examples,) event row of each example
    click = np.arange(len(rows)) - np.repeat(np.cumsum(per_event) - per_event, per_event)
    items = events["items"].to_numpy()
    examples = pd.DataFrame({
        "example_id": np.arange(len(rows), dtype=np.int64),
        "user_id": events["user_id"].to_numpy()[rows],
        "split": split[rows],
        "behavior": events["behavior"].to_numpy()[rows],
        "event_id": events["event_id"].to_numpy()[rows].astype(np.int64),
        "query": events["query"].to_numpy()[rows],
        "target": [items[r][c] for r, c in zip(rows.tolist(), click.tolist(), strict=True)],
        "history": [histories[r] for r in rows.tolist()],
    })
    return examples[list(EXAMPLE_COLUMNS)]


def _histories(events: pd.DataFrame, split: np.ndarray, lo: np.ndarray, hi: np.ndarray,
               max_history: int, cold: np.ndarray) -> list[list[int]]:
    """Per event row, its history's event ids: train rows skip the user's held-out and cold events,
    valid/test rows the cold ones."""
    held = split != "train"  # (n,)
    hidden = {True: cold, False: held | cold}  # what a held-out / a train row's history skips
    user = events["user_id"].to_numpy()
    first_hidden: dict[bool, dict[str, int]] = {}
    for is_held, mask in hidden.items():
        first: dict[str, int] = {}
        for row in np.flatnonzero(mask).tolist():
            first.setdefault(user[row], row)
        first_hidden[is_held] = first
    out = []
    for row, (a, b) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
        skip = hidden[bool(held[row])]
        start = first_hidden[bool(held[row])].get(user[row])
        if start is None or start >= b:
            out.append(list(range(a, b)))
            continue
        # Walk back from the target, skipping hidden events, until max_history are kept.
        kept: list[int] = []
        r = b - 1
        while r >= 0 and user[r] == user[row] and len(kept) < max_history:
            if not skip[r]:
                kept.append(r)
            r -= 1
        out.append(kept[::-1])
    return out
