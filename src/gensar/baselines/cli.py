"""`gensar baseline NAME DATA_DIR --out DIR [--full-ranking]`: non-generative baselines.

Sampled protocol: the saved candidate lists (gathered from each scorer's whole-catalog scores).
``--full-ranking`` adds ``"full_ranking": {split: {behavior: recall/ndcg@5/10/20}}`` over every item.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gensar.baselines.scorer import SCORERS, Scorer, build_scorer, evaluate_scorer
from gensar.data.prepared import PreparedData
from gensar.errors import GensarError
from gensar.eval.candidates import candidate_matrix, eval_examples
from gensar.io import atomic_write_json, check_output_dir, ensure_owned_dir
from gensar.ownership import refuse_output_over_input


def run_baseline(name: str, data: PreparedData, splits: tuple[str, ...] = ("valid", "test"),
                 cache_dir: Path | None = None, full_ranking: bool = False) -> dict:
    if name not in SCORERS:
        raise GensarError(f"unknown baseline '{name}' (known: {', '.join(SCORERS)})")
    result: dict = {"method": name, "data": data.manifest.get("source")}
    start = time.perf_counter()
    scorer = build_scorer(name, data, cache_dir)
    full = evaluate_splits(scorer, data, splits, result, full_ranking)
    if full_ranking:
        result["full_ranking"] = full
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def evaluate_splits(scorer: Scorer, data: PreparedData, splits: tuple[str, ...], result: dict,
                    full_ranking: bool, max_examples: int = 0) -> dict:
    """Fill ``result[split][behavior]`` with sampled metrics; return the full-ranking block.
    ``max_examples``: the first that many examples per split and behavior (0 = all), as ``gensar
    evaluate`` takes them."""
    full: dict = {}
    for split in splits:
        result[split] = {}
        full[split] = {}
        for behavior in scorer.behaviors:
            examples = eval_examples(data, split, behavior, max_examples or None)
            if examples.empty:
                continue
            cands = candidate_matrix(data, examples)
            sampled, whole = evaluate_scorer(scorer, data, examples, cands, full_ranking)
            result[split][behavior] = sampled
            if whole is not None:
                full[split][behavior] = whole
    return full


def cli_baseline(args: argparse.Namespace) -> int:
    refuse_output_over_input([("--out", args.out)], [("DATA", args.data_dir)])
    out = check_output_dir(args.out, args.overwrite)
    data = PreparedData.load(args.data_dir)
    ensure_owned_dir(out, "baseline")
    result = run_baseline(args.name, data, cache_dir=out / "cache", full_ranking=args.full_ranking)
    atomic_write_json(out / "metrics.json", result)
    print(json.dumps({k: result[k] for k in ("valid", "test", "full_ranking") if k in result}, indent=2))
    return 0
