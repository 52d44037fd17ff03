"""Serving with 2 worker processes vs 1, on a shared PostgreSQL event store (issue 18 §4).

Starts a PostgreSQL server (the ``pgserver`` package, in a temporary directory), then, one after
the other on the same run directory and the same seeded load:

1. ``gensar serve RUN --workers 1 --store postgresql://...``  (the reference),
2. ``gensar serve RUN --workers 2 --store postgresql://...``,
3. (``--with-file``, default on) ``gensar serve RUN`` with the embedded events log: today's
   single-process server, to show what the shared store costs.

Each gets ``--warmup`` seconds of load, then ``--seconds`` of closed-loop load from ``--clients``
concurrent clients (asyncio + httpx in this process): a seeded mix of ``/recommend``, ``/search`` and
``POST /events`` (``--event-share``), each event for a user of the prepared data, so later answers
read longer histories. The setups are measured ``--rounds`` times, interleaved; reported per setup:
the medians of requests/s and p50 / p95 latency, and errors; every setup's throughput is printed as a
ratio to the 1-worker reference of the same run. The hardware (CPU model,
cores) and the load average before and after are recorded: on a shared machine the load generator
and other jobs compete with the workers for the same cores.

    python benchmarks/bench_serve_workers.py RUN_DIR --engine fake --seconds 15 --out runs/bench_workers.json

RUN_DIR needs ``data/`` (the ``fake`` engine) or a whole run (``--engine generative`` / ``hybrid``);
``gensar synth --out W && gensar prepare W --out R/data`` makes one in ~20 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
from bench_serve import Tally, launch, run_clients, stop_server

from gensar.data.prepared import PreparedData
from gensar.io import atomic_write_json


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--engine", default="fake", choices=["fake", "generative", "hybrid"])
    p.add_argument("--clients", type=int, default=16, help="concurrent closed-loop clients")
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per setup")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds of load first")
    p.add_argument("--event-share", type=float, default=0.1, help="fraction of requests that are POST /events")
    p.add_argument("--search-share", type=float, default=0.45)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--with-file", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure the single-process server on the embedded events log")
    p.add_argument("--rounds", type=int, default=3,
                   help="times each setup is measured, interleaved (1, 2, file, 1, 2, file, ...); medians are reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON results file")
    args = p.parse_args()
    if args.rounds < 1 or args.clients < 1 or args.seconds <= 0 or args.warmup < 0 or not 0 <= args.event_share + args.search_share <= 1:
        p.error("--rounds >= 1, --clients >= 1, --seconds > 0, --warmup >= 0, and the shares must add up to at most 1")
    return args


# ---- load ----------------------------------------------------------------------------------------------
class Mix:
    """A seeded stream of (path, body): events, searches, recommendations."""

    def __init__(self, data: PreparedData, args: argparse.Namespace, offset: int) -> None:
        self.users = sorted(set(data.events["user_id"]))
        self.items = data.items["item_id"].tolist()
        self.queries = sorted(set(data.events.loc[data.events["behavior"] == "search", "query"]))
        self.args = args
        self.rng = np.random.default_rng([args.seed, offset])

    def next(self) -> tuple[str, dict]:
        r, user = self.rng.random(), self.users[int(self.rng.integers(len(self.users)))]
        if r < self.args.event_share:
            return "/events", {"user_id": user, "behavior": "rec", "items": [self.items[int(self.rng.integers(len(self.items)))]]}
        if r < self.args.event_share + self.args.search_share and self.queries:
            return "/search", {"query": self.queries[int(self.rng.integers(len(self.queries)))], "k": self.args.k,
                               "user_id": user}
        return "/recommend", {"user_id": user, "k": self.args.k}


async def closed_loop(url: str, mix: Mix, clients: int, seconds: float) -> dict:
    """``clients`` clients, each sending its next request as soon as the previous one is answered."""
    tally = Tally()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        elapsed = await run_clients(client, mix, clients, seconds, tally)
    return tally.summary(elapsed)


async def worker_pids(url: str, tries: int = 40) -> list[int]:
    """The pids answering on ``url`` (fresh connections are spread over the workers by the kernel)."""
    seen: set[int] = set()
    for _ in range(tries):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            seen.add((await client.get("/health")).json()["pid"])
    return sorted(seen)


# ---- servers -------------------------------------------------------------------------------------------
def start_server(args: argparse.Namespace, workers: int, store: str | None, log_path: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "gensar.cli", "--threads", str(args.threads), "serve", args.run_dir,
           "--engine", args.engine, "--host", "127.0.0.1", "--port", "0", "--workers", str(workers)]
    cmd += ["--store", store] if store else ["--events-log", str(log_path.with_suffix(".events.jsonl"))]
    return launch(cmd, log_path, ready_lines=workers if workers > 1 else 0)


def measure(args: argparse.Namespace, data: PreparedData, name: str, workers: int, store: str | None,
            tmp: Path, offset: int) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    proc, url = start_server(args, workers, store, tmp / f"{re.sub(r'[^a-z0-9]+', '_', name)}.log")
    try:
        pids = asyncio.run(worker_pids(url)) if workers > 1 else []
        if args.warmup > 0:
            asyncio.run(closed_loop(url, Mix(data, args, offset + 1000), args.clients, args.warmup))
        summary = asyncio.run(closed_loop(url, Mix(data, args, offset), args.clients, args.seconds))
    finally:
        stop_server(proc)
    summary.update(setup=name, workers=workers, store="postgresql" if store else "file", pids_seen=len(pids))
    return summary


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    import pgserver  # the benchmark's own PostgreSQL (pip install 'gensar[dev]')
    import psycopg

    args = parse_args()
    data = PreparedData.load(Path(args.run_dir) / "data")
    results: dict = {
        "run_dir": args.run_dir, "engine": args.engine, "clients": args.clients, "seconds": args.seconds,
        "warmup": args.warmup, "event_share": args.event_share, "search_share": args.search_share,
        "threads_per_worker": args.threads, "items": len(data.items), "users": int(data.events["user_id"].nunique()),
        "hardware": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                     "python": platform.python_version()},
        "loadavg_before": list(os.getloadavg()),
    }
    plan = [("postgresql, 1 worker", 1, True), ("postgresql, 2 workers", 2, True)]
    if args.with_file:
        plan.append(("file log, 1 process", 1, False))
    rounds: dict[str, list[dict]] = {name: [] for name, _, _ in plan}
    with tempfile.TemporaryDirectory(prefix="bench_workers.") as tmp_name:
        tmp = Path(tmp_name)
        server = pgserver.get_server(tmp / "pgdata", cleanup_mode="stop")
        try:
            url = server.get_uri()
            for r in range(args.rounds):  # interleaved, so a change in the machine's load hits every setup
                for i, (name, workers, shared) in enumerate(plan):
                    store = None
                    if shared:  # a schema per measurement: each starts from an empty events table
                        schema = f"bench_{r}_{i}"
                        with psycopg.connect(url, autocommit=True) as conn:
                            conn.execute(f"CREATE SCHEMA {schema}")
                        store = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
                    rounds[name].append(measure(args, data, name, workers, store, tmp / f"r{r}", offset=r))
        finally:
            server.cleanup()
    results["loadavg_after"] = list(os.getloadavg())
    setups = []
    for name, measured in rounds.items():
        def med(key: str) -> float | None:
            values = [m[key] for m in measured if m[key] is not None]
            return round(statistics.median(values), 2) if values else None

        setups.append({"setup": name, "workers": measured[0]["workers"], "store": measured[0]["store"],
                       "pids_seen": measured[0]["pids_seen"], "requests": sum(m["requests"] for m in measured),
                       "throughput_rps": med("throughput_rps"), "p50_ms": med("p50_ms"), "p95_ms": med("p95_ms"),
                       "rounds": measured, "rounds_rps": [m["throughput_rps"] for m in measured],
                       "errors": sum(m["errors"] for m in measured),
                       "error_examples": [e for m in measured for e in m["error_examples"]][:5]})
    results["setups"] = setups
    ref = setups[0]["throughput_rps"] or float("nan")
    for s in setups:
        s["ratio_to_1_worker"] = round((s["throughput_rps"] or 0) / ref, 3)

    hw = results["hardware"]
    print(f"{args.engine} engine, {results['items']} items, {args.clients} clients, {args.seconds:g} s each, "
          f"{args.event_share:.0%} events; {hw['cpu']} x {hw['cpu_count']}; load average before "
          f"{results['loadavg_before'][0]:.2f}, after {results['loadavg_after'][0]:.2f}")
    print(f"medians of {args.rounds} interleaved rounds (req: all rounds together)")
    print(f"{'setup':<24}{'req':>7}{'err':>5}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'x 1 worker':>12}  rounds req/s")
    for s in setups:
        print(f"{s['setup']:<24}{s['requests']:>7}{s['errors']:>5}{s['throughput_rps']!s:>9}{s['p50_ms']!s:>9}"
              f"{s['p95_ms']!s:>9}{s['ratio_to_1_worker']:>12.2f}  {s['rounds_rps']}")
    if args.out:
        atomic_write_json(args.out, results)
        print(f"-> {args.out}")
    errors = sum(s["errors"] for s in setups)
    if errors:
        print(f"{errors} errors, e.g. {next(e for s in setups for e in s['error_examples'])}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
