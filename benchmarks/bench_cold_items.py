"""Items added after training (a living catalog): are they found, and what do they cost the warm items?

    python benchmarks/bench_cold_items.py RUN COLD_ITEMS.jsonl COLD_EVENTS.jsonl [--max-examples 500]

RUN was trained on a catalog without the items of COLD_ITEMS.jsonl (canonical items), and without
COLD_EVENTS.jsonl (canonical events naming them, removed before training). The script serves RUN
with the hybrid ranker and with the generative beam alone (logs in a temporary directory: RUN is
not written), and reports whole-catalog Recall@10 / NDCG@10:

* warm: RUN's test examples (``--split valid``: its valid ones; search and rec) before and after
  the cold items are added (``POST /items``'s path, ``Service.add_items``), and how often a cold
  item enters their top 10;
* cold: each cold item for its own title as an ad-hoc query; each held-out search session for its
  query and its user's history (did the served ranking find the cold item clicked?); each held-out
  rec click (recommendation for the user's history then).

BM25 alone over the grown catalog ranks the same searches, for scale (``bm25_*``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gensar.baselines.scorer import Request
from gensar.data.canonical import read_items_file
from gensar.ids.cold_start import ColdStartConfig
from gensar.runtime import configure_threads
from gensar.serve.engine import HistoryEvent
from gensar.serve.service import ServeConfig, Service

K = 10


def _first(examples, n: int):
    """The first ``n`` examples of a split (0 = all)."""
    return examples.head(n) if n else examples


def _metrics(ranks: Sequence[int]) -> dict[str, float]:
    r = np.asarray(ranks, dtype=np.float64)  # 0-based, -1 = not in the list
    hit = (r >= 0) & (r < K)
    return {"recall@10": float(hit.mean()) if len(r) else float("nan"),
            "ndcg@10": float(np.where(hit, 1.0 / np.log2(np.maximum(r, 0) + 2), 0.0).mean()) if len(r) else float("nan"),
            "n": len(r)}


def _change(before: Sequence[int], after: Sequence[int]) -> dict[str, int]:
    """Paired: the examples whose target left the top 10 once the new items were in, and those it entered."""
    hit = [[0 <= r < K for r in ranks] for ranks in (before, after)]
    return {"lost": sum(b and not a for b, a in zip(*hit, strict=True)),
            "gained": sum(a and not b for b, a in zip(*hit, strict=True))}


def _rank(row, targets: set[int]) -> int:
    return next((pos for pos, it in enumerate(row) if it.index in targets), -1)


class Bench:
    def __init__(self, service: Service, max_history: int) -> None:
        self.s = service
        self.events = service.data.events
        self.max_history = max_history
        self.by_user = {u: ev for u, ev in self.events.groupby("user_id", sort=True)}

    def history(self, event_ids: Sequence[int]) -> list[HistoryEvent]:
        ev = self.events.iloc[list(event_ids)]
        return [HistoryEvent(b, q, tuple(i)) for b, q, i in zip(ev["behavior"], ev["query"], ev["items"], strict=True)]

    def before(self, user: str, ts: int) -> list[HistoryEvent]:
        ev = self.by_user.get(user)
        if ev is None:
            return []
        return self.history(ev.loc[ev["timestamp"] < ts, "event_id"].tolist()[-self.max_history:])

    def rank(self, behavior: str, queries: list[str], histories: list[list[HistoryEvent]],
             targets: list[set[int]], batch: int = 32) -> tuple[list[int], int]:
        """(rank of a target per request, requests whose top 10 holds a cold item)."""
        ranks, exposed = [], 0
        cold_from = self.s.catalog.prepared
        for lo in range(0, len(queries), batch):
            q, h = queries[lo : lo + batch], histories[lo : lo + batch]
            rows = self.s.engine.search(q, h, K) if behavior == "search" else self.s.engine.recommend(h, K)
            for row, t in zip(rows, targets[lo : lo + batch], strict=True):
                ranks.append(_rank(row, t))
                exposed += any(it.index >= cold_from for it in row[:K])
        return ranks, exposed

    def bm25(self, queries: list[str], targets: list[set[int]]) -> dict[str, float]:
        """Whole-catalog ranks under the hybrid's own BM25 retriever alone (ties: the lower row first)."""
        scorer = self.s.engine.ranker.scorers["bm25"]
        ranks = []
        for lo in range(0, len(queries), 64):
            scores = scorer.scores([Request(q, ()) for q in queries[lo : lo + 64]])
            order = np.lexsort((np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), -scores), axis=1)
            for row, t in zip(order, targets[lo : lo + 64], strict=True):
                ranks.append(next(pos for pos, i in enumerate(row.tolist()) if i in t))
        return _metrics(ranks)

    def bm25_report(self, max_examples: int, split: str, cold_events: list[dict],
                    cold_ids: set[str]) -> dict[str, dict]:
        ex = _first(self.s.data.split(split, "search"), max_examples)
        evs = [e for e in cold_events if e.get("behavior") == "search"]
        return {"warm_search": self.bm25([str(q) for q in ex["query"]], [{self.s.index[t]} for t in ex["target"]]),
                "cold_search": self.bm25([e["query"] for e in evs],
                                         [{self.s.index[i] for i in e["items"] if i in cold_ids} for e in evs])}

    def warm(self, max_examples: int, split: str) -> tuple[dict[str, dict], dict[str, list[int]]]:
        """Metrics of the first examples of ``split`` per behavior, and each example's rank (for
        paired before / after counts)."""
        out, all_ranks = {}, {}
        data = self.s.data
        for behavior in ("search", "rec"):
            ex = _first(data.split(split, behavior), max_examples)
            ranks, exposed = self.rank(behavior, [str(q) for q in ex["query"]], [self.history(h) for h in ex["history"]],
                                       [{self.s.index[t]} for t in ex["target"]])
            out[behavior] = _metrics(ranks) | {"cold_in_top10": exposed / max(len(ex), 1)}
            all_ranks[behavior] = list(ranks)
        return out, all_ranks

    def cold(self, items: list[dict], cold_events: list[dict]) -> dict[str, dict]:
        idx = self.s.index
        titles = self.rank("search", [i["title"] for i in items], [[] for _ in items], [{idx[i["item_id"]]} for i in items])[0]
        out = {"title": _metrics(titles) | {"first": float(np.mean([r == 0 for r in titles]))}}
        cold_ids = {i["item_id"] for i in items}
        for behavior in ("search", "rec"):
            evs = [e for e in cold_events if e.get("behavior", "rec") == behavior]
            ranks = self.rank(behavior, [e.get("query", "") for e in evs], [self.before(e["user_id"], e["timestamp"]) for e in evs],
                              [{idx[i] for i in e["items"] if i in cold_ids} for e in evs])[0]
            out[behavior] = _metrics(ranks)
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("cold_items", type=Path)
    p.add_argument("cold_events", type=Path)
    p.add_argument("--max-examples", type=int, default=500, help="warm examples per behavior (0 = all)")
    p.add_argument("--split", default="test", choices=["test", "valid"],
                   help="the warm examples' split (choose settings on valid, report test)")
    p.add_argument("--cold-start", default="ridge", choices=["ridge", "knn"], help="the added items' collaborative "
                   "embedding (gensar.ids.cold_start)")
    args = p.parse_args()
    configure_threads()
    items = [loc.item for loc in read_items_file(args.cold_items)]
    cold_events = [json.loads(line) for line in args.cold_events.read_text().splitlines() if line.strip()]
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        logs = {"events_log": Path(tmp) / "events.jsonl", "items_log": Path(tmp) / "items.jsonl"}
        cfg = ServeConfig(engine="hybrid", cold_start=ColdStartConfig(method=args.cold_start))
        hybrid = Service.open(args.run_dir, cfg, **logs)
        max_history = hybrid.max_history
        bench = Bench(hybrid, max_history)
        start = time.perf_counter()
        report["hybrid_warm_before"], before = bench.warm(args.max_examples, args.split)
        t0 = time.perf_counter()
        hybrid.add_items(items)
        report["add_seconds"] = round(time.perf_counter() - t0, 2)
        report["hybrid_warm_after"], after = bench.warm(args.max_examples, args.split)
        report["hybrid_warm_top10_change"] = {b: _change(before[b], after[b]) for b in before}
        report["hybrid_cold"] = bench.cold(items, cold_events)
        report["bm25_after"] = bench.bm25_report(args.max_examples, args.split, cold_events,
                                                 {i["item_id"] for i in items})
        beam = Service.open(args.run_dir, ServeConfig(engine="generative"), writable=False, **logs)  # replays the items
        bench_beam = Bench(beam, max_history)
        report["beam_warm_after"] = bench_beam.warm(args.max_examples, args.split)[0]
        report["beam_cold"] = bench_beam.cold(items, cold_events)
        report["seconds"] = round(time.perf_counter() - start, 1)
        hybrid.close()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
