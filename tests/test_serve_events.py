"""The live events log: fsync before acknowledging, replay, torn last lines, and a real SIGKILL."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import make_tiny_prepared

from gensar.errors import GensarError, InputError
from gensar.serve.engine import HistoryEvent
from gensar.serve.events import EventLog, UserHistories, read_log
from gensar.serve.schemas import EventRequest
from gensar.serve.service import ServeConfig, Service

KNOWN = {"i1", "i2", "i3"}.__contains__


def _rec(item: str, ts: int = 0) -> HistoryEvent:
    return HistoryEvent("rec", "", (item,), ts)


def test_append_fsyncs_before_applying_and_replays(tmp_path, monkeypatch):
    path = tmp_path / "log.jsonl"
    order: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (order.append("fsync"), real_fsync(fd))[1])
    log = EventLog(path, KNOWN)
    order.clear()  # opening may fsync too
    r1 = log.append("u1", _rec("i1", 10), then=lambda rec: order.append(f"apply {rec.seq}"))
    r2 = log.append("u2", HistoryEvent("search", "glass jar", ("i2", "i3"), 11),
                    then=lambda rec: order.append(f"apply {rec.seq}"))
    log.close()
    assert order == ["fsync", "apply 1", "fsync", "apply 2"]
    assert (r1.seq, r2.seq) == (1, 2)
    assert path.read_text().splitlines()[1] == (
        '{"seq": 2, "user_id": "u2", "behavior": "search", "query": "glass jar", "items": ["i2", "i3"], '
        '"timestamp": 11}')
    records, size = read_log(path, KNOWN)
    assert records == [r1, r2] and size == path.stat().st_size
    reopened = EventLog(path, KNOWN)
    assert reopened.records == [r1, r2] and reopened.next_seq == 3
    reopened.close()


def test_torn_last_line_is_skipped_with_a_warning_and_cut_off(tmp_path, caplog):
    path = tmp_path / "log.jsonl"
    log = EventLog(path, KNOWN)
    log.append("u1", _rec("i1"), then=lambda r: None)
    log.close()
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"seq": 2, "user_id": "u1", "beh')  # killed mid-write
    with caplog.at_level(logging.WARNING, logger="gensar.serve.events"):
        records, good = read_log(path, KNOWN)
    assert [r.seq for r in records] == [1] and good == len(whole)
    assert "torn last line" in caplog.text
    # A writer cuts the torn bytes off, so the next record starts on a line of its own.
    log = EventLog(path, KNOWN)
    log.append("u1", _rec("i2"), then=lambda r: None)
    log.close()
    records, _ = read_log(path, KNOWN)
    assert [(r.seq, r.event.items) for r in records] == [(1, ("i1",)), (2, ("i2",))]
    # Complete JSON but no newline is torn too: it was never fsynced and acknowledged as a line.
    path.write_bytes(path.read_bytes() + b'{"seq": 3, "user_id": "u", "behavior": "rec", "query": "", '
                     b'"items": ["i1"], "timestamp": 0}')
    assert len(read_log(path, KNOWN)[0]) == 2


@pytest.mark.parametrize(("line", "message"), [
    ('{"seq": 2, "user_id": "u1"', "malformed JSON"),
    ('[1, 2]', "expected a JSON object"),
    ('{"seq": 2, "user_id": "u1", "behavior": "rec", "query": "", "items": ["zzz"], "timestamp": 0}',
     "unknown item 'zzz'"),
    ('{"seq": 2, "user_id": "u1", "behavior": "rec", "query": "", "items": ["i1"], "timestamp": "x"}',
     "field 'timestamp': expected int"),
    ('{"seq": 2, "user_id": "u1", "behavior": "search", "query": " ", "items": ["i1"], "timestamp": 0}',
     "needs a non-empty query"),
    ('{"seq": 7, "user_id": "u1", "behavior": "rec", "query": "", "items": ["i1"], "timestamp": 0}',
     "seq 7 out of order (expected 2)"),
])
def test_a_bad_complete_line_stops_replay_naming_the_line(tmp_path, line, message):
    path = tmp_path / "log.jsonl"
    first = '{"seq": 1, "user_id": "u1", "behavior": "rec", "query": "", "items": ["i1"], "timestamp": 0}'
    path.write_text(first + "\n" + line + "\n")
    with pytest.raises(InputError, match=re.escape(f"{path}:2")) as err:
        read_log(path, KNOWN)
    assert message in str(err.value)
    with pytest.raises(InputError):  # and a server refuses to start on it, leaving the file alone
        EventLog(path, KNOWN)
    assert path.read_text() == first + "\n" + line + "\n"


def test_one_writer_per_log(tmp_path):
    log = EventLog(tmp_path / "log.jsonl", KNOWN)
    with pytest.raises(GensarError, match="in use by another server"):
        EventLog(tmp_path / "log.jsonl", KNOWN)
    log.close()
    EventLog(tmp_path / "log.jsonl", KNOWN).close()


def test_histories_put_live_events_after_prepared_ones(tmp_path):
    data = make_tiny_prepared()
    hist = UserHistories(data.events)
    base = hist.get("u1")
    assert len(base) == int((data.events["user_id"] == "u1").sum()) and hist.get("ghost") == () == hist.get(None)
    log = EventLog(tmp_path / "log.jsonl", data.item_index.__contains__)
    log.append("u1", _rec("i3", ts=-5), then=hist.add)  # an old timestamp still goes last
    assert hist.get("u1")[-1] == _rec("i3", ts=-5) and hist.get("u1")[:-1] == base
    assert hist.get("u1", last=2) == hist.get("u1")[-2:] and hist.live_events == 1
    log.close()


def test_read_only_service_sees_a_servers_events(tmp_path):
    run = tmp_path / "run"
    make_tiny_prepared().save(run / "data")
    server = Service.open(run, ServeConfig(engine="fake"))
    server.add_event(EventRequest(user_id="zed", behavior="rec", items=["i4"]))
    reader = Service.open(run, ServeConfig(engine="fake"), writable=False)
    assert [e.items for e in reader.histories.get("zed")] == [("i4",)]
    with pytest.raises(GensarError, match="read-only"):
        reader.add_event(EventRequest(user_id="zed", behavior="rec", items=["i4"]))
    server.close()


# ---- a real server process, killed with SIGKILL -------------------------------------------------------
def _start_server(run: Path) -> tuple[subprocess.Popen, str, str]:
    """(process, base url, what it wrote to stderr before listening)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gensar.cli", "serve", str(run), "--engine", "fake", "--host", "127.0.0.1",
         "--port", "0", "--max-wait-ms", "1"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "GENSAR_THREADS": "1"})
    deadline = time.monotonic() + 60
    assert proc.stderr is not None
    said = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        said.append(line)
        if not line and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        m = re.search(r"http://(127\.0\.0\.1:\d+)/", line)
        if m:
            url = f"http://{m.group(1)}"
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        return proc, url, "".join(said)
                except httpx.TransportError:
                    time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not start")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    if proc.stderr is not None:
        proc.stderr.close()


def test_acknowledged_events_survive_sigkill(tmp_path):
    run = tmp_path / "run"
    make_tiny_prepared().save(run / "data")
    proc, url, _ = _start_server(run)
    try:
        sent = [{"user_id": "walker", "behavior": "rec", "items": ["i5"], "timestamp": 1},
                {"user_id": "walker", "behavior": "search", "query": "lab scales", "items": ["i7", "i11"],
                 "timestamp": 2},
                {"user_id": "u0", "behavior": "rec", "items": ["i9"], "timestamp": 3}]
        acks = [httpx.post(f"{url}/events", json=e, timeout=10).json() for e in sent]
        assert [a["seq"] for a in acks] == [1, 2, 3]
        before = httpx.post(f"{url}/recommend", json={"user_id": "walker", "k": 5}, timeout=10).json()
        u0_len = httpx.get(f"{url}/users/u0/history", params={"limit": 1000}, timeout=10).json()["history_length"]
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown handler runs
        proc.wait(timeout=30)
    finally:
        _stop(proc)
    with (run / "live_events.jsonl").open("ab") as fh:  # as if killed in the middle of a 4th write
        fh.write(b'{"seq": 4, "user_id": "walker", "behavior": "re')

    proc, url, said = _start_server(run)
    assert "skipping a torn last line" in said and "3 live events replayed" in said
    try:
        hist = httpx.get(f"{url}/users/walker/history", timeout=10).json()
        assert [(e["behavior"], e["query"], [i["item_id"] for i in e["items"]], e["timestamp"])
                for e in hist["events"]] == [("rec", "", ["i5"], 1), ("search", "lab scales", ["i7", "i11"], 2)]
        u0 = httpx.get(f"{url}/users/u0/history", params={"limit": 1000}, timeout=10).json()
        assert u0["history_length"] == u0_len and u0["events"][-1]["items"][0]["item_id"] == "i9"
        after = httpx.post(f"{url}/recommend", json={"user_id": "walker", "k": 5}, timeout=10).json()
        assert after == before  # same history, same answer
        ack = httpx.post(f"{url}/events", json={"user_id": "walker", "behavior": "rec", "items": ["i1"]},
                         timeout=10).json()
        assert ack["seq"] == 4 and ack["history_length"] == 3
        assert httpx.get(f"{url}/health", timeout=10).json()["live_events"] == 4
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # a clean stop works too
        proc.wait(timeout=30)
        _stop(proc)
    lines = [json.loads(x) for x in (run / "live_events.jsonl").read_text().splitlines()]
    assert [x["seq"] for x in lines] == [1, 2, 3, 4]


def test_serve_reports_a_busy_port_in_one_line(tmp_path):
    import socket

    run = tmp_path / "run"
    make_tiny_prepared().save(run / "data")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "gensar.cli", "serve", str(run), "--engine", "fake",
                              "--port", str(port)], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2
    assert res.stderr.strip() == f"gensar serve: error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_listening_socket_gives_nodelay_connections():
    """Without TCP_NODELAY each keep-alive answer waited ~40 ms for a delayed ACK."""
    import asyncio
    import socket

    from gensar.serve.cli import _listen

    async def probe() -> int:
        sock = _listen("127.0.0.1", 0)
        seen: list[int] = []

        async def handle(reader, writer):
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()
        return seen[0]

    assert asyncio.run(probe()) != 0
