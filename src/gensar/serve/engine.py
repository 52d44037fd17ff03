"""What the server asks of a model: the ``Engine`` protocol and the values it exchanges.

Every call is batched: lists in, one ranked list per input out, best first. Items are named by
their *item index* (row of the prepared ``items`` table, the index used by embeddings and
identifiers), so an engine never deals with ids or titles; the service maps them back.

A user history is a time-ordered sequence of ``HistoryEvent`` (oldest first) with the fields of
the canonical events table (``gensar.data.schema``): a rec interaction names one clicked item and
no query, a search session a query and the items clicked for it.

Two engines implement the protocol: ``gensar.serve.generative.GenerativeEngine`` (the trained
GenSAR model, constrained beam search over item identifiers) and
``gensar.serve.fake.FakeEngine`` (popularity + word overlap, deterministic and model-free, for
tests and for trying the API before a model is trained).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from gensar.data.prepared import PreparedData
from gensar.data.schema import REC, SEARCH
from gensar.ids.item_ids import IdMaps


@dataclass(frozen=True)
class HistoryEvent:
    """One event of a user's history (same fields as a row of the canonical events table)."""

    behavior: str  # "rec" | "search"
    query: str  # "" for rec
    items: tuple[str, ...]  # item ids: the clicked item (rec) or the items clicked for the query
    timestamp: int = 0

    def __post_init__(self) -> None:
        if self.behavior not in (REC, SEARCH):
            raise ValueError(f"behavior must be '{REC}' or '{SEARCH}', got {self.behavior!r}")
        if not self.items:
            raise ValueError("an event names at least one item")


History = Sequence[HistoryEvent]  # oldest first


class RankedItem(NamedTuple):
    index: int  # item index (row of the prepared items table)
    score: float  # engine-specific; higher is better (a log-probability for the generative engine)


class RankedQuery(NamedTuple):
    text: str
    score: float


class Engine(Protocol):
    """A batched recommender + searcher + query suggester over one catalog."""

    name: str
    num_items: int

    def recommend(self, histories: Sequence[History], k: int) -> list[list[RankedItem]]:
        """Up to ``k`` items per history, best first."""
        ...

    def search(self, queries: Sequence[str], histories: Sequence[History], k: int) -> list[list[RankedItem]]:
        """Up to ``k`` items per (query, history) pair, best first; an empty history is ad-hoc search."""
        ...

    def suggest_queries(self, histories: Sequence[History], k: int) -> list[list[RankedQuery]]:
        """Up to ``k`` queries the user is likely to issue next, best first."""
        ...

    def add_items(self, data: PreparedData, start: int, ids: IdMaps) -> None:
        """Rows ``start:`` of ``data.items`` joined the catalog (nothing retrained): rank them from
        now on. ``data``: the grown catalog (events unchanged); ``ids``: every item's identifiers."""
        ...
