"""``gensar serve``, ``gensar recommend`` and ``gensar search``: the model of a run directory, live.

``recommend`` / ``search`` answer one request (a table, or ``--json``) or a JSONL file of requests
(``--batch requests.jsonl --out answers.jsonl``). A batch file holds one request per line, the
same JSON bodies as the HTTP API (``{"user_id": "u1", "k": 10}``; ``{"query": "...", "user_id":
"u1", "k": 10}`` with ``user_id`` optional); answers come out one per line, in order, with the
HTTP API's answer bodies. A bad line is an error naming file and line, and nothing is written.

These commands read the run's live events and added-items logs (read-only), so they see events a
server recorded and items added to the catalog (``gensar add-items``, ``POST /items``).
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from gensar.config import from_dict
from gensar.errors import GensarError, InputError
from gensar.io import text_lines

Req = TypeVar("Req", bound=BaseModel)


def cli_serve(args: argparse.Namespace) -> int:
    cfg = _serve_config(args)
    access = _access_config(args)
    store = _store_value(args)
    if args.workers < 1:
        raise GensarError(f"--workers must be >= 1 (got {args.workers})")
    if args.workers > 1 and store is None:
        raise GensarError(f"--workers {args.workers} needs a shared event store (--store postgresql://...): "
                          "the embedded events log is written by one process")
    if args.workers > 1:
        return _serve_workers(args, cfg, access, store)
    import uvicorn

    from gensar.serve.app import create_app
    from gensar.serve.service import Service

    if cfg.engine != "fake":
        _prepare_generative(args)
    sock = _listen(args.host, args.port)  # bind first: a busy port is a one-line error, not a traceback
    try:
        service = Service.open(args.run_dir, cfg, events_log=args.events_log, writable=True, store=store,
                               items_log=args.items_log)
    except BaseException:
        sock.close()
        raise
    try:
        app = create_app(service, access)
        host, port = sock.getsockname()[:2]
        print(f"gensar serve: http://{host}:{port}/ ({service.engine.name} engine, {len(service.item_ids)} items, "
              f"{len(service.histories)} users, {service.histories.live_events} live events replayed; "
              f"{_writes(access)})", file=sys.stderr, flush=True)
        config = uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=5)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        service.close()
        sock.close()
    return 0


def _serve_workers(args: argparse.Namespace, cfg, access, store: str) -> int:
    """``--workers N``: check what a worker would fail on here, once, then start N of them."""
    import dataclasses
    import os

    from gensar.data.prepared import PreparedData
    from gensar.serve.event_store import EventKind
    from gensar.serve.pgstore import PostgresStore
    from gensar.serve.store import describe_store
    from gensar.serve.workers import WorkerSettings, run_workers

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise GensarError(f"{run_dir}: run directory not found")
    data = PreparedData.load(run_dir / "data")
    # Connect, create the table and replay once here: a bad URL or a stored event that does not fit
    # this catalog is one line from this process, not one from each worker.
    checked = PostgresStore(store, EventKind(data.item_index.__contains__))
    try:
        replayed = len(checked.since(0))
    finally:
        checked.close()
    # Torch threads per worker: --threads, else $GENSAR_THREADS, else a share of the cores (N
    # processes each using all cores would slow every one of them down).
    threads = args.threads or int(os.environ.get("GENSAR_THREADS", "0")) or max(1, (os.cpu_count() or 1) // args.workers)
    settings = WorkerSettings(run_dir=str(run_dir.resolve()), serve=dataclasses.asdict(cfg), store=store,
                              api_key_file=str(Path(args.api_key_file).resolve()) if args.api_key_file else None,
                              max_body_bytes=args.max_body_bytes, threads=threads)
    sock = _listen(args.host, args.port)
    try:
        host, port = sock.getsockname()[:2]
        print(f"gensar serve: http://{host}:{port}/ ({args.workers} workers x {threads} threads, {cfg.engine} engine, "
              f"{len(data.items)} items, events in {describe_store(store)} ({replayed} stored); "
              f"{_writes(access)})", file=sys.stderr, flush=True)
        return run_workers(settings, sock, args.workers, args.log_level)
    finally:
        sock.close()


def _writes(access) -> str:
    return "writes need the API key" if access.api_key is not None else "writes open to anyone"


def cli_add_items(args: argparse.Namespace) -> int:
    from gensar.ids.cold_start import ColdStartConfig
    from gensar.serve.add_items import add_items_file

    cold = from_dict(ColdStartConfig, _cold_start(args), "cold_start")
    _prepare_generative(args)  # the text encoder: torch threads, no progress bar
    record, total = add_items_file(args.run_dir, args.items_file, args.items_log, cold)
    for item in record.items:
        print(f"{item.item_id:<14} {' '.join(item.semantic):<44} {' '.join(item.collaborative)}")
    print(f"gensar add-items: {len(record.items)} items added (record {record.seq}), {total} in the catalog",
          file=sys.stderr)
    return 0


def cli_recommend(args: argparse.Namespace) -> int:
    from gensar.serve.schemas import RecommendRequest

    if (args.user is None) == (args.batch is None):
        raise GensarError("give exactly one of --user or --batch")
    if args.batch is not None:
        return _run_batch(args, RecommendRequest, lambda s, reqs: s.recommend(reqs))
    req = _validated(RecommendRequest, {"user_id": args.user, "k": args.k})
    service = _open(args)
    answer = service.recommend([req])[0]
    _print_items(args, answer, f"recommendations for {answer.user_id}"
                 + ("" if answer.known_user else " (unknown user: empty history)"))
    return 0


def cli_search(args: argparse.Namespace) -> int:
    from gensar.serve.schemas import SearchRequest

    if (args.query is None) == (args.batch is None):
        raise GensarError("give exactly one of --query or --batch")
    if args.batch is not None:
        return _run_batch(args, SearchRequest, lambda s, reqs: s.search(reqs))
    body: dict = {"query": args.query, "k": args.k}
    if args.user is not None:
        body["user_id"] = args.user
    req = _validated(SearchRequest, body)
    service = _open(args)
    answer = service.search([req])[0]
    who = f" for {answer.user_id}" if answer.user_id else ""
    _print_items(args, answer, f"search '{answer.query}'{who}")
    return 0


# ---- pieces ----------------------------------------------------------------------------------------
def _serve_config(args: argparse.Namespace):
    from gensar.serve.service import ServeConfig

    values = {"engine": args.engine, "max_batch": args.max_batch, "max_history": args.max_history,
              "beam_size": args.beam_size}
    if args.command == "serve":
        values["max_wait_ms"] = args.max_wait_ms
        values["cold_start"] = _cold_start(args)
    return from_dict(ServeConfig, values)


def _cold_start(args: argparse.Namespace) -> dict:
    """The ``ColdStartConfig`` keys ``--cold-start`` sets."""
    return {} if args.cold_start is None else {"method": args.cold_start}


def _access_config(args: argparse.Namespace):
    """The API key and body cap of ``serve``; refuses to expose open writes beyond this machine."""
    from gensar.serve.access import AccessConfig, read_api_key

    if args.max_body_bytes < 1:
        raise GensarError(f"--max-body-bytes must be >= 1 (got {args.max_body_bytes})")
    key = read_api_key(args.api_key_file) if args.api_key_file is not None else None
    if key is None and not args.insecure and not _is_loopback(args.host):
        raise GensarError(f"--host {args.host} is reachable from other machines and anyone there could write "
                          "events: give --api-key-file FILE (or --insecure to allow it)")
    return AccessConfig(api_key=key, max_body_bytes=args.max_body_bytes)


def _is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one ('' and 0.0.0.0 / :: are every interface)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM) if host else []
    except (socket.gaierror, UnicodeError):
        return False  # unresolvable: binding fails anyway, and it is not known to be local
    # An IPv6 address may carry a zone ("fe80::1%eth0"): the address is the part before it.
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def _open(args: argparse.Namespace):
    from gensar.serve.service import Service

    store = _store_value(args)
    if args.engine != "fake":
        _prepare_generative(args)
    return Service.open(args.run_dir, _serve_config(args), events_log=args.events_log, writable=False, store=store,
                        items_log=args.items_log)


def _store_value(args: argparse.Namespace) -> str | None:
    """``--store`` checked: None for the embedded events log, else the PostgreSQL URL."""
    from gensar.serve.store import parse_store

    url = parse_store(args.store)
    if url is not None and args.events_log is not None:
        raise GensarError("--events-log names the embedded store's file; with --store postgresql://... "
                          "events are kept in the database")
    return url


def _prepare_generative(args: argparse.Namespace) -> None:
    """Torch threads ($GENSAR_THREADS or all cores unless --threads was given), and no
    "Loading weights" progress bar from transformers."""
    from transformers.utils import logging as hf_logging

    from gensar.runtime import configure_threads

    if args.threads is None:
        configure_threads(None)
    hf_logging.disable_progress_bar()


def _listen(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:  # bind() raises OverflowError, not OSError, for these
        raise GensarError(f"--port {port}: must be in 0..65535 (0 = any free port)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so; without it every
    # keep-alive answer waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise GensarError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _validated(cls: type[Req], body: dict, path: str | Path | None = None, line: int | None = None) -> Req:
    try:
        return cls.model_validate(body)
    except ValidationError as err:
        raise _input_error(err, path, line) from None


def _input_error(err: ValidationError, path: str | Path | None, line: int | None) -> InputError:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or None
    return InputError(str(first.get("msg", "invalid")), path=path, line=line, field=field)


def _read_requests(path: Path, cls: type[Req]) -> list[Req]:
    if not path.is_file():
        raise InputError("file not found", path=path)
    requests = []
    for lineno, line in text_lines(path.read_bytes(), path):
        try:
            requests.append(cls.model_validate_json(line))
        except ValidationError as err:
            if any(e.get("type") == "json_invalid" for e in err.errors()):
                raise InputError("invalid JSON", path=path, line=lineno) from None
            raise _input_error(err, path, lineno) from None
    return requests


def _run_batch(args: argparse.Namespace, cls: type[Req], answer: Callable[[object, Sequence[Req]], list]) -> int:
    from tqdm.auto import tqdm

    from gensar.io import atomic_write_text

    from gensar.ownership import refuse_output_over_input

    if args.out is None:
        raise GensarError("--batch needs --out FILE")
    # outputs are checked before any decoding, not when the answers are ready to write
    refuse_output_over_input([("--out", args.out)], [("--batch", args.batch), ("RUN_DIR", args.run_dir)])
    if Path(args.out).is_dir():
        raise GensarError(f"--out {args.out}: is a directory (expected the answers' file name)")
    requests = _read_requests(Path(args.batch), cls)  # all lines checked before any work
    service = _open(args)
    lines = []
    step = service.cfg.max_batch
    with tqdm(total=len(requests), desc=f"gensar {args.command}", unit="req", disable=args.quiet) as bar:
        for start in range(0, len(requests), step):
            chunk = requests[start:start + step]
            lines.extend(a.model_dump_json() for a in answer(service, chunk))
            bar.update(len(chunk))
    atomic_write_text(args.out, "".join(line + "\n" for line in lines))
    print(f"gensar {args.command}: {len(lines)} answers -> {args.out}", file=sys.stderr)
    return 0


def _print_items(args: argparse.Namespace, answer: BaseModel, heading: str) -> None:
    if args.json:
        print(answer.model_dump_json())
        return
    items = answer.items  # type: ignore[attr-defined]
    print(heading)
    if not items:
        print("  (no results)")
    for rank, it in enumerate(items, start=1):
        print(f"{rank:>4}  {it.score:>9.4f}  {it.item_id:<14} {it.title}")
