"""``gensar serve --workers N``: N server processes answering on one port, sharing one event store.

The parent binds the port once and runs uvicorn's multiprocess supervisor, which starts N worker
processes (``spawn``: each a fresh interpreter, so no torch state is inherited through ``fork``)
that all accept on the inherited socket; the kernel hands each new connection to one of them. A
worker that dies (even by SIGKILL) is replaced; SIGTERM / SIGINT stop them all.

Each worker opens the run directory itself (``worker_app``, the uvicorn app factory) and reads its
settings from ``$GENSAR_SERVE_WORKER`` (JSON, set by the parent; it holds the API key's *file*, never
the key). Workers share state only through the event store, which must therefore be one that
several processes can append to (PostgreSQL); the embedded events log is single-writer.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import asdict, dataclass
from socket import socket
from typing import Any

from gensar.errors import GensarError

__all__ = ["WORKER_ENV", "WorkerSettings", "run_workers", "worker_app"]

WORKER_ENV = "GENSAR_SERVE_WORKER"


@dataclass(frozen=True)
class WorkerSettings:
    run_dir: str
    serve: dict[str, Any]  # ServeConfig fields
    store: str  # a shared store's URL
    api_key_file: str | None
    max_body_bytes: int
    threads: int  # torch threads per worker

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> WorkerSettings:
        raw = os.environ.get(WORKER_ENV)
        if raw is None:
            raise GensarError(f"${WORKER_ENV} is not set (worker processes are started by gensar serve --workers)")
        return cls(**json.loads(raw))


def run_workers(settings: WorkerSettings, sock: socket, workers: int, log_level: str) -> int:
    """Serve on ``sock`` with ``workers`` processes until SIGTERM / SIGINT; the exit code."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    os.environ[WORKER_ENV] = settings.to_env()  # spawned workers inherit the environment
    # timeout_worker_healthcheck: the supervisor pings each worker and replaces one silent for
    # this long; loading a large model can hold the interpreter for seconds, which is not a hang.
    config = uvicorn.Config("gensar.serve.workers:worker_app", factory=True, workers=workers,
                            log_level=log_level, timeout_graceful_shutdown=5, timeout_worker_healthcheck=30)
    supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()
    # The supervisor stops when a worker fails before serving (it would fail again on every
    # restart); that worker has said why on stderr.
    return 2 if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes) else 0


def worker_app() -> Any:
    """The app of one worker process (uvicorn calls this factory in each worker)."""
    from uvicorn.config import STARTUP_FAILURE

    from gensar.config import from_dict
    from gensar.runtime import configure_threads
    from gensar.serve.access import AccessConfig, read_api_key
    from gensar.serve.app import create_app
    from gensar.serve.service import ServeConfig, Service

    try:
        settings = WorkerSettings.from_env()
        configure_threads(settings.threads)
        if settings.serve.get("engine") != "fake":
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        access = AccessConfig(api_key=read_api_key(settings.api_key_file) if settings.api_key_file else None,
                              max_body_bytes=settings.max_body_bytes)
        service = Service.open(settings.run_dir, from_dict(ServeConfig, settings.serve), writable=True,
                               store=settings.store)
    except GensarError as err:  # one line, and an exit code that stops the supervisor restarting us
        print(f"gensar serve: worker {os.getpid()}: error: {err}", file=sys.stderr, flush=True)
        sys.exit(STARTUP_FAILURE)
    except Exception:  # a bug: its traceback, and still no restart loop
        traceback.print_exc()
        sys.exit(STARTUP_FAILURE)
    print(f"gensar serve: worker {os.getpid()} ready ({service.engine.name} engine, "
          f"{service.histories.live_events} live events replayed)", file=sys.stderr, flush=True)
    return create_app(service, access, owns_service=True)
