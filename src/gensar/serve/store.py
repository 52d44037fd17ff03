"""Where acknowledged records live: an append-only stream per record kind, behind one interface.

A ``RecordStore[T]`` holds one stream of records of kind ``T`` (users' events today; added
catalog items can be a second stream of their own). Each record gets a sequence number on
``append``, which returns only once the record is durable: the caller acknowledges that number
to the client. ``since(seq)`` gives the records after ``seq`` in sequence order; a server folds
them into its in-memory state, so several processes appending to one shared store all see each
other's records (``shared``: whether anybody else may append).

Two implementations, chosen by ``open_store`` from ``gensar serve --store``:

* embedded (``--store file``, the default): a JSONL file per stream, written by one process
  (the events log: ``gensar.serve.event_store``);
* ``--store postgresql://...``: a table per stream in PostgreSQL (``gensar.serve.pgstore``), which
  any number of processes, on any number of machines, share.

A ``RecordKind[T]`` says how a stream's records look in a store that keeps JSON: its ``stream``
name (the table is ``gensar_<stream>``), ``dump`` (record -> JSON object) and ``load`` (JSON object
-> record, validated, ``InputError`` otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from gensar.errors import GensarError

__all__ = [
    "EMBEDDED", "Acked", "RecordKind", "RecordStore", "StoreUnavailable", "describe_store", "is_postgres_url",
    "open_store", "parse_store", "redact_url",
]

T = TypeVar("T")
STREAM_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")  # becomes part of a table name
EMBEDDED = "file"


class StoreUnavailable(GensarError):
    """The store cannot be reached now (a database restart, a network cut): the HTTP API answers 503."""


@dataclass(frozen=True)
class Acked(Generic[T]):
    """A record as stored: its sequence number and the record."""

    seq: int
    record: T


class RecordKind(Protocol[T]):
    stream: str  # e.g. "events"; [a-z][a-z0-9_]*

    def dump(self, record: T) -> dict[str, Any]:
        """The record as a JSON object (without its seq)."""
        ...

    def load(self, body: Any, where: str) -> T:
        """The record a stored JSON object holds; ``InputError`` naming ``where`` if it is not one."""
        ...


class RecordStore(Protocol[T]):
    """One append-only stream. Sequence numbers grow in the order records became visible, so a
    reader that has seen ``seq`` never misses a record below it later."""

    where: str  # for messages: a path, or a redacted URL and table
    shared: bool  # other processes may append: fold ``since`` before every answer
    writable: bool

    def append(self, record: T) -> int:
        """Store ``record`` durably (fsync / commit) and return its sequence number."""
        ...

    def since(self, seq: int) -> list[Acked[T]]:
        """Every record with a sequence number above ``seq``, in order (``since(0)``: all)."""
        ...

    def close(self) -> None: ...


def is_postgres_url(value: str) -> bool:
    return value.startswith(("postgresql://", "postgres://"))


def parse_store(value: str | None) -> str | None:
    """The ``--store`` value checked: None for the embedded store (absent or 'file'), else the
    PostgreSQL URL. Anything else is a one-line error."""
    if value is None or value == EMBEDDED:
        return None
    if is_postgres_url(value):
        return value
    raise GensarError(f"--store {redact_url(value)}: expected '{EMBEDDED}' (the default: a file in the run "
                      "directory) or a postgresql://USER@HOST/DATABASE URL")


def open_store(value: str | None, kind: RecordKind[T], embedded: Callable[[], RecordStore[T]],
               writable: bool = True) -> RecordStore[T]:
    """The store ``--store`` names, for records of ``kind``: the embedded one is ``embedded()``
    (the kind's own file), a ``postgresql://`` URL a table in that database."""
    url = parse_store(value)
    if url is None:
        return embedded()
    from gensar.serve.pgstore import PostgresStore

    return PostgresStore(url, kind, writable=writable)


def describe_store(value: str | None) -> str:
    """How a start-up line names the store (never with a password)."""
    url = parse_store(value)
    return "the run's events log" if url is None else redact_url(url)


def redact_url(url: str) -> str:
    """``url`` without its password (messages and logs must not show it)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
    except ValueError:  # not even a URL (a bad port, brackets): show only the scheme
        return url.split(":", 1)[0] + "://..."


def check_stream_name(name: str) -> str:
    if not STREAM_NAME.fullmatch(name):
        raise GensarError(f"stream name {name!r}: expected [a-z][a-z0-9_]* (at most 40 characters)")
    return name
