"""A ``RecordStore`` in PostgreSQL (psycopg 3): one table per stream, shared by every server process.

Table ``gensar_<stream>`` (created if missing)::

    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY
    body       jsonb NOT NULL           -- RecordKind.dump of the record
    stored_at  timestamptz NOT NULL DEFAULT now()

``append`` inserts in a transaction and returns the seq only after ``COMMIT`` has returned, which
with PostgreSQL's default ``synchronous_commit`` means the WAL is flushed: a server process killed
right after acknowledging loses nothing. Appends to one stream are serialised by a transaction-level
advisory lock: an identity value is drawn at ``INSERT`` but becomes visible at ``COMMIT``, so without
it a reader could see seq 11 before seq 10 commits and, having moved past 10, never fold it in.
With it, seqs become visible in increasing order (they may have gaps, from a failed insert; readers
only rely on the order). ``since(seq)`` is one primary-key range scan.

A connection lost mid-run (a database restart) is reopened on the next call; a call that fails is a
``StoreUnavailable``. An ``append`` whose connection breaks during ``COMMIT`` may or may not have
stored the record; it is not retried (it was never acknowledged; a client retrying may add it twice).

Several runs must not share a stream: give each deployment its own database, or its own schema
(``postgresql://HOST/DB?options=-csearch_path%3Dmyrun``).
"""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar

from gensar.errors import GensarError
from gensar.serve.store import Acked, RecordKind, StoreUnavailable, check_stream_name, redact_url

__all__ = ["PostgresStore"]

T = TypeVar("T")
CONNECT_TIMEOUT_S = 10
# One lock per schema and table, held until COMMIT (a transaction-level advisory lock).
LOCK = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.' || %s))"


class PostgresStore(Generic[T]):
    shared = True

    def __init__(self, url: str, kind: RecordKind[T], writable: bool = True) -> None:
        try:
            import psycopg
        except ImportError:
            raise GensarError(f"--store {redact_url(url)}: needs the psycopg package "
                              "(pip install 'gensar[postgres]')") from None
        self._psycopg = psycopg
        self.kind = kind
        self.writable = writable
        self.table = f"gensar_{check_stream_name(kind.stream)}"
        self.where = f"{redact_url(url)} table {self.table}"
        # Two connections: a read (``since``, before every answer) never waits behind an append's
        # COMMIT, which waits for the disk.
        self._reads = _Connection(url, psycopg)
        self._writes = _Connection(url, psycopg)
        try:
            self._reads.get()
            if writable:
                self._create_table(self._writes.get())
        except psycopg.Error as err:
            self.close()
            raise GensarError(f"--store {redact_url(url)}: {_first_line(err)}") from None

    # ---- RecordStore ---------------------------------------------------------------------------
    def append(self, record: T) -> int:
        if not self.writable:
            raise GensarError(f"{self.where}: opened read-only: records cannot be added")
        body = self._psycopg.types.json.Jsonb(self.kind.dump(record))
        insert = self._sql("INSERT INTO {} (body) VALUES (%s) RETURNING seq")
        with self._writes.lock:
            try:
                conn = self._writes.get()
                with conn.transaction():  # COMMIT on leaving the block, before the seq is returned
                    conn.execute(LOCK, [self.table])
                    row = conn.execute(insert, [body]).fetchone()
            except self._psycopg.OperationalError as err:
                self._writes.drop()
                raise StoreUnavailable(f"{self.where}: {_first_line(err)}") from None
        return int(row[0])

    def since(self, seq: int) -> list[Acked[T]]:
        query = self._sql("SELECT seq, body FROM {} WHERE seq > %s ORDER BY seq")
        with self._reads.lock:
            for attempt in (1, 2):  # a read may be retried on a fresh connection: it changes nothing
                try:
                    rows = self._reads.get().execute(query, [seq]).fetchall()
                    break
                except self._psycopg.errors.UndefinedTable:
                    return []  # read-only and nobody has written yet
                except self._psycopg.OperationalError as err:
                    self._reads.drop()
                    if attempt == 2:
                        raise StoreUnavailable(f"{self.where}: {_first_line(err)}") from None
        return [Acked(int(s), self.kind.load(body, f"{self.where} seq {s}")) for s, body in rows]

    def close(self) -> None:
        for c in (self._reads, self._writes):
            with c.lock:
                c.drop()

    # ---- pieces --------------------------------------------------------------------------------
    def _create_table(self, conn: Any) -> None:
        with conn.transaction():
            # N workers start together: CREATE TABLE IF NOT EXISTS alone can still collide on the
            # table's type name, so creations queue on the same lock as appends.
            conn.execute(LOCK, [self.table])
            conn.execute(self._sql("CREATE TABLE IF NOT EXISTS {} (seq bigint GENERATED ALWAYS AS IDENTITY "
                                   "PRIMARY KEY, body jsonb NOT NULL, stored_at timestamptz NOT NULL DEFAULT now())"))

    def _sql(self, template: str) -> Any:
        sql = self._psycopg.sql
        return sql.SQL(template).format(sql.Identifier(self.table))


class _Connection:
    """One lazily (re)opened connection and the lock its users hold (psycopg runs one statement
    at a time per connection)."""

    def __init__(self, url: str, psycopg: Any) -> None:
        self.url = url
        self.psycopg = psycopg
        self.lock = threading.Lock()
        self._conn: Any = None

    def get(self) -> Any:
        """The open connection (reopened after a loss); ``psycopg.Error`` if it cannot be."""
        if self._conn is None or self._conn.closed:
            # autocommit: a read sees every commit at once (no long-lived snapshot); an append
            # opens its own transaction block.
            self._conn = self.psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                                              application_name="gensar serve")
        return self._conn

    def drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except self.psycopg.Error:
                pass
            self._conn = None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
