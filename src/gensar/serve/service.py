"""The serving service: catalog, users' histories, the events log and an engine, without HTTP.

``Service`` answers *batches* of validated requests (``gensar.serve.schemas``) synchronously; the
HTTP app feeds it through micro-batchers, the ``gensar recommend`` / ``gensar search`` commands
call it directly. Both therefore return the same JSON.

A run directory (``gensar pipeline``) holds ``data/`` (prepared data), ``ids/item_ids.json``,
``model/`` and ``metrics.json``; the ``fake`` engine needs only ``data/``. Live events go to the
event store (``gensar.serve.event_store``): ``RUN_DIR/live_events.jsonl`` unless another path or a
PostgreSQL URL is given. Added items (``POST /items``, ``gensar add-items``) go to
``RUN_DIR/live_items.jsonl`` unless another path is given; on open, added items are replayed first
(events may name them), and a writable service takes the items log for appending.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gensar.config import require
from gensar.data.prepared import PreparedData
from gensar.data.schema import make_items
from gensar.errors import GensarError
from gensar.ids.cold_start import ColdStartConfig
from gensar.serve.catalog import Catalog, ItemProblem, run_catalog
from gensar.serve.engine import Engine, HistoryEvent, RankedItem
from gensar.serve.event_store import EventStore, UserEvent, open_event_store
from gensar.serve.events import EVENTS_LOG_NAME, LoggedEvent, UserHistories, check_event
from gensar.serve.items_log import ITEMS_LOG_NAME, AddedItems, ItemsLog, read_items_log
from gensar.serve.schemas import (
    AddedItemOut,
    AddItemsResponse,
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

if TYPE_CHECKING:  # loaded on the first POST /items: it brings the RQ-VAE and the text encoder
    from gensar.ids.extend import IdExtender

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
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)  # added items' collaborative embedding

    def validate(self) -> None:
        self.cold_start.validate()
        require(self.max_batch >= 1, "max_batch", "must be >= 1")
        require(0 <= self.max_wait_ms <= 1000, "max_wait_ms", "must be in [0, 1000]")
        require(self.max_history is None or self.max_history >= 1, "max_history", "must be >= 1")
        require(self.beam_size >= 1, "beam_size", "must be >= 1")


class Service:
    def __init__(self, data: PreparedData, engine: Engine, cfg: ServeConfig, store: EventStore | None = None,
                 *, catalog: Catalog | None = None, items_log: ItemsLog | None = None,
                 ids_dir: Path | None = None) -> None:
        """``engine`` ranks ``data``'s items; ``store`` None: no live events (read-only);
        ``catalog`` (default: those items, no identifiers) may hold items added since, which the
        engine is then grown by; ``items_log``: where new ones are appended (None: read-only);
        ``ids_dir``: the run's ID stage, which gives them identifiers."""
        if engine.num_items != len(data.items):
            raise GensarError(f"engine knows {engine.num_items} items, the prepared data {len(data.items)}")
        self.catalog = catalog if catalog is not None else Catalog(data, None)
        if self.catalog.prepared != len(data.items):
            raise GensarError(f"the catalog grew from {self.catalog.prepared} items, "
                              f"the prepared data has {len(data.items)}")
        self.engine = engine
        self.cfg = cfg
        self.store: EventStore | None = store
        self.items_log = items_log
        self.ids_dir = ids_dir
        self._extender: IdExtender | None = None  # the ID stage, loaded on the first POST /items
        if self.catalog.size > len(data.items):
            engine.add_items(self.catalog.data, len(data.items), self.catalog.require_ids())
        self.item_ids: list[str] = self.catalog.data.items["item_id"].tolist()
        self.titles: list[str] = self.catalog.data.items["title"].tolist()
        self.index = self.catalog.index
        self.max_history = cfg.max_history or int(data.manifest.get("options", {}).get("max_history") or FALLBACK_HISTORY)
        self.histories = UserHistories(data.events)
        self._seen = 0  # the highest seq folded into ``histories``
        self._sync_lock = threading.Lock()
        self.sync()

    @property
    def data(self) -> PreparedData:
        """The prepared data with every added item (its events are the prepared ones)."""
        return self.catalog.data

    @classmethod
    def open(cls, run_dir: str | Path, cfg: ServeConfig, events_log: str | Path | None = None,
             writable: bool = True, store: str | None = None, items_log: str | Path | None = None) -> Service:
        """Load a run directory. ``writable``: open the event store and the items log for appending
        (with the embedded store: one server); otherwise read them only (CLI queries next to a
        running server). ``store``: the ``--store`` value (None: the events log file)."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise GensarError(f"{run_dir}: run directory not found")
        items_path = Path(items_log) if items_log is not None else run_dir / ITEMS_LOG_NAME
        catalog = run_catalog(run_dir, PreparedData.load(run_dir / "data"))
        data = catalog.base  # the trained catalog; cold items (--cold-items) and the log's grow it below
        if cfg.engine == "fake":
            from gensar.serve.fake import FakeEngine

            engine: Engine = FakeEngine(data.items, data.events)
        else:
            from gensar.hybrid.stage import chosen_ranker
            from gensar.serve.hybrid import HybridEngine

            if chosen_ranker(run_dir, cfg.engine) == "hybrid":
                engine = HybridEngine.from_run_dir(run_dir, data, beam_size=cfg.beam_size)
            else:
                from gensar.serve.generative import GenerativeEngine

                engine = GenerativeEngine.from_run_dir(run_dir, data, beam_size=cfg.beam_size)
        added = read_items_log(items_path).records
        catalog.replay(added, items_path)
        log_path = Path(events_log) if events_log is not None else run_dir / EVENTS_LOG_NAME
        known = catalog.index.__contains__
        ids_dir = run_dir / "ids"
        # first: a bad events store must not leave an items log taken
        event_store = open_event_store(store, log_path, known, writable=writable)
        writer = None
        try:
            # the items log is a one-writer file: with a shared store (several processes) the
            # catalog is served as replayed, and POST /items is refused until items move into the store
            if writable and store is None:
                writer = ItemsLog(items_path)
                if len(writer.records) != len(added):  # appended between the replay and taking the lock
                    raise GensarError(f"{items_path}: items were added while the server started; start it again")
            return cls(data, engine, cfg, event_store, catalog=catalog, items_log=writer, ids_dir=ids_dir)
        except BaseException:
            if writer is not None:
                writer.close()
            event_store.close()
            raise

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.items_log is not None:
            self.items_log.close()
            self.items_log = None

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

    def item_problem(self, items: Sequence[dict[str, Any]]) -> ItemProblem | None:
        """Why new ``items`` (canonical fields) cannot join the catalog (beyond the schema), or None."""
        return self.catalog.item_problem(items)

    def add_items(self, items: Sequence[dict[str, Any]]) -> AddItemsResponse:
        """Give ``items`` identifiers, log them (fsynced) and serve them from now on; blocking, so
        run it where the engine runs (the engine thread). An ``ItemProblem`` when one does not fit."""
        if self.items_log is None:
            raise GensarError("this service was opened read-only: items cannot be added")
        problem = self.catalog.item_problem(items)
        if problem is not None:
            raise problem
        existing = self.catalog.require_ids()
        ids = self._id_extender().assign(make_items(list(items)), self.catalog.data.items, existing)
        record = self.items_log.append(items, ids, then=self._grow)
        return AddItemsResponse(seq=record.seq, catalog_items=self.catalog.size, items=[
            AddedItemOut(item_id=i.item_id, index=self.index[i.item_id], semantic_id=list(i.semantic),
                         collaborative_id=list(i.collaborative)) for i in record.items])

    def _grow(self, record: AddedItems) -> None:
        start = self.catalog.size
        self.titles.extend(i.item["title"] for i in record.items)  # first: the catalog's index publishes them
        self.item_ids.extend(i.item_id for i in record.items)
        self.catalog.add(record.items)
        self.engine.add_items(self.catalog.data, start, self.catalog.require_ids())

    def _id_extender(self) -> IdExtender:
        if self._extender is None:
            from gensar.ids.extend import IdExtender

            if self.ids_dir is None:
                raise GensarError("this service has no ID stage to give new items identifiers")
            self._extender = IdExtender.from_dir(self.ids_dir, self.catalog.prepared, self.catalog.vocabulary,
                                                 self.cfg.cold_start)
        return self._extender

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
