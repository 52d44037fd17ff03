"""Iterative user/item k-core filtering of an interaction log.

An *interaction* is one clicked item of one event (a rec event has one, a search session may have
several). Each round counts interactions per user and per item over what is left and drops every
interaction of a user or item with fewer than ``k``; rounds repeat until nothing changes, so in the
result every user and every item has at least ``k`` interactions. A search session that loses some
clicked items keeps the rest; an event that loses all of them is dropped. Items that end with no
interaction leave the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gensar.data.schema import make_events


@dataclass(frozen=True)
class LogCounts:
    users: int
    items: int
    interactions: int

    def as_dict(self) -> dict[str, int]:
        return {"users": self.users, "items": self.items, "interactions": self.interactions}


@dataclass(frozen=True)
class KCoreResult:
    items: pd.DataFrame
    events: pd.DataFrame
    k: int
    rounds: int  # rounds that removed something
    before: LogCounts
    after: LogCounts

    def summary(self) -> dict:
        before, after = self.before.as_dict(), self.after.as_dict()
        return {"k": self.k, "rounds": self.rounds, "before": before, "after": after}


def interactions(events: pd.DataFrame) -> pd.DataFrame:
    """One row per (event, clicked item): columns ``row`` (event row), ``user_id``, ``item_id``."""
    lengths = np.fromiter((len(its) for its in events["items"]), dtype=np.int64, count=len(events))
    rows = np.repeat(np.arange(len(events)), lengths)
    return pd.DataFrame({
        "row": rows,
        "user_id": events["user_id"].to_numpy()[rows],
        "item_id": np.array([it for its in events["items"] for it in its], dtype=object),
    })


def log_counts(events: pd.DataFrame) -> LogCounts:
    inter = interactions(events)
    return LogCounts(int(inter["user_id"].nunique()), int(inter["item_id"].nunique()), len(inter))


def kcore(items: pd.DataFrame, events: pd.DataFrame, k: int) -> KCoreResult:
    """Keep the largest sub-log where every user and item has >= ``k`` interactions (k <= 1: no-op)."""
    inter = interactions(events)
    before = LogCounts(int(inter["user_id"].nunique()), int(inter["item_id"].nunique()), len(inter))
    if k <= 1:
        return KCoreResult(items=items, events=events, k=k, rounds=0, before=before, after=before)
    rounds = 0
    while True:
        user_n = inter["user_id"].map(inter["user_id"].value_counts())
        item_n = inter["item_id"].map(inter["item_id"].value_counts())
        keep = (user_n >= k) & (item_n >= k)
        if keep.all():
            break
        inter = inter[keep.to_numpy()]
        rounds += 1
    # Rebuild events from the surviving interactions, keeping each event's click order.
    kept_items = inter.groupby("row", sort=True)["item_id"].agg(list)
    out = events.iloc[kept_items.index.to_numpy()].copy()
    out["items"] = kept_items.to_list()
    surviving = set(inter["item_id"])
    new_items = items[items["item_id"].isin(surviving)].reset_index(drop=True)
    new_events = make_events(out.drop(columns="event_id").reset_index(drop=True))
    after = LogCounts(int(inter["user_id"].nunique()), len(surviving), len(inter))
    return KCoreResult(items=new_items, events=new_events, k=k, rounds=rounds, before=before, after=after)
