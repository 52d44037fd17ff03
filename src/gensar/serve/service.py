"""The serving service: catalog, users' histories, the events log and an engine, without HTTP.

``Service`` answers *batches* of validated requests (``gensar.serve.schemas``) synchronously; the
HTTP app feeds it through micro-batchers, the ``gensar recommend`` / ``gensar search`` commands
call it directly. Both therefore return the same JSON.

A run directory (``gensar pipeline``) holds ``data/`` (prepared data), ``ids/item_ids.json``,
``model/`` and ``metrics.json``; the ``fake`` engine needs only ``data/``. Live events go to the
event store (``gensar.serve.event_store``): ``RUN_DIR/live_events.jsonl`` unless another path or a
PostgreSQL URL is given.

Users' histories are the prepared data's events followed by the store's records in seq order. With
a shared store (PostgreSQL, several server processes) other processes append too, so every answer
that reads histories first folds in the records appended since the last one it saw (``sync``: one
indexed query); a posted event is folded in the same way, so every process holds the same order.

Unknown users are served from an empty history (``known_user: false``): recommendations then
depend on the model alone, and search is ad-hoc search.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gensar.config import require
from gensar.data.prepared import PreparedData
from gensar.errors import GensarError
from gensar.serve.engine import Engine, HistoryEvent, RankedItem
from gensar.serve.event_store import EventStore, UserEvent, open_event_store
from gensar.serve.events import EVENTS_LOG_NAME, LoggedEvent, UserHistories, check_event
from gensar.serve.schemas import (
    EventRequest,
    EventResponse,
    HistoryEventOut,
    HistoryResponse,
    ItemRef,
    ItemResponse,
    RecommendRequest,
    RecommendResponse,
    ScoredItem,
    ScoredQuery,
    SearchRequest,
    SearchResponse,
    SuggestRequest,
    SuggestResponse,
)

# auto: the hybrid ranker when the run has one (RUN_DIR/hybrid/fusion.json), else the generative model
EngineKind = Literal["auto", "hybrid", "generative", "fake"]
FALLBACK_HISTORY = 50  # events per history when neither the config nor the prepared data says


@dataclass(frozen=True)
class ServeConfig:
    engine: EngineKind = "auto"
    max_batch: int = 32  # requests decoded together
    max_wait_ms: float = 2.0  # how long a batch waits to fill
    # Newest events handed to the engine (it may keep fewer to fit its input length). None: the
    # prepared data's max_history, i.e. the history length the model was trained with.
    max_history: int | None = None
    beam_size: int = 30  # generative engine; a request for more items widens the beam to k

    def validate(self) -> None:
        require(self.max_batch >= 1, "max_batch", "must be >= 1")
        require(0 <= self.max_wait_ms <= 1000, "max_wait_ms", "must be in [0, 1000]")
        require(self.max_history is None or self.max_history >= 1, "max_history", "must be >= 1")
        require(self.beam_size >= 1, "beam_size", "must be >= 1")


class Service:
    def __init__(self, data: PreparedData, engine: Engine, cfg: ServeConfig, store: EventStore | None = None) -> None:
        """``store`` None: no live events (read-only)."""
        if engine.num_items != len(data.items):
            raise GensarError(f"engine knows {engine.num_items} items, the prepared data {len(data.items)}")
        self.data = data
        self.engine = engine
        self.cfg = cfg
        self.store: EventStore | None = store
        self.item_ids: list[str] = data.items["item_id"].tolist()
        self.titles: list[str] = data.items["title"].tolist()
        self.index = data.item_index
        self.max_history = cfg.max_history or int(data.manifest.get("options", {}).get("max_history") or FALLBACK_HISTORY)
        self.histories = UserHistories(data.events)
        self._seen = 0  # the highest seq folded into ``histories``
        self._sync_lock = threading.Lock()
        self.sync()

    @classmethod
    def open(cls, run_dir: str | Path, cfg: ServeConfig, events_log: str | Path | None = None,
             writable: bool = True, store: str | None = None) -> Service:
        """Load a run directory. ``writable``: open the event store for appending (with the
        embedded store: one server); otherwise read it only (CLI queries next to a running
        server). ``store``: the ``--store`` value (None: the events log file)."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise GensarError(f"{run_dir}: run directory not found")
        data = PreparedData.load(run_dir / "data")
        if cfg.engine == "fake":
            from gensar.serve.fake import FakeEngine

            engine: Engine = FakeEngine(data.items, data.events)
        else:
            from gensar.serve.hybrid import HybridEngine, has_hybrid

            if cfg.engine == "hybrid" or (cfg.engine == "auto" and has_hybrid(run_dir)):
                engine = HybridEngine.from_run_dir(run_dir, data, beam_size=cfg.beam_size)
            else:
                from gensar.serve.generative import GenerativeEngine

                engine = GenerativeEngine.from_run_dir(run_dir, data, beam_size=cfg.beam_size)
        log_path = Path(events_log) if events_log is not None else run_dir / EVENTS_LOG_NAME
        event_store = open_event_store(store, log_path, data.item_index.__contains__, writable=writable)
        try:
            return cls(data, engine, cfg, event_store)
        except BaseException:
            event_store.close()
            raise

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def sync(self) -> int:
        """Fold in the records other processes appended since the last call; how many there were."""
        if self.store is None:
            return 0
        with self._sync_lock:  # one fold at a time: a record is never added twice
            new = self.store.since(self._seen)
            for acked in new:
                self.histories.add(LoggedEvent(acked.seq, acked.record.user_id, acked.record.event))
            if new:
                self._seen = new[-1].seq
        return len(new)

    # ---- batched answers (called from one worker thread) -----------------------------------
    def recommend(self, requests: Sequence[RecommendRequest]) -> list[RecommendResponse]:
        self.sync()
        histories = [self._history(r.user_id) for r in requests]
        ranked = self.engine.recommend(histories, max(r.k for r in requests))
        return [RecommendResponse(user_id=r.user_id, known_user=r.user_id in self.histories,
                                  history_length=self.histories.length(r.user_id), items=self._items(rank, r.k))
                for r, rank in zip(requests, ranked, strict=True)]

    def search(self, requests: Sequence[SearchRequest]) -> list[SearchResponse]:
        self.sync()
        histories = [self._history(r.user_id) for r in requests]
        ranked = self.engine.search([r.query for r in requests], histories, max(r.k for r in requests))
        return [SearchResponse(query=r.query, user_id=r.user_id, known_user=r.user_id in self.histories,
                               history_length=self.histories.length(r.user_id), items=self._items(rank, r.k))
                for r, rank in zip(requests, ranked, strict=True)]

    def suggest(self, requests: Sequence[SuggestRequest]) -> list[SuggestResponse]:
        self.sync()
        histories = [self._history(r.user_id) for r in requests]
        ranked = self.engine.suggest_queries(histories, max(r.k for r in requests))
        return [SuggestResponse(user_id=r.user_id, known_user=r.user_id in self.histories,
                                history_length=self.histories.length(r.user_id),
                                queries=[ScoredQuery(query=q.text, score=q.score)
                                         for q in rank[: r.k] if math.isfinite(q.score)])
                for r, rank in zip(requests, ranked, strict=True)]

    # ---- events and lookups ------------------------------------------------------------------
    def event_problem(self, req: EventRequest) -> str | None:
        """Why the event cannot be accepted (beyond what the schema checks), or None."""
        return check_event(req.user_id, self._event(req), self.index.__contains__)

    def add_event(self, req: EventRequest) -> EventResponse:
        """Store (fsynced / committed) and apply one event; blocking, so call it off the event loop."""
        if self.store is None or not self.store.writable:
            raise GensarError("this service was opened read-only: events cannot be recorded")
        event = self._event(req)
        problem = check_event(req.user_id, event, self.index.__contains__)
        if problem is not None:
            raise GensarError(problem)
        seq = self.store.append(UserEvent(req.user_id, event))
        self.sync()  # folds this event in, after any other process's earlier ones
        return EventResponse(user_id=req.user_id, seq=seq, history_length=self.histories.length(req.user_id))

    def item(self, item_id: str) -> ItemResponse | None:
        i = self.index.get(item_id)
        if i is None:
            return None
        row = self.data.items.iloc[i]
        return ItemResponse(item_id=item_id, index=i, title=row["title"], categories=list(row["categories"]),
                            brand=row["brand"], description=row["description"])

    def history(self, user_id: str, last: int) -> HistoryResponse:
        self.sync()
        events = self.histories.get(user_id, last=last)
        return HistoryResponse(
            user_id=user_id, known_user=user_id in self.histories, history_length=self.histories.length(user_id),
            events=[HistoryEventOut(behavior=e.behavior, query=e.query, timestamp=e.timestamp,  # type: ignore[arg-type]
                                    items=[ItemRef(item_id=i, title=self.titles[self.index[i]]) for i in e.items])
                    for e in events])

    def users(self, prefix: str, limit: int) -> tuple[list[str], int]:
        self.sync()
        return self.histories.users(prefix, limit)

    # ---- pieces ------------------------------------------------------------------------------
    def _history(self, user_id: str | None) -> tuple[HistoryEvent, ...]:
        return self.histories.get(user_id, last=self.max_history)

    @staticmethod
    def _event(req: EventRequest) -> HistoryEvent:
        ts = req.timestamp if req.timestamp is not None else int(time.time())
        return HistoryEvent(req.behavior, req.query, tuple(req.items), ts)

    def _items(self, ranked: Sequence[RankedItem], k: int) -> list[ScoredItem]:
        # Engines mark "no item" with an invalid index or a -inf score; JSON has no infinities.
        return [ScoredItem(item_id=self.item_ids[r.index], title=self.titles[r.index], score=r.score)
                for r in ranked[:k] if 0 <= r.index < len(self.item_ids) and math.isfinite(r.score)]
