"""Does a trained model's search ranking respect the query? A diagnostic for semi-synthetic search.

On semi-synthetic search (queries made of item category words, Ai et al. 2017) every target
carries all of its query's words in its catalog query. This script decodes test search examples
exactly as `gensar evaluate` does (constrained beam search over each example's candidate list)
and reports, beside HR@10, the share of the top-10 items whose catalog query holds every query
word: a model that has learned which items a query covers ranks those first.

    python benchmarks/search_match.py RUN_DIR [--examples 1000] [--no-history] [--json out.json]

--no-history decodes the same examples without the user's history (as ad-hoc search).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np
import torch

from gensar.data.prepared import PreparedData
from gensar.data.queries import build_item_queries
from gensar.eval.candidates import candidate_matrix, eval_examples
from gensar.eval.protocol import beam_retrieve
from gensar.model.samples import example_samples
from gensar.model.trained import TrainedModel
from gensar.runtime import configure_threads


def query_match(run_dir: str, examples: int, no_history: bool, beam: int = 30, batch: int = 32) -> dict:
    data = PreparedData.load(f"{run_dir}/data")
    trained = TrainedModel.load(f"{run_dir}/model")
    encoder = trained.encoder(data)
    item_words = [set(q.split()) for q in build_item_queries(data.items).queries]
    ex = eval_examples(data, "test", "search", examples or None)
    samples = example_samples(ex)
    if no_history:
        samples = [dataclasses.replace(s, task="adhoc_logged") for s in samples]
    cands = candidate_matrix(data, ex)  # [n, C], target first
    with torch.inference_mode():
        top = beam_retrieve(trained, encoder, samples, "search", data.items["item_id"].tolist(), cands,
                            beam_size=beam, batch_size=batch)  # [n, beam]
    hits, share, matching = [], [], []
    for row, query in enumerate(ex["query"]):
        words = set(query.split())
        top10 = [int(c) for c in top[row, :10] if c >= 0]
        matching.append(sum(words <= item_words[c] for c in cands[row]))
        share.append(np.mean([words <= item_words[c] for c in top10]) if top10 else 0.0)
        hits.append(int(cands[row][0]) in top10)
    return {
        "run": run_dir, "examples": len(hits), "no_history": no_history,
        "hr@10": float(np.mean(hits)),
        "top10_query_match_share": float(np.mean(share)),
        "matching_candidates_median": float(np.median(matching)),
        "matching_candidates_mean": float(np.mean(matching)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--examples", type=int, default=1000, help="test search examples (0 = all)")
    parser.add_argument("--no-history", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    configure_threads(args.threads)
    out = query_match(args.run_dir, args.examples, args.no_history)
    print(f"{out['run']}: {out['examples']} test search examples{' (no history)' if args.no_history else ''}: "
          f"HR@10 {out['hr@10']:.3f}; top-10 items matching every query word {out['top10_query_match_share']:.3f}; "
          f"matching candidates per example: median {out['matching_candidates_median']:.0f}, "
          f"mean {out['matching_candidates_mean']:.1f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
