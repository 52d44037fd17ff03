"""Who may write (the API key of POST /events) and how much a request may send (the body cap)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import live_server
from fastapi.testclient import TestClient

from gensar.cli import main
from gensar.errors import GensarError
from gensar.serve.cli import _is_loopback
from gensar.serve.access import AccessConfig, BodyLimit, read_api_key, require_write_key
from gensar.serve.app import create_app
from gensar.serve.service import Service

KEY = "k3y-Of-the_server.0123456789"
EVENT = {"user_id": "u1", "behavior": "rec", "items": ["i1"]}
READ_POSTS = {"/recommend", "/search", "/suggest-query"}  # POST for their bodies, but they only read


def _client(service: Service, access: AccessConfig) -> TestClient:
    return TestClient(create_app(service, access))


# ---- the API key ------------------------------------------------------------------------------------
def test_events_need_the_key_and_reads_stay_open(service):
    with _client(service, AccessConfig(api_key=KEY)) as client:
        refused = [
            client.post("/events", json=EVENT),
            client.post("/events", json=EVENT, headers={"Authorization": "Bearer wrong"}),
            client.post("/events", json=EVENT, headers={"Authorization": f"Bearer {KEY}x"}),
            client.post("/events", json=EVENT, headers={"Authorization": f"Bearer {KEY[:-1]}"}),
            client.post("/events", json=EVENT, headers={"Authorization": f"Basic {KEY}"}),
            client.post("/events", json=EVENT, headers={"X-API-Key": "wrong"}),
            client.post("/events", json=EVENT, headers={"X-API-Key": "ünïcode".encode("latin-1")}),
            client.post("/events", json={"user_id": "u1"}),  # an invalid body is not looked at first
        ]
        for r in refused:
            assert r.status_code == 401, r.text
            assert r.headers["www-authenticate"] == "Bearer"
            err = r.json()
            assert set(err) == {"error", "detail"} and "API key" in err["error"] and KEY not in r.text
        assert client.get("/health").json()["live_events"] == 0  # nothing was recorded

        ok = client.post("/events", json=EVENT, headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and ok.json()["seq"] == 1
        ok = client.post("/events", json=EVENT, headers={"X-API-Key": KEY})
        assert ok.status_code == 200 and ok.json()["seq"] == 2

        # Reads need no key.
        assert client.post("/recommend", json={"user_id": "u1", "k": 3}).status_code == 200
        assert client.post("/search", json={"query": "lab scales", "k": 3}).status_code == 200
        assert client.post("/suggest-query", json={"user_id": "u1", "k": 3}).status_code == 200
        assert client.get("/items/i1").status_code == 200
        assert client.get("/users").status_code == 200
        assert client.get("/users/u1/history").json()["history_length"] >= 2
        assert client.get("/").status_code == 200
        health = client.get("/health").json()
        assert health["writes_need_key"] is True and health["live_events"] == 2


def test_without_a_key_writes_are_open(service):
    with _client(service, AccessConfig()) as client:
        assert client.get("/health").json()["writes_need_key"] is False
        assert client.post("/events", json=EVENT).status_code == 200


def test_every_write_endpoint_depends_on_the_key(service):
    """Every write endpoint (POST /events, POST /items, any later one) declares WRITE_ACCESS: only the
    read-only POSTs may not."""
    app = create_app(service, AccessConfig(api_key=KEY))
    writes = []
    for route in app.routes:
        methods = getattr(route, "methods", None) or set()
        if methods & {"POST", "PUT", "PATCH", "DELETE"} and route.path not in READ_POSTS:
            writes.append(route.path)
            assert require_write_key in [d.call for d in route.dependant.dependencies], route.path
    assert writes == ["/events", "/items"]
    # The OpenAPI document tells clients about the 401 and how to send the key.
    spec = app.openapi()
    assert "401" in spec["paths"]["/events"]["post"]["responses"]
    assert "401" in spec["paths"]["/items"]["post"]["responses"]
    assert "401" not in spec["paths"]["/recommend"]["post"]["responses"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])


def test_key_file_is_read_checked_and_never_repeated(tmp_path):
    path = tmp_path / "key"
    path.write_text(f"  {KEY}\n")
    assert read_api_key(path) == KEY  # surrounding whitespace and the newline do not count
    for content, message in [("", "is empty"), (" \n\n", "is empty"), (f"{KEY}\nsecond line", "one line"),
                             ("two words", "one line"), (b"\xff\xfe".decode("latin-1"), "printable ASCII")]:
        path.write_bytes(content.encode("latin-1"))
        with pytest.raises(GensarError, match=message) as err:
            read_api_key(path)
        assert str(path) in str(err.value) and (not content.strip() or content.strip() not in str(err.value))
    with pytest.raises(GensarError, match="file not found"):
        read_api_key(tmp_path / "absent")
    with pytest.raises(GensarError, match="api_key"):
        AccessConfig(api_key="has space")
    assert KEY not in repr(AccessConfig(api_key=KEY))


def test_loopback_hosts():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert _is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "10.1.2.3", "192.168.0.7", "fe80::1%1"):
        assert not _is_loopback(host), host


@pytest.mark.parametrize(("extra", "message"), [
    (["--host", "0.0.0.0"], "--host 0.0.0.0 is reachable from other machines and anyone there could write events: "
                            "give --api-key-file FILE (or --insecure to allow it)"),
    (["--host", "::"], "--host :: is reachable from other machines"),
    (["--api-key-file", "{empty}"], "{empty}: the API key file is empty"),
    (["--api-key-file", "{missing}"], "{missing}: file not found"),
    (["--max-body-bytes", "0"], "--max-body-bytes must be >= 1 (got 0)"),
    # Allowed, so these get as far as the (busy) port:
    (["--host", "0.0.0.0", "--insecure"], "cannot listen on 0.0.0.0:{port}: Address already in use"),
    (["--host", "0.0.0.0", "--api-key-file", "{key}"], "cannot listen on 0.0.0.0:{port}: Address already in use"),
])
def test_serve_refuses_before_listening(run_dir, tmp_path, capsys, extra, message):
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "key").write_text(KEY)
    paths = {"empty": str(tmp_path / "empty"), "missing": str(tmp_path / "missing"), "key": str(tmp_path / "key")}
    extra = [a.format(**paths) for a in extra]
    # A busy port: the refusal must come before the bind, and code that bound first fails on it with
    # another message instead of serving forever.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(run_dir), "--engine", "fake", "--port", str(port), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gensar serve: error: " + message.format(**paths, port=port)) and err.count("\n") == 1
    assert "Traceback" not in err
    assert not (run_dir / "live_events.jsonl").exists()


# ---- the body cap -----------------------------------------------------------------------------------
def test_oversized_bodies_get_a_413_before_parsing(service):
    with _client(service, AccessConfig(max_body_bytes=1000)) as client:
        filler = {"user_id": "u1", "k": 3, "pad": ""}
        size = len(json.dumps(filler).encode())
        at_limit = json.dumps(filler | {"pad": "x" * (1000 - size)}).encode()
        assert len(at_limit) == 1000
        r = client.post("/recommend", content=at_limit, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "body.pad" in r.json()["error"]  # within the cap: parsed and validated
        over = json.dumps(filler | {"pad": "x" * (1001 - size)}).encode()
        for path in ("/recommend", "/events", "/nowhere"):
            r = client.post(path, content=over, headers={"content-type": "application/json"})
            assert r.status_code == 413, r.text
            assert r.json() == {"error": "request body over the 1000-byte limit (gensar serve --max-body-bytes)",
                                "detail": []}
        # Not JSON at all, but over the cap: refused for its size, so it was never parsed (that is a 400).
        r = client.post("/events", content=b"{" * 5000, headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert client.get("/health").json()["live_events"] == 0
    with _client(service, AccessConfig()) as client:  # the default cap: 1 MB
        big = json.dumps(EVENT | {"user_id": "u" * 1_000_000}).encode()
        assert client.post("/events", content=big, headers={"content-type": "application/json"}).status_code == 413


def _asgi_call(limit: int, headers: list[tuple[bytes, bytes]], chunks: Iterator[bytes]) -> tuple[list, int, list]:
    """Run BodyLimit over a recording app: (what was sent back, chunks the client sent, what the app got)."""
    got: list[bytes] = []
    pulled = 0

    async def app(scope, receive, send):
        message = await receive()
        got.append(message["body"])
        assert not message["more_body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        nonlocal pulled
        try:
            chunk = next(chunks)
        except StopIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    sent: list = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/events", "headers": headers}
    asyncio.run(BodyLimit(app, max_bytes=limit)(scope, receive, send))
    return sent, pulled, got


def test_body_cap_counts_chunked_bodies_as_they_stream():
    def endless() -> Iterator[bytes]:
        while True:
            yield b"x" * 300

    sent, pulled, got = _asgi_call(1000, [], endless())  # no Content-Length: chunked, never ending
    assert sent[0]["status"] == 413 and got == []  # the application never saw it
    assert pulled == 4  # 1200 bytes read: refused at the first chunk over the cap, the rest never read
    assert (b"connection", b"close") in sent[0]["headers"]

    sent, pulled, got = _asgi_call(1000, [], iter([b"a" * 400, b"b" * 600]))  # exactly at the cap
    assert sent[0]["status"] == 200 and got == [b"a" * 400 + b"b" * 600]

    # A Content-Length under the cap does not let more bytes through.
    sent, _, got = _asgi_call(1000, [(b"content-length", b"10")], endless())
    assert sent[0]["status"] == 413 and got == []
    # A Content-Length over the cap is refused without reading anything.
    sent, pulled, got = _asgi_call(1000, [(b"content-length", b"50000000")], endless())
    assert sent[0]["status"] == 413 and pulled == 0 and got == []


@pytest.fixture
def live(service) -> Iterator[str]:
    """A real uvicorn server on a free port (the socket as `gensar serve` binds it), 64 kB body cap."""
    with live_server(service, AccessConfig(api_key=KEY, max_body_bytes=65_536)) as address:
        yield address


def _raw_request(address: str, head: str, body: bytes) -> bytes:
    """Send ``head`` and ``body`` on one connection, then read the whole answer (the server closes)."""
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head.encode() + body)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_real_server_refuses_big_bodies_by_header_and_by_stream(live):
    auth = f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
    # 50 MB announced: answered from the headers alone, before the client has sent any of it.
    answer = _raw_request(live, f"POST /events HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 50000000\r\n\r\n", b"")
    assert answer.startswith(b"HTTP/1.1 413 ") and b"65536-byte limit" in answer
    # Chunked, no length: refused once more than 65,536 bytes have streamed in. 65,537 are sent, then
    # nothing: the server has read all of it when it answers (unread bytes would turn its close into a reset).
    chunk = b"8000\r\n" + b"x" * 0x8000 + b"\r\n"
    answer = _raw_request(live, f"POST /events HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n",
                          chunk * 2 + b"1\r\nx\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ") and b"65536-byte limit" in answer
    # A chunked body within the cap is read whole and answered as usual.
    body = json.dumps(EVENT).encode()
    answer = _raw_request(live, f"POST /events HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n"
                                "Connection: close\r\n\r\n", b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"seq":1' in answer
    # The server is still fine.
    assert httpx.get(f"http://{live}/health", timeout=10).json()["live_events"] == 1


def test_serve_cli_wires_the_key_and_cap_and_never_logs_the_key(run_dir, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gensar.cli", "serve", str(run_dir), "--engine", "fake", "--port", "0",
         "--api-key-file", str(key_file), "--max-body-bytes", "2000", "--log-level", "debug"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "GENSAR_THREADS": "1"})
    assert proc.stderr is not None
    try:
        said = proc.stderr.readline()
        m = re.search(r"http://(127\.0\.0\.1:\d+)/", said)
        assert m, said
        assert "writes need the API key" in said
        url = f"http://{m.group(1)}"
        for _ in range(200):
            try:
                httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert httpx.post(f"{url}/events", json=EVENT, timeout=10).status_code == 401
        ok = httpx.post(f"{url}/events", json=EVENT, headers={"X-API-Key": KEY}, timeout=10)
        assert ok.status_code == 200, ok.text
        big = httpx.post(f"{url}/events", json=EVENT | {"user_id": "u" * 3000}, headers={"X-API-Key": KEY},
                         timeout=10)
        assert big.status_code == 413
    finally:
        proc.terminate()
        _, rest = proc.communicate(timeout=30)
    assert KEY not in said + rest  # debug logging on, the key still never appears
