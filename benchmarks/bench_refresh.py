"""Daily refresh against a training from scratch (issue 16 section 4).

    python benchmarks/bench_refresh.py --config configs/synthetic.yaml --out runs/refresh [--fraction 0.8]
                                       [--set KEY=VALUE ...]

Three pipeline runs of one config, in this process, one after another:

* ``OUT/before``: the older data, each user's first FRACTION of events and the items they name
  (``data.prepare.history_fraction``);
* ``OUT/scratch``: all the data, trained from scratch (the reference);
* ``OUT/refreshed``: all the data, ``--refresh-from OUT/before`` (identifiers kept, new items given
  theirs, the model warm-started and trained for ``refresh.epochs``, default a third).

Prints valid and test (sampled HR@10 / NDCG@10, whole catalog Recall@10 / NDCG@10) for the hybrid
ranker and the generative model alone, refreshed and from scratch, their ratio, and the training
stage's wall time as a ratio of the scratch run's. Finished runs are reused (the pipeline's stage
cache), so a second call only prints.

``--all-test`` then ranks every test example (not only ``eval.max_examples`` of them) with the
fitted hybrid of both runs, and prints the ratios with each figure's standard error: the
refreshed-vs-scratch gap is a few points, near the noise of a 2,000-example sample.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

from gensar.config import load_config
from gensar.hybrid.config import HybridConfig
from gensar.hybrid.stage import HYBRID_DIR, evaluate_hybrid
from gensar.pipeline import PipelineConfig, run_pipeline
from gensar.runtime import configure_threads

ROWS = (("sampled", "hr@10"), ("sampled", "ndcg@10"), ("whole", "recall@10"), ("whole", "ndcg@10"))


def _metric(metrics: dict, ranker: str, split: str, behavior: str, protocol: str, key: str) -> float:
    source = metrics if ranker == "hybrid" else metrics["generative"]
    block = source[split] if protocol == "sampled" else source["full_ranking"][split]
    return float(block[behavior][key])


def _train_seconds(run: Path) -> float:
    state = json.loads((run / "model" / "train_state.json").read_text(encoding="utf-8"))
    return float(state["timings"]["train_seconds"] + state["timings"]["eval_seconds"])


def _standard_error(value: float, n: int) -> float:
    """A hit rate's binomial standard error; an NDCG's bound by the same (its per-example values lie
    in [0, 1], so their variance is at most mean x (1 - mean))."""
    return math.sqrt(max(value * (1 - value), 0.0) / n) if n else float("nan")


def print_all_test(runs: dict[str, Path]) -> None:
    """The hybrid of scratch and refreshed on every test example, with standard errors."""
    got = {}
    for name in ("scratch", "refreshed"):
        start = time.perf_counter()
        cfg = load_config(HybridConfig, runs[name] / HYBRID_DIR / "config.yaml", [])
        got[name] = evaluate_hybrid(runs[name], cfg, "test", 0, progress=False)
        print(f"{name}: every test example ranked in {time.perf_counter() - start:.0f} s")
    print("\nhybrid, every test example (value +- standard error)")
    print("behavior protocol metric         n    scratch             refreshed           ratio")
    for behavior in ("rec", "search"):
        for protocol, key in ROWS:
            block = {n: g["full" if protocol == "whole" else "sampled"][behavior] for n, g in got.items()}
            s, r = block["scratch"][key], block["refreshed"][key]
            n = block["scratch"]["n"]
            print(f"{behavior:<8} {protocol:<8} {key:<10} {n:6d}   {s:.4f} +- {_standard_error(s, n):.4f}   "
                  f"{r:.4f} +- {_standard_error(r, block['refreshed']['n']):.4f}   {r / s if s else float('nan'):5.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, action="append")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--fraction", type=float, default=0.8, help="the older data: each user's first fraction")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--all-test", action="store_true",
                    help="also rank every test example with both runs' hybrid (ratios with standard errors)")
    args = ap.parse_args()
    configure_threads(None)

    def config(*extra: str) -> PipelineConfig:
        return load_config(PipelineConfig, args.config, [*args.overrides, *extra])

    runs = {"before": args.out / "before", "scratch": args.out / "scratch", "refreshed": args.out / "refreshed"}
    wall = {}
    for name, cfg in (("before", config(f"data.prepare.history_fraction={args.fraction}")),
                      ("scratch", config()),
                      ("refreshed", config(f"refresh.previous={runs['before']}"))):
        start = time.perf_counter()
        run_pipeline(cfg, runs[name])
        wall[name] = time.perf_counter() - start
    metrics = {n: json.loads((r / "metrics.json").read_text(encoding="utf-8")) for n, r in runs.items()}
    report = json.loads((runs["refreshed"] / "ids" / "ids_report.json").read_text(encoding="utf-8"))
    epochs = {n: json.loads((r / "model" / "train_state.json").read_text(encoding="utf-8"))["epochs_run"]
              for n, r in runs.items()}

    print(f"\nhardware: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch threads {os.environ.get('GENSAR_THREADS', 'all')}")
    print(f"items: {report['kept']} kept, {report['added']} added, {report['dropped']} dropped; "
          f"{report['new_tokens']} new identifier tokens")
    train = {n: _train_seconds(r) for n, r in runs.items()}
    print(f"training (train + validation) seconds: before {train['before']:.0f} ({epochs['before']} epochs), "
          f"scratch {train['scratch']:.0f} ({epochs['scratch']}), refreshed {train['refreshed']:.0f} "
          f"({epochs['refreshed']}): refreshed / scratch = {train['refreshed'] / train['scratch']:.3f}")
    print("pipeline wall seconds in this call (a cached run only loads): " + ", ".join(f"{n} {w:.0f}" for n, w in wall.items()))
    print("\nranker      split  behavior protocol metric     scratch  refreshed  ratio   (before, older data)")
    for ranker in ("hybrid", "generative"):
        for split in ("valid", "test"):
            for behavior in ("rec", "search"):
                for protocol, key in ROWS:
                    s, r, b = (_metric(metrics[n], ranker, split, behavior, protocol, key)
                               for n in ("scratch", "refreshed", "before"))
                    print(f"{ranker:<11} {split:<6} {behavior:<8} {protocol:<8} {key:<10} {s:7.4f}  {r:9.4f}  "
                          f"{r / s if s else float('nan'):5.3f}   ({b:.4f})")
    if args.all_test:
        print_all_test(runs)


if __name__ == "__main__":
    main()
