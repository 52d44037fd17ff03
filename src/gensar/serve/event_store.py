"""Users' events as a ``RecordStore`` stream: the record kind, the embedded (file log) store, the selector.

``open_event_store`` is what the server and the CLI call: ``--store`` absent (or ``file``) keeps
the JSONL events log of ``gensar.serve.events`` (one writing process, as before), a
``postgresql://`` URL the ``events`` stream of that database (``gensar.serve.pgstore``), shared by
every process and machine pointed at it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gensar.errors import GensarError
from gensar.serve.engine import HistoryEvent
from gensar.serve.events import EventLog, LoggedEvent, event_from_json, read_log
from gensar.serve.store import Acked, RecordStore, open_store

__all__ = ["EVENTS_STREAM", "EventKind", "EventStore", "FileEventStore", "UserEvent", "open_event_store"]

EVENTS_STREAM = "events"


@dataclass(frozen=True)
class UserEvent:
    """One record of the events stream: whose event, and the event."""

    user_id: str
    event: HistoryEvent


EventStore = RecordStore[UserEvent]


class EventKind:
    """How an event is kept as JSON; loading checks it against the catalog like a posted event."""

    stream = EVENTS_STREAM

    def __init__(self, known_item: Callable[[str], bool]) -> None:
        self.known_item = known_item

    def dump(self, record: UserEvent) -> dict[str, Any]:
        e = record.event
        return {"user_id": record.user_id, "behavior": e.behavior, "query": e.query, "items": list(e.items),
                "timestamp": e.timestamp}

    def load(self, body: Any, where: str) -> UserEvent:
        if not isinstance(body, dict):
            raise GensarError(f"{where}: expected a JSON object, got {type(body).__name__}")
        user_id, event = event_from_json(body, self.known_item, where)
        return UserEvent(user_id, event)


class FileEventStore:
    """The embedded store: the JSONL events log (``EventLog`` when writable, a replay otherwise).

    Only this process writes the file, so ``since`` answers from the records it replayed and
    appended, kept in order (record ``seq`` is at index ``seq - 1``: the log's seqs count from 1
    without gaps).
    """

    shared = False

    def __init__(self, path: str | Path, known_item: Callable[[str], bool], writable: bool = True) -> None:
        self.where = str(path)
        self.writable = writable
        self._log: EventLog | None = EventLog(path, known_item) if writable else None
        self._records: list[LoggedEvent] = list(self._log.records if self._log is not None else read_log(path, known_item)[0])
        self._lock = threading.Lock()

    def append(self, record: UserEvent) -> int:
        if self._log is None:
            raise GensarError(f"{self.where}: opened read-only: events cannot be recorded")
        # ``then`` runs under the log's lock, so the list stays in seq order with concurrent appends.
        return self._log.append(record.user_id, record.event, then=self._keep).seq

    def _keep(self, logged: LoggedEvent) -> None:
        with self._lock:
            self._records.append(logged)

    def since(self, seq: int) -> list[Acked[UserEvent]]:
        with self._lock:
            new = self._records[max(seq, 0):]
        return [Acked(r.seq, UserEvent(r.user_id, r.event)) for r in new]

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def open_event_store(store: str | None, log_path: str | Path, known_item: Callable[[str], bool],
                     writable: bool = True) -> EventStore:
    """The events stream ``--store`` names (``log_path``: the embedded store's file)."""
    return open_store(store, EventKind(known_item), lambda: FileEventStore(log_path, known_item, writable),
                      writable=writable)
