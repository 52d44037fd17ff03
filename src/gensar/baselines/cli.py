"""`gensar baseline NAME DATA_DIR --out DIR`: non-generative baselines on the saved candidate lists."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gensar.data.prepared import PreparedData
from gensar.data.schema import BEHAVIORS, SEARCH
from gensar.errors import GensarError
from gensar.eval.candidates import candidate_matrix, eval_examples, evaluate_scores
from gensar.io import atomic_write_json, check_output_dir, ensure_owned_dir
from gensar.ownership import refuse_output_over_input

# Which behaviors each baseline can rank: the search baselines need a query.
BASELINES = {"popularity": BEHAVIORS, "bm25": (SEARCH,), "dense": (SEARCH,), "match-popularity": (SEARCH,)}


def run_baseline(name: str, data: PreparedData, splits: tuple[str, ...] = ("valid", "test"),
                 cache_dir: Path | None = None) -> dict:
    if name not in BASELINES:
        raise GensarError(f"unknown baseline '{name}' (known: {', '.join(BASELINES)})")
    result: dict = {"method": name, "data": data.manifest.get("source")}
    start = time.perf_counter()
    for split in splits:
        result[split] = {}
        for behavior in BASELINES[name]:
            examples = eval_examples(data, split, behavior)
            if examples.empty:
                continue
            cands = candidate_matrix(data, examples)
            scores = _scores(name, data, examples, cands, cache_dir)
            result[split][behavior] = evaluate_scores(scores, cands)
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def _scores(name, data, examples, cands, cache_dir):
    if name == "popularity":
        from gensar.baselines.popularity import popularity_scores

        return popularity_scores(data, cands)
    if name == "bm25":
        from gensar.baselines.bm25 import bm25_scores

        return bm25_scores(data, examples, cands)
    if name == "match-popularity":
        from gensar.baselines.match_popularity import match_popularity_scores

        return match_popularity_scores(data, examples, cands)
    from gensar.baselines.dense import dense_scores
    from gensar.embed.semantic import SemanticConfig

    return dense_scores(data, examples, cands, SemanticConfig(), cache_dir)


def cli_baseline(args: argparse.Namespace) -> int:
    refuse_output_over_input([("--out", args.out)], [("DATA", args.data_dir)])
    out = check_output_dir(args.out, args.overwrite)
    data = PreparedData.load(args.data_dir)
    ensure_owned_dir(out, "baseline")
    result = run_baseline(args.name, data, cache_dir=out / "cache")
    atomic_write_json(out / "metrics.json", result)
    print(json.dumps({k: result[k] for k in ("valid", "test") if k in result}, indent=2))
    return 0

