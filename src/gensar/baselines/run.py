"""Running the non-generative baselines on prepared data: the scorers (``run_baseline``) and SASRec
(``run_sasrec``), each into the metrics dict its command writes (``gensar.baselines.cli``)."""

from __future__ import annotations

import time
from pathlib import Path

from gensar.baselines.scorer import (
    SCORERS,
    SASRecScorer,
    Scorer,
    build_scorer,
    full_metrics,
    full_ranking_metrics,
    sampled_metrics,
    scorer_ranks,
)
from gensar.config import to_dict
from gensar.data.prepared import PreparedData
from gensar.data.schema import REC
from gensar.embed.sasrec import SASRecConfig
from gensar.embed.sasrec_checkpoint import TrainedSASRec
from gensar.embed.sasrec_eval import evaluate, popularity_metrics
from gensar.embed.sasrec_protocols import gensar_protocol, sasrec_protocol
from gensar.embed.sasrec_train import train_sasrec
from gensar.errors import GensarError
from gensar.eval.candidates import candidate_matrix, eval_examples
from gensar.eval.groups import grouped, target_groups


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
            sampled, whole = scorer_ranks(scorer, data, examples, cands, full_ranking)
            groups = target_groups(data, examples)  # cold and warm targets, with cold items
            result[split] |= grouped(behavior, groups, lambda mask, r=sampled: sampled_metrics(r, mask))
            if whole is not None:
                full[split] |= grouped(behavior, groups, lambda mask, r=whole: full_metrics(*r, mask))
    return full


def run_sasrec(data: PreparedData, cfg: SASRecConfig, protocol: str, full_ranking: bool = False,
               progress: bool = True) -> tuple[TrainedSASRec, dict]:
    """Train SASRec under ``protocol`` (``gensar`` or ``sasrec``) and measure it: (model, metrics.json).

    With cold items (``gensar.data.cold``) it trains and is measured on the warm catalog alone
    (``PreparedData.training_view``); ``gensar pipeline`` measures it on the cold targets too."""
    data = data.training_view()
    n_items = len(data.items)
    if protocol == "sasrec":
        proto = sasrec_protocol(data, cfg.eval_negatives, cfg.seed)
    else:
        proto = gensar_protocol(data)

    trained = train_sasrec(proto.train_seqs, n_items, cfg, valid=proto.valid, progress=progress)
    metrics = {
        "protocol": proto.name,
        "valid": evaluate(trained.model, proto.valid),
        "test": evaluate(trained.model, proto.test),
        "popularity": {
            "valid": popularity_metrics(proto.train_seqs, n_items, proto.valid),
            "test": popularity_metrics(proto.train_seqs, n_items, proto.test),
        },
        "best_epoch": trained.best_epoch,
        "epochs_run": len(trained.log),
        "train_seconds": round(trained.train_seconds, 2),
        "n_train_sequences": len(proto.train_seqs),
        "n_valid": len(proto.valid),
        "n_test": len(proto.test),
        "config": to_dict(cfg),
    }
    if full_ranking:
        metrics["full_ranking"] = full_ranking_block(SASRecScorer(trained.model), data)
    return trained, metrics


def full_ranking_block(scorer: SASRecScorer, data: PreparedData) -> dict:
    """``{split: {"rec": whole-catalog metrics}}`` of the prepared rec valid/test examples."""
    block: dict = {}
    for split in ("valid", "test"):
        examples = eval_examples(data, split, REC)
        block[split] = {REC: full_ranking_metrics(scorer, data, examples)} if not examples.empty else {}
    return block
