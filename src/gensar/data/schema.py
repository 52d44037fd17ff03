"""The canonical schema: items, and a time-ordered log of rec interactions and search sessions.

Tables are pandas DataFrames with fixed columns (documented in the README, "Data model"):

items    item_id:str, title:str, categories:list[str] (category path, root first),
         description:str, brand:str. Row order = item index used by embeddings and IDs.
events   event_id:int64, user_id:str, timestamp:int64, behavior:"rec"|"search",
         query:str ("" for rec), items:list[str] (one clicked item for rec, >=1 for search).
         Sorted by (user_id, timestamp, event_id); event_id is the row number.

A ``RawDataset`` is what a loader returns (events may all be "rec" when the source has no
search log); a prepared directory adds examples and evaluation candidates (see prepared.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import pandas as pd

from gensar.errors import InputError

REC = "rec"
SEARCH = "search"
BEHAVIORS = (REC, SEARCH)

ITEM_COLUMNS = ("item_id", "title", "categories", "description", "brand")
EVENT_COLUMNS = ("event_id", "user_id", "timestamp", "behavior", "query", "items")


@dataclass
class RawDataset:
    """Items and events as loaded from a source, before semi-synthetic search and splits."""

    items: pd.DataFrame
    events: pd.DataFrame
    source: str
    format: str
    info: dict = field(default_factory=dict)


def make_items(records: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Normalize item records to the canonical item table (missing text fields become '')."""
    df = pd.DataFrame(records).copy()
    if "item_id" not in df.columns:
        raise InputError("missing required column", field="item_id")
    df["item_id"] = df["item_id"].astype(str)
    for col in ("title", "description", "brand"):
        if col not in df.columns:
            df[col] = ""
        df[col] = df[col].fillna("").astype(str)
    if "categories" not in df.columns:
        df["categories"] = [[] for _ in range(len(df))]
    df["categories"] = [_as_str_list(v) for v in df["categories"]]
    return df[list(ITEM_COLUMNS)].reset_index(drop=True)


def make_events(records: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Normalize event records to the canonical event table, sorted, with fresh event ids."""
    df = pd.DataFrame(records).copy()
    for col in ("user_id", "timestamp", "items"):
        if col not in df.columns:
            raise InputError("missing required column", field=col)
    if "behavior" not in df.columns:
        df["behavior"] = REC
    df["behavior"] = df["behavior"].fillna(REC)
    if "query" not in df.columns:
        df["query"] = ""
    df["user_id"] = df["user_id"].astype(str)
    df["timestamp"] = df["timestamp"].astype(np.int64)
    df["query"] = df["query"].fillna("").astype(str)
    df["items"] = [_as_str_list(v) for v in df["items"]]
    df = df.reset_index(drop=True)
    df["_order"] = np.arange(len(df))
    df = df.sort_values(["user_id", "timestamp", "_order"], kind="stable").reset_index(drop=True)
    df["event_id"] = np.arange(len(df), dtype=np.int64)
    return df[list(EVENT_COLUMNS)]


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # NUL, newline, tab, ...: never part of an id
_LINE_BREAK = re.compile(r"[\x00\n\r]")  # a query may hold a tab, not a line break (CSV rows, logs)


def event_problem(user_id: str, behavior: str, query: str, items: Sequence[str]) -> tuple[str, str] | None:
    """(field, why) when an event is not acceptable, else None.

    The one validation of an event's fields, shared by every loader (through ``validate``), the
    canonical reader (which adds the line) and the live ``/events`` API and log, so the server
    never accepts an event that ``gensar prepare`` would reject.
    """
    if not user_id.strip():
        return "user_id", "user_id must not be empty"
    if _CONTROL.search(user_id):
        return "user_id", f"user id {user_id!r} contains a control character (NUL, newline, tab, ...)"
    if behavior not in BEHAVIORS:
        return "behavior", f"behavior must be 'rec' or 'search', got '{behavior}'"
    if behavior == REC:
        if len(items) != 1:
            return "items", "a rec event names exactly one clicked item"
        if query:
            return "query", "a rec event has no query"
    elif not query.strip():
        return "query", "a search event needs a non-empty query"
    if _LINE_BREAK.search(query):
        return "query", f"query {query!r} contains a NUL or a line break"
    if not items:
        return "items", "an event names at least one item"
    seen: set[str] = set()
    for item in items:
        if item in seen:
            return "items", f"item '{item}' is listed twice"
        seen.add(item)
    return None


def validate(items: pd.DataFrame, events: pd.DataFrame, source: str = "") -> None:
    """Check invariants every consumer relies on; raise InputError naming what is wrong."""
    dup = items["item_id"].duplicated()
    if dup.any():
        raise InputError(f"duplicate item id '{items['item_id'][dup].iloc[0]}'", path=source or None, field="item_id")
    if len(items) == 0:
        raise InputError("no items", path=source or None)
    if len(events) == 0:
        raise InputError("no interactions", path=source or None)
    bad = ~events["behavior"].isin(BEHAVIORS)
    if bad.any():
        raise InputError(f"behavior must be 'rec' or 'search', got '{events['behavior'][bad].iloc[0]}'", path=source or None, field="behavior")
    known = set(items["item_id"])
    # The checks below, row by row, would take most of a prepare at millions of events: run them
    # only on the rows a vectorized pass finds suspect, so the first bad row and its message stay
    # those of the full loop.
    for row in events.iloc[np.flatnonzero(_suspect_events(events, known))].itertuples(index=False):
        if not row.items:
            raise InputError(f"event of user '{row.user_id}' has no items", path=source or None, field="items")
        for it in row.items:
            if it not in known:
                raise InputError(f"interaction names unknown item '{it}' (user '{row.user_id}')", path=source or None, field="item_id")
        if row.behavior == SEARCH and not row.query.strip():
            raise InputError(f"search session of user '{row.user_id}' has an empty query", path=source or None, field="query")
        problem = event_problem(row.user_id, row.behavior, row.query, row.items)
        if problem is not None:
            raise InputError(f"{problem[1]} (user {row.user_id!r})", path=source or None, field=problem[0])


def _suspect_events(events: pd.DataFrame, known: set[str]) -> np.ndarray:
    """[n] bool: the events that fail a check of ``validate``'s loop (unknown or repeated items, no
    items, a bad user id, query or rec/search shape), computed per column and per distinct value."""
    lengths = np.fromiter((len(x) for x in events["items"]), dtype=np.int64, count=len(events))
    flat = pd.Series(list(chain.from_iterable(events["items"])), dtype=object)
    owner = np.repeat(np.arange(len(events)), lengths)
    suspect = lengths == 0
    suspect[owner[~flat.isin(known).to_numpy()]] = True
    repeated = pd.DataFrame({"owner": owner, "item": flat}).duplicated().to_numpy()
    suspect[owner[repeated]] = True
    users = events["user_id"]
    bad_users = {u for u in users.unique() if not u.strip() or _CONTROL.search(u)}
    queries = events["query"]
    distinct = queries.unique()
    blank = queries.isin({q for q in distinct if not q.strip()}).to_numpy()
    broken = queries.isin({q for q in distinct if _LINE_BREAK.search(q)}).to_numpy()
    rec = (events["behavior"] == REC).to_numpy()
    suspect |= users.isin(bad_users).to_numpy() | broken | (~rec & blank)
    suspect |= rec & ((lengths != 1) | (queries != "").to_numpy())
    suspect |= ~events["behavior"].isin(BEHAVIORS).to_numpy()
    return suspect


def item_text(title: str, categories: list[str], brand: str, description: str, max_chars: int = 1000) -> str:
    """The text of an item for encoders and BM25: 'title. category path. brand. description'."""
    parts = [title.strip(), " ".join(c.strip() for c in categories if c and c.strip()), brand.strip(), description.strip()]
    text = ". ".join(p for p in parts if p)
    return text[:max_chars]


def item_texts(items: pd.DataFrame, max_chars: int = 1000) -> list[str]:
    return [
        item_text(r.title, list(r.categories), r.brand, r.description, max_chars)
        for r in items.itertuples(index=False)
    ]


def _as_str_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, float) and np.isnan(value):
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in list(value)]  # type: ignore[call-overload]
