"""Live events: an append-only JSONL log, and users' histories (prepared data + the log).

A client posts a recommendation click or a search session; the server appends it to the log,
``fsync``s, and only then adds it to the user's in-memory history and acknowledges. The next
request for that user decodes from the longer history; nothing is retrained.

Log format, one JSON object per line, ``\\n``-terminated, in acknowledgement order::

    {"seq": 1, "user_id": "u7", "behavior": "search", "query": "usb microscope",
     "items": ["B00X1"], "timestamp": 1718000000}

``seq`` counts from 1. On start the log is replayed. Because each record is written with one
``write`` and acknowledged after ``fsync``, a crash can only leave a *torn last line* (no final
``\\n``): that record was never acknowledged, so replay skips it with a warning and a writer cuts
it off before appending. Only a tail that can be such a record is cut (it starts like record
``seq`` N+1, see ``is_torn_record``): a file that is not an events log, say a text file without a
final newline given as ``--events-log``, is refused, never emptied. Any other malformed line is an
``InputError`` naming file and line (the server refuses to start rather than silently drop
acknowledged events).

One process writes a log at a time (an exclusive ``flock``); readers (``gensar recommend``
while a server runs) replay it read-only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd

from gensar.data.schema import REC, SEARCH, event_problem
from gensar.errors import GensarError, InputError
from gensar.io import json_object, text_lines
from gensar.serve.engine import HistoryEvent

log = logging.getLogger(__name__)

EVENTS_LOG_NAME = "live_events.jsonl"


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


def read_log(path: str | Path, known_item: Callable[[str], bool]) -> tuple[list[LoggedEvent], int]:
    """Replay ``path``: (records, byte length of the complete lines). A torn last line is skipped."""
    path = Path(path)
    if not path.is_file():
        return [], 0
    data = path.read_bytes()
    good = data.rfind(b"\n") + 1  # bytes up to and including the last newline
    records: list[LoggedEvent] = []
    for lineno, line in text_lines(data[:good], path):
        rec = parse_line(line, path, lineno, known_item)
        expected = records[-1].seq + 1 if records else 1
        if rec.seq != expected:
            raise InputError(f"seq {rec.seq} out of order (expected {expected})", path=path, line=lineno, field="seq")
        records.append(rec)
    if good < len(data):
        next_seq = records[-1].seq + 1 if records else 1
        if not is_torn_record(data[good:], next_seq):
            raise InputError("not an events log: the last line has no newline and is not the start of record "
                             f"seq {next_seq} (refusing to cut it)", path=path, line=data.count(b"\n") + 1)
        log.warning("%s: skipping a torn last line (%d bytes; the server was stopped mid-write, "
                    "the event was never acknowledged)", path, len(data) - good)
    return records, good


def is_torn_record(tail: bytes, seq: int) -> bool:
    """Whether ``tail`` (a last line without newline) can be a write of record ``seq`` cut short.

    Every record starts with exactly ``{"seq": N, `` (``LoggedEvent.to_json``) and is written in
    one ``write``, so a torn one is a prefix of a record: it starts with that head, or is a prefix
    of it. Anything else is not ours to cut (a user's text file given as ``--events-log``).
    """
    head = f'{{"seq": {seq}, '.encode("ascii")
    return tail.startswith(head) or head.startswith(tail)


class EventLog:
    """The append side of the log: exclusive, fsynced, torn tail cut off on open."""

    def __init__(self, path: str | Path, known_item: Callable[[str], bool]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: IO[bytes] = open(self.path, "ab+")  # noqa: SIM115 - kept open for the server's lifetime
        except OSError as err:  # a read-only run directory: say so at start, not on the first event
            raise GensarError(f"{self.path}: cannot open the events log for writing: {err.strerror or err} "
                              "(pass --events-log to a writable place)") from None
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise GensarError(f"{self.path}: events log is in use by another server") from None
        try:
            self.records, good = read_log(self.path, known_item)
        except BaseException:
            self.close()
            raise
        if os.path.getsize(self.path) > good:
            self._fh.truncate(good)
            self._fsync()
        self.next_seq = self.records[-1].seq + 1 if self.records else 1
        self._lock = threading.Lock()

    def append(self, user_id: str, event: HistoryEvent, then: Callable[[LoggedEvent], None]) -> LoggedEvent:
        """Write one record, fsync, then call ``then(record)`` (still holding the lock, so the
        in-memory state follows the log's order)."""
        with self._lock:
            record = LoggedEvent(self.next_seq, user_id, event)
            self._fh.write((record.to_json() + "\n").encode("utf-8"))  # one write: a crash tears only this line
            self._fsync()
            self.next_seq += 1
            then(record)
            return record

    def _fsync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        self._fh.close()


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
