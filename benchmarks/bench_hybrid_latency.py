"""Added serving latency of the hybrid ranker: one request at a time, generative vs hybrid engine.

Both engines are loaded from the same run directory in this process and answer the same seeded
requests (users of the prepared data for /recommend; for /search, queries of its search log and
new queries never seen before (2-3 words of a random item's title: nothing cached), half of them
personalized), interleaved request by request so machine noise hits both alike. A third engine,
``hybrid-all``, is the served hybrid with pruning off (``hybrid.prune``: every candidate scored
exactly), and a fourth, ``hybrid-inline``, runs every retriever in the request's thread
(``hybrid.beside_beam`` empty); their answers must equal the hybrid's, and any difference is counted. Encoded queries are
forgotten before every timed call: the engines share the dense retriever, whose in-memory query
cache would otherwise spare every engine after the first its MiniLM encoding. Prints p50 / p95
per engine and task and the ratio to the generative engine, the share of the hybrid's top 10 that
the beam's top 10 also holds, and the share of candidates pruning left unscored:

    GENSAR_THREADS=2 python benchmarks/bench_hybrid_latency.py runs/demo --requests 200
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from gensar.baselines.dense import DenseScorer
from gensar.data.prepared import PreparedData
from gensar.runtime import configure_threads
from gensar.serve.engine import HistoryEvent
from gensar.serve.hybrid import HybridEngine


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--requests", type=int, default=200, help="requests per task (each to both engines)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    threads = configure_threads()
    run = Path(args.run_dir)
    data = PreparedData.load(run / "data")
    hybrid = HybridEngine.from_run_dir(run, data)
    beam = hybrid.generative  # the same model object: only the ranking differs
    score_all = HybridEngine(beam, hybrid.ranker.with_config(dataclasses.replace(hybrid.ranker.cfg, prune=False)),
                             data.item_index)
    inline = HybridEngine(beam, hybrid.ranker.with_config(dataclasses.replace(hybrid.ranker.cfg, beside_beam=())),
                          data.item_index)
    engines = (("generative", beam), ("hybrid", hybrid), ("hybrid-all", score_all), ("hybrid-inline", inline))
    max_history = int(data.manifest.get("options", {}).get("max_history") or 10)
    rng = np.random.default_rng(args.seed)
    by_user = {u: ev for u, ev in data.events.groupby("user_id", sort=True)}
    users = sorted(by_user)
    queries = sorted(set(data.events.loc[data.events["behavior"] == "search", "query"]))
    title_words = [t.lower().split() for t in data.items["title"] if len(t.split()) >= 2]

    def new_query() -> str:
        words = title_words[int(rng.integers(len(title_words)))]
        start = int(rng.integers(max(1, len(words) - 1)))
        return " ".join(words[start : start + int(rng.integers(2, 4))]) + f" {int(rng.integers(10**6))}"

    def history(user: str) -> list[HistoryEvent]:
        ev = by_user[user].tail(max_history)
        return [HistoryEvent(b, q, tuple(i)) for b, q, i in zip(ev["behavior"], ev["query"], ev["items"], strict=True)]

    def forget_queries() -> None:
        for scorer in hybrid.ranker.scorers.values():  # every engine shares these scorers
            if isinstance(scorer, DenseScorer):
                scorer.forget_queries()

    times: dict[tuple[str, str], list[float]] = {}
    tasks = ("recommend", "search", "search-new")
    overlap: dict[str, list[float]] = {t: [] for t in tasks}
    differ = dict.fromkeys(tasks, 0)  # requests where pruning changed the answer (must stay 0)
    pruned: dict[str, list[float]] = {t: [] for t in tasks}
    with torch.inference_mode():
        for _ in range(3):  # warm-up
            for _, engine in engines:
                engine.recommend([history(users[0])], args.k), engine.search(["a"], [[]], args.k)
        for i in range(args.requests):
            h = history(users[int(rng.integers(len(users)))])
            q = queries[int(rng.integers(len(queries)))]
            fresh = new_query()
            hs = h if rng.random() < 0.5 else []
            answers = {}
            shift = i % len(engines)
            for name, engine in engines[shift:] + engines[:shift]:
                for task, call in (("recommend", lambda e: e.recommend([h], args.k)),
                                   ("search", lambda e: e.search([q], [hs], args.k)),
                                   ("search-new", lambda e: e.search([fresh], [hs], args.k))):
                    forget_queries()  # each engine pays the query's encoding, whatever ran before it
                    start = time.perf_counter()
                    got = call(engine)[0]
                    times.setdefault((name, task), []).append((time.perf_counter() - start) * 1000)
                    answers[(name, task)] = [r.index for r in got]
            for task, (behavior, query, hist) in (("recommend", ("rec", "", h)), ("search", ("search", q, hs)),
                                                  ("search-new", ("search", fresh, hs))):
                overlap[task].append(len(set(answers[("hybrid", task)]) & set(answers[("generative", task)])) / args.k)
                differ[task] += answers[("hybrid", task)] != answers[("hybrid-all", task)]
                differ[task] += answers[("hybrid", task)] != answers[("hybrid-inline", task)]
                inputs, requests = hybrid.batch(behavior, [query], [hist])  # untimed: how much was pruned
                cands = hybrid.ranker.top_candidates(behavior, requests, inputs, args.k)
                pruned[task].append(cands.pruned / (cands.pruned + int(cands.valid.sum())))
    print(f"{run}: {len(data.items)} items, k={args.k}, {args.requests} requests per task and engine, "
          f"torch threads {threads}, {os.cpu_count()} cpus, {platform.processor() or platform.machine()}")
    print(f"{'task':<12}{'engine':<12}{'p50 ms':>9}{'p95 ms':>9}{'p50 ratio':>11}{'top-10 shared with beam':>26}"
          f"{'pruned':>9}{'answers differ':>16}")
    for task in tasks:
        base = np.percentile(times[("generative", task)], 50)
        for name, _ in engines:
            t = np.asarray(times[(name, task)])
            ratio = np.percentile(t, 50) / base
            shared = f"{np.mean(overlap[task]):.2f}" if name == "hybrid" else ""
            cut = f"{np.mean(pruned[task]):.2f}" if name == "hybrid" else ""
            diff = f"{differ[task]}" if name == "hybrid" else ""
            print(f"{task:<12}{name:<12}{np.percentile(t, 50):>9.1f}{np.percentile(t, 95):>9.1f}{ratio:>11.2f}"
                  f"{shared:>26}{cut:>9}{diff:>16}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
