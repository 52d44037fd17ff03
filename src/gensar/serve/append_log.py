"""An append-only JSONL log of numbered records: fsynced appends, replay, torn-tail handling, flock.

The machinery shared by the live events log (``gensar.serve.events``) and the added-items log
(``gensar.serve.items_log``); each names its own record type and how a line is parsed.

Format: one JSON object per line, ``\\n``-terminated, in acknowledgement order, each starting with
exactly ``{"seq": N, `` (N = 1, 2, ...). A record is written with one ``write`` and acknowledged
after ``fsync``, so a crash can only leave a *torn last line* (no final ``\\n``): that record was
never acknowledged, so replay skips it and a writer cuts it off before appending. Only a tail that
can be such a record is cut (``is_torn_record``): a file that is not a log of ours, say a text file
without a final newline given as the log's path, is refused, never emptied. Any other malformed line
is an ``InputError`` naming file and line (a server refuses to start rather than silently drop
acknowledged records).

One process writes a log at a time (an exclusive ``flock``, held while the writer lives); readers
replay it read-only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Generic, Protocol, TypeVar

from gensar.errors import GensarError, InputError
from gensar.io import text_lines

__all__ = ["AppendLog", "LogRecord", "Replay", "is_torn_record", "read_records", "record_head"]

class LogRecord(Protocol):
    @property
    def seq(self) -> int: ...

    def to_json(self) -> str:
        """One line without the newline, starting with ``record_head(seq)``."""
        ...


R = TypeVar("R", bound=LogRecord)
# (line, path, line number) -> record; raises InputError naming the line. Called once per complete
# line, in order, so a parser may check a record against the ones before it.
Parser = Callable[[str, Path, int], R]


def record_head(seq: int) -> str:
    """How every record's line starts (what makes a torn tail recognisable)."""
    return f'{{"seq": {seq}, '


class Replay(Generic[R]):
    """What a replay found: the records, the byte length of the complete lines, the torn bytes after them."""

    def __init__(self, records: list[R], good: int, torn: int) -> None:
        self.records = records
        self.good = good
        self.torn = torn


def read_records(path: str | Path, parse: Parser[R], what: str) -> Replay[R]:
    """Replay ``path`` (absent = empty). ``what`` names the log in errors ("events log")."""
    path = Path(path)
    if not path.is_file():
        return Replay([], 0, 0)
    data = path.read_bytes()
    good = data.rfind(b"\n") + 1  # bytes up to and including the last newline
    records: list[R] = []
    for lineno, line in text_lines(data[:good], path):
        rec = parse(line, path, lineno)
        expected = records[-1].seq + 1 if records else 1
        if rec.seq != expected:
            raise InputError(f"seq {rec.seq} out of order (expected {expected})", path=path, line=lineno, field="seq")
        records.append(rec)
    if good < len(data):
        next_seq = records[-1].seq + 1 if records else 1
        if not is_torn_record(data[good:], next_seq):
            raise InputError(f"not an {what}: the last line has no newline and is not the start of record "
                             f"seq {next_seq} (refusing to cut it)", path=path, line=data.count(b"\n") + 1)
    return Replay(records, good, len(data) - good)


def is_torn_record(tail: bytes, seq: int) -> bool:
    """Whether ``tail`` (a last line without newline) can be a write of record ``seq`` cut short:
    it starts with that record's head, or is a prefix of it. Anything else is not ours to cut."""
    head = record_head(seq).encode("ascii")
    return tail.startswith(head) or head.startswith(tail)


class AppendLog(Generic[R]):
    """The append side of a log: exclusive, fsynced, torn tail cut off on open.

    ``records`` holds what was replayed on open; ``next_seq`` the number the next record gets.
    """

    def __init__(self, path: str | Path, parse: Parser[R], what: str, option: str, busy: str) -> None:
        """``option``: the command-line option that puts the log elsewhere (named when the file cannot
        be opened); ``busy``: the error when another process holds the log (says who, and what to do)."""
        self.path = Path(path)
        self.what = what
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: IO[bytes] = open(self.path, "ab+")  # noqa: SIM115 - kept open for the writer's lifetime
        except OSError as err:  # a read-only directory: say so at start, not on the first record
            raise GensarError(f"{self.path}: cannot open the {what} for writing: {err.strerror or err} "
                              f"(pass {option} to a writable place)") from None
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise GensarError(f"{self.path}: {busy}") from None
        try:
            self.replay: Replay[R] = read_records(self.path, parse, what)
        except BaseException:
            self.close()
            raise
        if self.replay.torn:
            self._fh.truncate(self.replay.good)
            self._fsync()
        self.records: list[R] = self.replay.records
        self.next_seq = self.records[-1].seq + 1 if self.records else 1
        self._lock = threading.Lock()

    def append(self, make: Callable[[int], R], then: Callable[[R], None]) -> R:
        """Write the record ``make(seq)``, fsync, then call ``then(record)`` (still holding the lock,
        so in-memory state follows the log's order)."""
        with self._lock:
            record = make(self.next_seq)
            line = record.to_json()
            if not line.startswith(record_head(record.seq)) or record.seq != self.next_seq:
                raise AssertionError(f"a {self.what} record must start with {record_head(self.next_seq)!r}")
            self._fh.write((line + "\n").encode("utf-8"))  # one write: a crash tears only this line
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
