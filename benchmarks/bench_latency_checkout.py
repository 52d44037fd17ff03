"""Serving latency against an older checkout's, on the same model and the same requests.

Issue 14 bounds the hybrid's serving latency by "today's", the latency on the day it was filed.
Comparing with a figure measured then (another model, another machine) says little; this runs the
older checkout's generative engine and this checkout's generative and hybrid engines on one trained
run, each in its own process, alternated over rounds, single requests of a seeded mix (a /search
with a query of the run's search log or a few words of a random title, half personalized, and a
/recommend, per user drawn; ``--mix logged``: test searches as logged, each query with the history
before it, which the drawn mix pairs at random):

    git worktree add --detach /tmp/old REV
    GENSAR_THREADS=1 python benchmarks/bench_latency_checkout.py RUN --checkout /tmp/old --rounds 3

The older code reads the run's data and weights as they are; config keys it does not know are left
out of a copy of ``model/gensar_model.json`` (the shapes, which decide the latency, are keys it
knows). Prints p50 per engine, task and round, the ratios of the hybrid to both generative
engines, and how many answers of the two generative engines are identical (same model: all of
them, unless the rendering of inputs changed between the checkouts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TIMER = r'''
import json, sys, time
import torch
from gensar.runtime import configure_threads
from gensar.data.prepared import PreparedData
from gensar.serve.engine import HistoryEvent
configure_threads()
run, requests, engine_name, out = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3], sys.argv[4]
data = PreparedData.load(run + "/data")
dense = []
if engine_name == "hybrid":
    from gensar.baselines.dense import DenseScorer
    from gensar.serve.hybrid import HybridEngine
    engine = HybridEngine.from_run_dir(run, data)
    dense = [s for s in engine.ranker.scorers.values() if isinstance(s, DenseScorer)]
else:
    from gensar.serve.generative import GenerativeEngine
    engine = GenerativeEngine.from_run_dir(run, data)
times = {"search": [], "recommend": []}
answers = []
with torch.inference_mode():
    for r in requests[:3]:  # warm-up
        engine.search([r["query"]], [[]], 10)
    for r in requests:
        history = [HistoryEvent(b, q, tuple(i)) for b, q, i in r["history"]]
        for d in dense:
            d.forget_queries()  # a new query pays its encoding
        start = time.perf_counter()
        found = engine.search([r["query"]], [history if r["personal"] else []], 10)[0]
        times["search"].append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        recommended = engine.recommend([history], 10)[0]
        times["recommend"].append((time.perf_counter() - start) * 1000)
        answers.append([[x.index for x in found], [x.index for x in recommended]])
json.dump({"times": times, "answers": answers}, open(out, "w"))
'''

# Strips, one at a time, the config keys an older checkout rejects ("unknown config key 'a.b'").
STRIP = r'''
import json, re, sys
from gensar.config import from_dict
from gensar.errors import ConfigError
try:
    from gensar.model.train import ModelRunConfig  # older checkouts
except ImportError:
    from gensar.model.train_config import ModelRunConfig
path = sys.argv[1]
doc = json.load(open(path))
while True:
    try:
        from_dict(ModelRunConfig, doc["config"])
        break
    except ConfigError as err:
        key = re.search(r"unknown config key '([^']+)'", str(err))
        if key is None:
            raise
        node = doc["config"]
        *parents, leaf = key.group(1).split(".")
        for p in parents:
            node = node[p]
        del node[leaf]
json.dump(doc, open(path, "w"))
'''

ENGINES = ("old generative", "generative", "hybrid")


def make_requests(run: Path, n: int, seed: int) -> list[dict]:
    from gensar.data.prepared import PreparedData

    data = PreparedData.load(run / "data")
    max_history = int(data.manifest.get("options", {}).get("max_history") or 10)
    rng = np.random.default_rng(seed)
    by_user = {u: ev for u, ev in data.events.groupby("user_id", sort=True)}
    users = sorted(by_user)
    queries = sorted(set(data.events.loc[data.events["behavior"] == "search", "query"]))
    title_words = [t.lower().split() for t in data.items["title"] if len(t.split()) >= 2]
    out = []
    for i in range(n):
        ev = by_user[users[int(rng.integers(len(users)))]].tail(max_history)
        if i % 2 and queries:
            query = queries[int(rng.integers(len(queries)))]
        else:
            words = title_words[int(rng.integers(len(title_words)))]
            start = int(rng.integers(max(1, len(words) - 1)))
            query = " ".join(words[start : start + int(rng.integers(2, 4))])
        out.append({"query": query, "personal": bool(rng.random() < 0.5), "history": _history(ev)})
    return out


def _history(events) -> list[list]:
    """Events (rows of the prepared events table) as the timer's JSON history."""
    return [[b, q, list(it)] for b, q, it in zip(events["behavior"], events["query"], events["items"], strict=True)]


def logged_requests(run: Path, n: int) -> list[dict]:
    """``n`` test searches spread over the split as they were logged: the query with the history
    before it (a personalized search whose query and history belong together); the /recommend of a
    request reads the same history."""
    from gensar.data.prepared import PreparedData

    data = PreparedData.load(run / "data")
    ex = data.split("test", "search")
    ex = ex.iloc[np.linspace(0, len(ex) - 1, num=min(n, len(ex))).astype(int)]
    out = []
    for query, history in zip(ex["query"], ex["history"], strict=True):
        out.append({"query": str(query), "personal": True, "history": _history(data.events.iloc[list(history)])})
    return out


def older_run(run: Path, checkout: Path, into: Path) -> Path:
    """``run`` as the older checkout reads it: links to its data, IDs and weights, and a copy of
    the model's config without the keys that checkout does not know."""
    (into / "model").mkdir(parents=True)
    for name in ("data", "ids"):
        (into / name).symlink_to((run / name).resolve())
    for f in (run / "model").iterdir():
        if f.name != "gensar_model.json":
            (into / "model" / f.name).symlink_to(f.resolve())
    config = into / "model" / "gensar_model.json"
    config.write_text((run / "model" / "gensar_model.json").read_text())
    subprocess.run([sys.executable, "-c", STRIP, str(config)], check=True, env=_env(checkout))
    return into


def _env(checkout: Path | None) -> dict:
    src = (checkout / "src") if checkout is not None else Path(__file__).resolve().parents[1] / "src"
    return {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--checkout", required=True, help="a worktree of the older revision")
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mix", choices=("drawn", "logged"), default="drawn",
                   help="drawn: the seeded mix above; logged: test searches with the history logged before them")
    args = p.parse_args()
    run, checkout = Path(args.run_dir), Path(args.checkout)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        requests = tmp_dir / "requests.json"
        mix = make_requests(run, args.requests, args.seed) if args.mix == "drawn" else logged_requests(run, args.requests)
        requests.write_text(json.dumps(mix))
        runs = {"old generative": (older_run(run, checkout, tmp_dir / "old"), checkout),
                "generative": (run, None), "hybrid": (run, None)}
        results: dict[str, list[dict]] = {e: [] for e in ENGINES}
        for r in range(args.rounds):
            for engine in ENGINES:
                where, code = runs[engine]
                out = tmp_dir / f"{engine.replace(' ', '-')}-{r}.json"
                subprocess.run([sys.executable, "-c", TIMER, str(where), str(requests), engine.split()[-1], str(out)],
                               check=True, env=_env(code), stderr=subprocess.DEVNULL)
                results[engine].append(json.loads(out.read_text()))
    print(f"{run}: {len(mix)} requests per task, {args.rounds} rounds, torch threads "
          f"{os.environ.get('GENSAR_THREADS', 'all')}, {os.cpu_count()} cpus, {platform.processor() or platform.machine()}; "
          f"older checkout {checkout}; request mix {args.mix}")
    for task in ("search", "recommend"):
        p50 = {e: [float(np.percentile(x["times"][task], 50)) for x in results[e]] for e in ENGINES}
        cells = "  ".join(f"{e} " + "/".join(f"{v:.1f}" for v in p50[e]) for e in ENGINES)
        old = np.median([h / o for h, o in zip(p50["hybrid"], p50["old generative"], strict=True)])
        new = np.median([h / g for h, g in zip(p50["hybrid"], p50["generative"], strict=True)])
        print(f"{task:<10} p50 ms per round: {cells}  hybrid / old generative {old:.2f}x, / generative {new:.2f}x")
    column = {"search": 0, "recommend": 1}
    for task, c in column.items():
        same = sum(a[c] == b[c] for a, b in zip(results["old generative"][0]["answers"],
                                                results["generative"][0]["answers"], strict=True))
        print(f"{task:<10} generative answers identical across the checkouts: {same} / {len(mix)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
