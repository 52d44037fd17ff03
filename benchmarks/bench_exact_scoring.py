"""Exact identifier scoring of the candidates the beam did not propose: this checkout against another.

For seeded requests of a run's hybrid ranker (recommendations, or searches over logged queries),
the candidates the beam did not finish are scored by this checkout's ``identifier_log_probs`` and
by the one of another checkout's source tree (``--against DIR/src``, loaded from its file),
interleaved request by request in this process so machine noise hits both alike. Prints p50 of each,
their ratio and the largest relative difference of the scores:

    git worktree add /tmp/old HEAD~1
    GENSAR_THREADS=1 python benchmarks/bench_exact_scoring.py runs/demo --task rec --against /tmp/old/src
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from gensar.data.prepared import PreparedData
from gensar.decode.score import identifier_log_probs
from gensar.runtime import configure_threads
from gensar.serve.engine import HistoryEvent
from gensar.serve.hybrid import HybridEngine


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--task", choices=("rec", "search"), default="rec")
    p.add_argument("--against", required=True, help="another checkout's src/ directory")
    p.add_argument("--requests", type=int, default=80)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    threads = configure_threads()
    spec = importlib.util.spec_from_file_location("other_score", Path(args.against) / "gensar/decode/score.py")
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    run = Path(args.run_dir)
    data = PreparedData.load(run / "data")
    engine = HybridEngine.from_run_dir(run, data)
    ranker, scorer = engine.ranker, engine.ranker.generative
    rng = np.random.default_rng(args.seed)
    by_user = {u: ev for u, ev in data.events.groupby("user_id", sort=True)}
    users = sorted(by_user)
    queries = sorted(set(data.events.loc[data.events["behavior"] == "search", "query"]))
    codes = torch.as_tensor(scorer.codes[args.task])
    takes_nodes = "prefix_nodes" in inspect.signature(other.identifier_log_probs).parameters
    fns = {"other": (other.identifier_log_probs, {"prefix_nodes": scorer.nodes[args.task]} if takes_nodes else {}),
           "this": (identifier_log_probs, {"prefix_nodes": scorer.nodes[args.task]})}
    times: dict[str, list[float]] = {name: [] for name in fns}
    worst = 0.0
    with torch.inference_mode():
        for i in range(args.requests):
            ev = by_user[users[int(rng.integers(len(users)))]].tail(10)
            history = [HistoryEvent(b, q, tuple(it)) for b, q, it in zip(ev["behavior"], ev["query"], ev["items"],
                                                                         strict=True)]
            query = queries[int(rng.integers(len(queries)))] if args.task == "search" else ""
            inputs, requests = engine.batch(args.task, [query], [history])
            pool = ranker._propose(args.task, requests, inputs, None, ())
            _, hit = scorer.known_scores(pool.known, pool.items)
            todo = np.where(hit, -1, pool.items)
            cands = torch.as_tensor(todo[:, (todo >= 0).any(axis=0)])
            got = {}
            for name in (("other", "this") if i % 2 else ("this", "other")):
                fn, extra = fns[name]
                start = time.perf_counter()
                got[name] = fn(scorer.model, inputs, inputs != scorer.pad_id, codes, cands,
                               scorer.prefixes[args.task], decoder=pool.known.encoded, **extra)
                times[name].append((time.perf_counter() - start) * 1000)
            fin = torch.isfinite(got["other"])
            if bool(fin.any()):
                worst = max(worst, float(((got["other"] - got["this"]).abs()[fin] / got["other"].abs()[fin]).max()))
    o, t = (np.percentile(times[n][5:], 50) for n in ("other", "this"))
    print(f"{run} {args.task}: {len(data.items)} items, {args.requests} requests, torch threads {threads}, "
          f"{os.cpu_count()} cpus, {platform.processor() or platform.machine()}")
    print(f"p50 other {o:.2f} ms, this {t:.2f} ms, ratio {t / o:.3f}; largest relative score difference {worst:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
