"""Shared fixtures. Real data lives in ../shared/data and is optional: tests needing it skip."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SCIENTIFIC = REPO.parent / "shared" / "data" / "amazon-scientific"


# Hypothesis draws the same examples on every run (a suite that cannot flake); HYPOTHESIS_PROFILE=explore
# draws new ones, for hunting bugs rather than for CI.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _torch_threads():
    """Every test starts with $GENSAR_THREADS (default 1) torch threads: an in-process CLI call sets
    all cores (configure_threads), which would otherwise leak into whichever tests run after it."""
    import torch

    n = int(os.environ.get("GENSAR_THREADS", "1"))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@pytest.fixture
def scientific_dir() -> Path:
    if not (SCIENTIFIC / "Scientific.text").is_file():
        pytest.skip("../shared/data/amazon-scientific is absent")
    return SCIENTIFIC


def make_tiny_prepared(n_items: int = 40, n_users: int = 30, seed: int = 0, max_history: int = 5):
    """A small hand-built PreparedData (no loaders, no BM25): for model-side tests."""
    from gensar.data.prepared import PreparedData
    from gensar.data.schema import make_events, make_items

    rng = np.random.default_rng(seed)
    cats = [["Tools", "Saws"], ["Tools", "Drills"], ["Lab", "Glassware"], ["Lab", "Scales"]]
    items = make_items([
        {"item_id": f"i{i}", "title": f"item {i} {cats[i % 4][1].lower()}", "categories": cats[i % 4],
         "brand": f"brand{i % 3}", "description": ""}
        for i in range(n_items)
    ])
    rows = []
    for u in range(n_users):
        for t in range(int(rng.integers(6, 10))):
            it = f"i{int(rng.integers(n_items))}"
            if rng.random() < 0.5:
                rows.append({"user_id": f"u{u}", "timestamp": t, "behavior": "rec", "query": "", "items": [it]})
            else:
                q = " ".join(w.lower() for w in cats[int(it[1:]) % 4])
                rows.append({"user_id": f"u{u}", "timestamp": t, "behavior": "search", "query": q, "items": [it]})
    events = make_events(rows)
    examples, cands = [], []
    all_items = items["item_id"].tolist()
    for user, ev in events.groupby("user_id", sort=True):
        seen = {i for its in ev["items"] for i in its}
        for behavior in ("rec", "search"):
            sub = ev[ev["behavior"] == behavior]
            n = len(sub)
            for k, row in enumerate(sub.itertuples(index=False)):
                split = "train"
                if n >= 3 and k == n - 1:
                    split = "test"
                elif n >= 3 and k == n - 2:
                    split = "valid"
                earlier = ev[ev["timestamp"] < row.timestamp]["event_id"].tolist()[-max_history:]
                ex_id = len(examples)
                examples.append({"example_id": ex_id, "user_id": user, "split": split, "behavior": behavior,
                                 "event_id": row.event_id, "query": row.query, "target": row.items[0],
                                 "history": earlier})
                if split != "train":
                    neg = [i for i in all_items if i not in seen]
                    pick = rng.choice(len(neg), size=min(19, len(neg)), replace=False)
                    cands.append({"example_id": ex_id, "candidates": [row.items[0]] + [neg[j] for j in pick]})
    manifest = {"source": "tiny-fixture", "format": "fixture", "seed": seed, "options": {"max_history": max_history}}
    return PreparedData(manifest=manifest, items=items, events=events,
                        examples=pd.DataFrame(examples), candidates=pd.DataFrame(cands))


@pytest.fixture
def run_dir(tmp_path):
    """A run directory holding only prepared data: enough for the fake serving engine."""
    make_tiny_prepared().save(tmp_path / "run" / "data")
    return tmp_path / "run"


@pytest.fixture
def service(run_dir):
    """The fake-engine ``Service`` over ``run_dir`` (writable events log)."""
    from gensar.serve.service import ServeConfig, Service

    s = Service.open(run_dir, ServeConfig(engine="fake"))
    yield s
    s.close()


@pytest.fixture
def tiny_prepared():
    return make_tiny_prepared()


@contextlib.contextmanager
def live_server(service, access) -> Iterator[str]:
    """A real uvicorn server for ``service`` on a free 127.0.0.1 port (bound as `gensar serve`
    binds it), stopped on exit; yields ``host:port``."""
    import threading

    import uvicorn

    from gensar.serve.app import create_app
    from gensar.serve.cli import _listen

    sock = _listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(service, access), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(400):
            if server.started:
                break
            thread.join(0.025)
        assert server.started, "server did not start"
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> Iterator[str]:
    """A real PostgreSQL server for the session (the ``pgserver`` package ships the binaries),
    started once; its URL. Skips cleanly where the package is missing or the server cannot start."""
    pgserver = pytest.importorskip("pgserver", reason="pgserver is not installed (pip install 'gensar[postgres]')")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'gensar[postgres]')")
    try:
        server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
        url = server.get_uri()
    except Exception as err:  # noqa: BLE001 - any failure to start means: cannot test here
        pytest.skip(f"PostgreSQL (pgserver) could not start: {type(err).__name__}: {str(err)[:200]}")
    try:
        yield url
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A URL of the session's server whose tables land in a fresh schema: each test starts empty."""
    import uuid

    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in postgres_server else "?"
    return f"{postgres_server}{sep}options=-csearch_path%3D{schema}"
