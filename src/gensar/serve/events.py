"""Live events: an append-only JSONL log, and users' histories (prepared data + the log).

A client posts a recommendation click or a search session; the server appends it to the log,
``fsync``s, and only then adds it to the user's in-memory history and acknowledges. The next
request for that user decodes from the longer history; nothing is retrained.

Log format (``gensar.serve.append_log``: fsynced appends, replay on start, a torn last line skipped
with a warning and cut off by the next writer, one writer at a time), one record per line::

    {"seq": 1, "user_id": "u7", "behavior": "search", "query": "usb microscope",
     "items": ["B00X1"], "timestamp": 1718000000}

Any malformed complete line, or one naming an item the catalog lacks, is an ``InputError`` naming
file and line (the server refuses to start rather than silently drop acknowledged events).
Readers (``gensar recommend`` while a server runs) replay it read-only.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gensar.data.schema import REC, SEARCH, event_problem
from gensar.errors import InputError
from gensar.io import json_object
from gensar.serve.append_log import AppendLog, Replay, read_records
from gensar.serve.engine import HistoryEvent

log = logging.getLogger(__name__)

EVENTS_LOG_NAME = "live_events.jsonl"
WHAT = "events log"

@dataclass(frozen=True)
class LoggedEvent:
    """One record of the log."""

    seq: int
    user_id: str
    event: HistoryEvent

    def to_json(self) -> str:
        e = self.event
        return json.dumps({"seq": self.seq, "user_id": self.user_id, "behavior": e.behavior, "query": e.query,
                           "items": list(e.items), "timestamp": e.timestamp}, ensure_ascii=False)


def check_event(user_id: str, event: HistoryEvent, known_item: Callable[[str], bool]) -> str | None:
    """Why (user, event) cannot be logged, or None. Shared by the HTTP API and log replay, and
    the same rules as ``gensar prepare`` (``schema.event_problem``)."""
    problem = event_problem(user_id, event.behavior, event.query, event.items)
    if problem is not None:
        return problem[1]
    for item in event.items:
        if not known_item(item):
            return f"unknown item '{item}'"
    return None


_BODY_TYPES: dict[str, type] = {"user_id": str, "behavior": str, "query": str, "items": list, "timestamp": int}


def parse_line(line: str, path: Path, lineno: int, known_item: Callable[[str], bool]) -> LoggedEvent:
    obj = json_object(line, path, lineno)
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise InputError(f"expected int, got {seq!r}", path=path, line=lineno, field="seq")
    user_id, event = event_from_json(obj, known_item, path, lineno)
    return LoggedEvent(seq, user_id, event)


def event_from_json(obj: dict[str, Any], known_item: Callable[[str], bool], path: str | Path,
                    line: int | None = None) -> tuple[str, HistoryEvent]:
    """(user_id, event) of a stored JSON object, checked as thoroughly as a posted event (a store
    is input too: a hand-edited log or a shared table). ``InputError`` naming ``path``/``line``."""
    for name, tp in _BODY_TYPES.items():
        value = obj.get(name)
        if not isinstance(value, tp) or isinstance(value, bool):
            raise InputError(f"expected {tp.__name__}, got {value!r}", path=path, line=line, field=name)
    if obj["behavior"] not in (REC, SEARCH) or not obj["items"] or not all(isinstance(i, str) for i in obj["items"]):
        raise InputError("not a rec/search event with a list of item ids", path=path, line=line)
    event = HistoryEvent(obj["behavior"], obj["query"], tuple(obj["items"]), obj["timestamp"])
    problem = check_event(obj["user_id"], event, known_item)
    if problem is not None:
        raise InputError(problem, path=path, line=line)
    return obj["user_id"], event


def _parser(known_item: Callable[[str], bool]) -> Callable[[str, Path, int], LoggedEvent]:
    return lambda line, path, lineno: parse_line(line, path, lineno, known_item)


def _warn_torn(path: Path, replay: Replay[LoggedEvent]) -> None:
    if replay.torn:
        log.warning("%s: skipping a torn last line (%d bytes; the server was stopped mid-write, "
                    "the event was never acknowledged)", path, replay.torn)


def read_log(path: str | Path, known_item: Callable[[str], bool]) -> tuple[list[LoggedEvent], int]:
    """Replay ``path``: (records, byte length of the complete lines). A torn last line is skipped."""
    replay = read_records(path, _parser(known_item), WHAT)
    _warn_torn(Path(path), replay)
    return replay.records, replay.good


class EventLog:
    """The append side of the events log (exclusive, fsynced, torn tail cut off on open)."""

    def __init__(self, path: str | Path, known_item: Callable[[str], bool]) -> None:
        self.path = Path(path)
        self._log = AppendLog(path, _parser(known_item), WHAT, option="--events-log",
                              busy="events log is in use by another server")
        _warn_torn(self.path, self._log.replay)
        self.records = self._log.records

    @property
    def next_seq(self) -> int:
        return self._log.next_seq

    def append(self, user_id: str, event: HistoryEvent, then: Callable[[LoggedEvent], None]) -> LoggedEvent:
        """Write one record, fsync, then call ``then(record)`` (still holding the lock, so the
        in-memory state follows the log's order)."""
        return self._log.append(lambda seq: LoggedEvent(seq, user_id, event), then)

    def close(self) -> None:
        self._log.close()


class UserHistories:
    """user_id -> events, oldest first: the prepared data's events, then live ones in log order.

    Live events come after a user's prepared events whatever their timestamp: they happened
    while serving, after everything the model was trained on.
    """

    def __init__(self, events: pd.DataFrame) -> None:
        self._events: dict[str, list[HistoryEvent]] = {}
        for user, behavior, query, items, ts in zip(events["user_id"], events["behavior"], events["query"],
                                                    events["items"], events["timestamp"], strict=True):
            self._events.setdefault(user, []).append(HistoryEvent(behavior, query, tuple(items), int(ts)))
        self.base_users = len(self._events)
        self.live_events = 0
        self._lock = threading.Lock()

    def add(self, record: LoggedEvent) -> None:
        with self._lock:
            self._events.setdefault(record.user_id, []).append(record.event)
            self.live_events += 1

    def add_all(self, records: Iterable[LoggedEvent]) -> None:
        for r in records:
            self.add(r)

    def get(self, user_id: str | None, last: int | None = None) -> tuple[HistoryEvent, ...]:
        """The user's last ``last`` events (all if None); () for an unknown user or None."""
        if user_id is None:
            return ()
        with self._lock:
            events = self._events.get(user_id)
            if not events:
                return ()
            return tuple(events[-last:] if last else events)

    def length(self, user_id: str | None) -> int:
        with self._lock:
            return len(self._events.get(user_id, ())) if user_id is not None else 0

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._events

    def __len__(self) -> int:
        return len(self._events)

    def users(self, prefix: str = "", limit: int = 100) -> tuple[list[str], int]:
        """Up to ``limit`` user ids starting with ``prefix`` (sorted), and how many match."""
        with self._lock:
            found = sorted(u for u in self._events if u.startswith(prefix))
        return found[:limit], len(found)
