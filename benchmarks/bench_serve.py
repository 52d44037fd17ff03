"""Serving benchmark: latency of single requests, throughput vs concurrency, errors under load.

Starts ``gensar serve RUN_DIR --engine ENGINE`` (generative, hybrid or fake) as its own process on 127.0.0.1 (any free port) and drives it
from this process with an asyncio HTTP load generator (httpx). Requests are a seeded mix of
``/recommend`` (users of the prepared data) and ``/search`` (queries of its search log, half of
them personalized). Phases:

1. latency: ``--latency-requests`` sequential single requests -> p50 / p95 / p99 / mean (ms);
2. throughput: for each of ``--levels`` (default 1, 8, 64) concurrent clients, ``--level-seconds``
   of closed-loop load -> requests/s, p50 / p95 / p99 latency, mean micro-batch size (from /health);
3. soak: 64 clients for ``--duration`` seconds (default 60) -> must end with zero errors (a
   non-2xx answer or a transport error); the exit code is 1 otherwise.

Everything is bounded in time. Prints a table and writes JSON (``--out``, atomic):

    flock /tmp/gensar-cpu.lock python benchmarks/bench_serve.py RUN_DIR --out runs/bench_serve.json
    python benchmarks/bench_serve.py RUN_DIR --engine fake --duration 5 --level-seconds 3   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from gensar.data.prepared import PreparedData
from gensar.errors import GensarError
from gensar.io import atomic_write_json, check_output_json


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--engine", default="generative", choices=["generative", "hybrid", "fake"])
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--beam-size", type=int, default=30)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=None, help="server torch threads (default: all cores)")
    p.add_argument("--latency-requests", type=int, default=50)
    p.add_argument("--levels", default="1,8,64", help="concurrent clients per throughput phase")
    p.add_argument("--level-seconds", type=float, default=15.0)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of the 64-client soak (0 = skip)")
    p.add_argument("--soak-clients", type=int, default=64)
    p.add_argument("--search-share", type=float, default=0.5, help="fraction of requests that are searches")
    p.add_argument("--timeout", type=float, default=120.0, help="per-request timeout (s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON results file")
    return p.parse_args()


# ---- requests ----------------------------------------------------------------------------------------
@dataclass
class Workload:
    """A seeded, endless stream of request bodies."""

    users: list[str]
    queries: list[str]
    search_share: float
    k: int
    rng: np.random.Generator

    def next(self) -> tuple[str, dict]:
        if self.queries and self.rng.random() < self.search_share:
            body: dict = {"query": self.queries[int(self.rng.integers(len(self.queries)))], "k": self.k}
            if self.rng.random() < 0.5:
                body["user_id"] = self.users[int(self.rng.integers(len(self.users)))]
            return "/search", body
        return "/recommend", {"user_id": self.users[int(self.rng.integers(len(self.users)))], "k": self.k}


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)

    def add_error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_examples) < 5:
            self.error_examples.append(what)

    def summary(self, seconds: float) -> dict:
        lat = np.asarray(self.latencies_ms)
        return {
            "requests": len(lat), "errors": self.errors, "seconds": round(seconds, 2),
            "throughput_rps": round(len(lat) / seconds, 2) if seconds > 0 else None,
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
            "p95_ms": round(float(np.percentile(lat, 95)), 2) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
            "mean_ms": round(float(lat.mean()), 2) if len(lat) else None,
            "error_examples": self.error_examples,
        }


async def post_timed(client: httpx.AsyncClient, path: str, body: dict, tally: Tally) -> None:
    """POST one request; its latency into ``tally``, or an error when it fails or is not a 200."""
    start = time.perf_counter()
    try:
        r = await client.post(path, json=body)
    except httpx.HTTPError as err:
        tally.add_error(f"{path}: {type(err).__name__}: {err}")
        return
    if r.status_code != 200:
        tally.add_error(f"{path} {body} -> {r.status_code} {r.text[:200]}")
        return
    tally.latencies_ms.append((time.perf_counter() - start) * 1000)


async def run_clients(client: httpx.AsyncClient, work, clients: int, seconds: float, tally: Tally) -> float:
    """``clients`` concurrent loops, each posting ``work.next()`` as soon as its previous request is
    answered, for ``seconds``; returns the elapsed time."""
    start = time.perf_counter()
    stop = start + seconds

    async def one_client() -> None:
        while time.perf_counter() < stop:
            path, body = work.next()
            await post_timed(client, path, body, tally)

    await asyncio.gather(*[one_client() for _ in range(clients)])
    return time.perf_counter() - start


async def closed_loop(url: str, work: Workload, clients: int, seconds: float, timeout: float) -> dict:
    """``clients`` workers, each sending its next request as soon as the previous one is answered."""
    tally = Tally()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        before = (await client.get("/health")).json()["batching"]
        elapsed = await run_clients(client, work, clients, seconds, tally)
        after = (await client.get("/health")).json()["batching"]
    out = tally.summary(elapsed)
    batches = sum(after[n]["batches"] - before[n]["batches"] for n in after)
    requests = sum(after[n]["requests"] - before[n]["requests"] for n in after)
    out["clients"] = clients
    out["mean_batch"] = round(requests / batches, 2) if batches else None
    return out


async def sequential(url: str, work: Workload, n: int, timeout: float) -> dict:
    by_path: dict[str, Tally] = {}
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
        start = time.perf_counter()
        for _ in range(n):
            path, body = work.next()
            await post_timed(client, path, body, by_path.setdefault(path, Tally()))
        elapsed = time.perf_counter() - start
    return {path: t.summary(elapsed) for path, t in sorted(by_path.items())}


# ---- the server process -------------------------------------------------------------------------------
def start_server(args: argparse.Namespace, log_path: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "gensar.cli"]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    cmd += ["serve", args.run_dir, "--engine", args.engine, "--host", "127.0.0.1", "--port", "0",
            "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
            "--beam-size", str(args.beam_size), "--events-log", str(log_path.with_suffix(".events.jsonl"))]
    return launch(cmd, log_path)


def launch(cmd: list[str], log_path: Path, ready_lines: int = 0) -> tuple[subprocess.Popen, str]:
    """Start the server command ``cmd`` (stdout/stderr to ``log_path``) and wait until it answers
    ``/health``, and, for ``--workers N``, until ``ready_lines`` workers logged " ready (": its URL."""
    log = log_path.open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    deadline = time.monotonic() + 300  # loading a model can take a while
    while time.monotonic() < deadline:
        text = log_path.read_text()
        m = re.search(r"http://(127\.0\.0\.1:\d+)/", text)
        if m and text.count(" ready (") >= ready_lines:
            url = f"http://{m.group(1)}"
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start within 300 s")


def stop_server(proc: subprocess.Popen, timeout: float = 60) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    args = parse_args()
    if args.out:
        try:  # before any work: never replace a file this benchmark did not write
            check_output_json(args.out, "benchmark", "serve")
        except GensarError as err:
            print(f"bench_serve: error: {err}", file=sys.stderr)
            return 2
    data = PreparedData.load(Path(args.run_dir) / "data")
    users = sorted(set(data.events["user_id"]))
    queries = sorted(set(data.events.loc[data.events["behavior"] == "search", "query"]))
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    results: dict = {"benchmark": "serve", "run_dir": args.run_dir, "engine": args.engine, "k": args.k, "beam_size": args.beam_size,
                     "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "threads": args.threads,
                     "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    with tempfile.TemporaryDirectory(prefix="bench_serve.") as tmp:
        proc, url = start_server(args, Path(tmp) / "server.log")
        try:
            def work(offset: int) -> Workload:
                return Workload(users, queries, args.search_share, args.k, np.random.default_rng([args.seed, offset]))

            results["latency"] = asyncio.run(sequential(url, work(0), args.latency_requests, args.timeout))
            results["throughput"] = [asyncio.run(closed_loop(url, work(1 + c), c, args.level_seconds, args.timeout))
                                     for c in levels]
            if args.duration > 0:
                results["soak"] = asyncio.run(closed_loop(url, work(10_000), args.soak_clients, args.duration,
                                                          args.timeout))
        finally:
            stop_server(proc)

    print(f"engine={args.engine} k={args.k} beam={args.beam_size} max_batch={args.max_batch} "
          f"max_wait_ms={args.max_wait_ms} threads={args.threads} cpus={os.cpu_count()}")
    print(f"{'phase':<22}{'req':>7}{'err':>5}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'batch':>7}")
    for path, s in results["latency"].items():
        print(f"{'single ' + path:<22}{s['requests']:>7}{s['errors']:>5}{'':>9}{s['p50_ms']!s:>9}{s['p95_ms']!s:>9}"
              f"{s['p99_ms']!s:>9}")
    for s in results["throughput"] + ([results["soak"]] if "soak" in results else []):
        name = f"{s['clients']} clients" + (" (soak)" if s is results.get("soak") else "")
        print(f"{name:<22}{s['requests']:>7}{s['errors']:>5}{s['throughput_rps']!s:>9}{s['p50_ms']!s:>9}"
              f"{s['p95_ms']!s:>9}{s['p99_ms']!s:>9}{s['mean_batch']!s:>7}")
    if args.out:
        atomic_write_json(args.out, results)
        print(f"-> {args.out}")
    phases = list(results["latency"].values()) + results["throughput"] + ([results["soak"]] if "soak" in results else [])
    errors = sum(s["errors"] for s in phases)
    if errors:
        examples = [e for s in phases for e in s["error_examples"]]
        print(f"{errors} errors, e.g. {examples[0]}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
