"""Event stores (issue 18 §4): the embedded file log behind the store interface, PostgreSQL shared
by several server processes (a real server from ``pgserver``), ``--workers`` and ``--store`` errors.

Tests marked ``postgres`` use one PostgreSQL server for the whole session (conftest
``postgres_server``) and a fresh schema each; they are skipped where pgserver cannot start.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from gensar.cli import main
from gensar.errors import GensarError, InputError
from gensar.serve.app import create_app
from gensar.serve.engine import HistoryEvent
from gensar.serve.event_store import EventKind, FileEventStore, UserEvent
from gensar.serve.schemas import EventRequest
from gensar.serve.service import ServeConfig, Service
from gensar.serve.store import StoreUnavailable, parse_store, redact_url

KNOWN = {f"i{i}" for i in range(40)}.__contains__
FAKE = ServeConfig(engine="fake", max_wait_ms=1)


def _rec(user: str, item: str, ts: int = 0) -> UserEvent:
    return UserEvent(user, HistoryEvent("rec", "", (item,), ts))


# ---- the interface, embedded ------------------------------------------------------------------------
def test_file_store_numbers_from_one_and_answers_since(tmp_path):
    store = FileEventStore(tmp_path / "log.jsonl", KNOWN)
    assert store.shared is False and store.since(0) == []
    assert [store.append(_rec("u1", f"i{i}")) for i in (1, 2, 3)] == [1, 2, 3]
    assert [a.seq for a in store.since(0)] == [1, 2, 3] and [a.seq for a in store.since(2)] == [3]
    assert store.since(1)[0].record == _rec("u1", "i2")
    store.close()
    reader = FileEventStore(tmp_path / "log.jsonl", KNOWN, writable=False)
    assert [a.record.event.items for a in reader.since(0)] == [("i1",), ("i2",), ("i3",)]
    with pytest.raises(GensarError, match="read-only"):
        reader.append(_rec("u1", "i1"))


def test_store_values_are_checked_and_urls_redacted():
    assert parse_store(None) is None and parse_store("file") is None
    assert parse_store("postgresql://h/db") == "postgresql://h/db"
    with pytest.raises(GensarError, match="expected 'file'.*or a postgresql://"):
        parse_store("sqlite:///x.db")
    assert redact_url("postgresql://me:s3cret@db.example:5432/ev") == "postgresql://me:***@db.example:5432/ev"
    assert redact_url("postgresql://me@db/ev") == "postgresql://me@db/ev"


def test_an_unreachable_store_is_a_503(service):
    class Down:
        where, shared, writable = "down", True, True

        def since(self, seq):
            raise StoreUnavailable("down: connection refused")

        def close(self):
            pass

    real, service.store = service.store, Down()
    with TestClient(create_app(service), raise_server_exceptions=False) as c:
        for res in (c.get("/users/u1/history"), c.post("/recommend", json={"user_id": "u1"}), c.get("/health")):
            assert res.status_code == 503 and res.json()["error"] == "the event store is unavailable; retry later"
    service.store = real


@pytest.mark.parametrize(("extra", "message"), [
    (["--store", "mysql://x/y"], "--store mysql://x/y: expected 'file'"),
    (["--workers", "2"], "--workers 2 needs a shared event store (--store postgresql://...)"),
    (["--workers", "2", "--store", "file"], "--workers 2 needs a shared event store"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--store", "postgresql://me:pw@/db?host=/nonexistent-gensar"], "--store postgresql://me:***@/db?host="),
    (["--store", "postgresql://me@/db?nonsense=1", "--workers", "2"], "--store postgresql://me@/db?nonsense=1: "),
    (["--store", "postgresql://h/db", "--events-log", "x.jsonl"], "--events-log names the embedded store's file"),
])
def test_bad_store_or_workers_is_a_one_line_error(run_dir, capsys, extra, message):
    assert main(["serve", str(run_dir), "--engine", "fake", "--port", "0", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gensar serve: error: {message}") and err.count("\n") == 1, err
    assert "pw" not in err


# ---- PostgreSQL -----------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_postgres_store_creates_its_table_and_keeps_order(postgres_url):
    import psycopg

    from gensar.serve.pgstore import PostgresStore

    reader = PostgresStore(postgres_url, EventKind(KNOWN), writable=False)
    assert reader.since(0) == []  # no table yet: nothing stored, and a reader creates nothing
    store = PostgresStore(postgres_url, EventKind(KNOWN))
    seqs = [store.append(_rec(f"u{i % 2}", f"i{i}", ts=i)) for i in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert [a.seq for a in reader.since(0)] == seqs and [a.seq for a in reader.since(seqs[2])] == seqs[3:]
    assert reader.since(0)[4].record == _rec("u0", "i4", ts=4)
    store.close()
    again = PostgresStore(postgres_url, EventKind(KNOWN))  # the table exists: reused, not recreated
    assert [a.seq for a in again.since(0)] == seqs
    again.close()
    with psycopg.connect(postgres_url) as conn:  # a row that does not fit the catalog stops a replay
        conn.execute("INSERT INTO gensar_events (body) VALUES (%s::jsonb)",
                     ['{"user_id": "u9", "behavior": "rec", "query": "", "items": ["zzz"], "timestamp": 0}'])
    with pytest.raises(InputError, match=r"table gensar_events seq \d+: unknown item 'zzz'"):
        reader.since(0)
    reader.close()


@pytest.mark.postgres
def test_concurrent_appenders_never_hide_a_lower_seq_from_a_reader(postgres_url):
    # Appends commit in seq order (the advisory lock), so a reader polling since(last) never
    # moves past a seq that commits later.
    from gensar.serve.pgstore import PostgresStore

    writers = [PostgresStore(postgres_url, EventKind(KNOWN)) for _ in range(3)]
    reader = PostgresStore(postgres_url, EventKind(KNOWN), writable=False)
    acked: list[int] = []

    def write(store: PostgresStore, w: int) -> None:
        for i in range(40):
            acked.append(store.append(_rec(f"w{w}", f"i{i % 40}")))

    threads = [threading.Thread(target=write, args=(s, w)) for w, s in enumerate(writers)]
    for t in threads:
        t.start()
    seen: list[int] = []
    while True:
        finished = not any(t.is_alive() for t in threads)  # then one last read sees everything
        seen.extend(a.seq for a in reader.since(seen[-1] if seen else 0))
        if finished:
            break
        time.sleep(0.002)
    for t in threads:
        t.join()
    assert len(acked) == 120 and sorted(seen) == seen == sorted(acked)
    for s in [*writers, reader]:
        s.close()


@pytest.mark.postgres
def test_two_services_on_one_store_see_each_others_events(run_dir, postgres_url):
    a = Service.open(run_dir, FAKE, store=postgres_url)
    b = Service.open(run_dir, FAKE, store=postgres_url)
    try:
        ack = a.add_event(EventRequest(user_id="walker", behavior="rec", items=["i5"], timestamp=1))
        assert ack.history_length == 1
        # B folds A's event in before answering: its very next answer sees it
        rec = b.recommend([_recommend("walker")])[0]
        assert rec.known_user and rec.history_length == 1
        b.add_event(EventRequest(user_id="walker", behavior="search", query="lab scales", items=["i7"], timestamp=2))
        assert [e.items for e in a.histories.get("walker")] == [("i5",)]  # not until A answers something
        assert [e.items[0].item_id for e in a.history("walker", 10).events] == ["i5", "i7"]
        assert a.histories.get("walker") == b.histories.get("walker")
    finally:
        a.close()
        b.close()
    reader = Service.open(run_dir, FAKE, writable=False, store=postgres_url)  # gensar recommend --store
    assert reader.histories.length("walker") == 2
    with pytest.raises(GensarError, match="read-only"):
        reader.add_event(EventRequest(user_id="walker", behavior="rec", items=["i1"]))
    reader.close()


def _recommend(user: str):
    from gensar.serve.schemas import RecommendRequest

    return RecommendRequest(user_id=user, k=5)


# ---- gensar serve --workers 2 --store postgresql://... ---------------------------------------------------
class _Server:
    """``gensar serve --workers N`` as a process; stderr is drained by a thread (``said``)."""

    def __init__(self, run: Path, store: str, workers: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gensar.cli", "serve", str(run), "--engine", "fake", "--host", "127.0.0.1",
             "--port", "0", "--max-wait-ms", "1", "--workers", str(workers), "--store", store],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "GENSAR_THREADS": "1"})
        self.said: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("http://" in line for line in self.said):
            assert self.proc.poll() is None, f"server exited with {self.proc.returncode}: {''.join(self.said)}"
            time.sleep(0.05)
        found = [m for line in self.said if (m := re.search(r"http://(127\.0\.0\.1:\d+)/", line))]
        assert found, "server did not start"
        self.url = f"http://{found[0].group(1)}"

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.said.append(line)

    def client_on(self, avoid: set[int], timeout: float = 120) -> tuple[httpx.Client, int]:
        """A keep-alive client whose connection a worker not in ``avoid`` accepted, and its pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            client = httpx.Client(base_url=self.url, timeout=10, limits=httpx.Limits(max_connections=1))
            try:
                pid = client.get("/health").json()["pid"]
                if pid not in avoid:
                    return client, pid
            except httpx.TransportError:
                time.sleep(0.1)
            client.close()
        raise AssertionError(f"no worker outside {avoid} answered")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=30)


def _history_items(client: httpx.Client, user: str) -> list[str]:
    hist = client.get(f"/users/{user}/history", params={"limit": 1000}).json()
    assert hist["history_length"] == len(hist["events"])
    return [i["item_id"] for e in hist["events"] for i in e["items"]]


@pytest.mark.postgres
@pytest.mark.slow
def test_workers_share_events_and_a_killed_worker_loses_none(run_dir, postgres_url):
    import psycopg

    server = _Server(run_dir, postgres_url, workers=2)
    try:
        a, pid_a = server.client_on(set())
        b, pid_b = server.client_on({pid_a})
        # posted to worker A, visible on the very next request to worker B
        ack = a.post("/events", json={"user_id": "walker", "behavior": "rec", "items": ["i5"], "timestamp": 1})
        assert ack.status_code == 200 and ack.json()["history_length"] == 1
        assert _history_items(b, "walker") == ["i5"]
        rec = b.post("/recommend", json={"user_id": "walker", "k": 5}).json()
        assert rec["known_user"] and rec["history_length"] == 1
        assert b.post("/events", json={"user_id": "walker", "behavior": "search", "query": "lab scales",
                                       "items": ["i7"], "timestamp": 2}).json()["seq"] > ack.json()["seq"]
        assert _history_items(a, "walker") == ["i5", "i7"]
        assert {a.get("/health").json()["pid"], b.get("/health").json()["pid"]} == {pid_a, pid_b}

        # SIGKILL worker A while it is acknowledging a stream of events
        acked: list[int] = []
        stop = threading.Event()

        def post_to_a() -> None:
            for i in range(2000):
                if stop.is_set():
                    return
                try:
                    res = a.post("/events", json={"user_id": "hammer", "behavior": "rec", "items": [f"i{i % 40}"]})
                except httpx.TransportError:
                    return  # the worker died mid-request: that event was never acknowledged
                if res.status_code == 200:
                    acked.append(res.json()["seq"])

        hammer = threading.Thread(target=post_to_a)
        hammer.start()
        deadline = time.monotonic() + 60
        while len(acked) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(pid_a, signal.SIGKILL)
        time.sleep(0.3)
        stop.set()
        hammer.join(timeout=60)
        assert len(acked) >= 20
        with psycopg.connect(postgres_url) as conn:
            stored = [r[0] for r in conn.execute(
                "SELECT seq FROM gensar_events WHERE body->>'user_id' = 'hammer' ORDER BY seq").fetchall()]
        assert set(acked) <= set(stored)  # every acknowledged event is in the store
        # (at most one more: committed, then killed before it could answer)
        assert len(stored) - len(set(acked)) <= 1
        assert len(_history_items(b, "hammer")) == len(stored)
        # the supervisor replaces the killed worker, which replays the store
        c, pid_c = server.client_on({pid_a, pid_b})
        assert len(_history_items(c, "hammer")) == len(stored) and _history_items(c, "walker") == ["i5", "i7"]
        for client in (a, b, c):
            client.close()
    finally:
        code = server.stop()
    assert code == 0, "".join(server.said)
    assert sum("ready" in line for line in server.said) == 3  # two workers, then the replacement
