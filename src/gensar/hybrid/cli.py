"""``gensar evaluate RUN_DIR``: a trained run's metrics, by the ranker it serves.

``--ranker auto`` (the default) evaluates what ``gensar serve`` answers: the hybrid ranker when
the run fitted one, else the generative beam; ``--ranker generative`` measures the model alone
(``gensar.eval.protocol``), ``--ranker hybrid`` requires the fitted ranker. The output has one
shape whichever ranker ran: ``{behavior: metrics}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from gensar.config import load_config
from gensar.errors import GensarError
from gensar.eval.config import EvalConfig
from gensar.eval.table import format_metrics
from gensar.hybrid.config import HybridConfig
from gensar.hybrid.stage import FUSION_FILE, HYBRID_DIR, chosen_ranker, evaluate_hybrid, has_hybrid


def checked_ranker(run_dir: str | Path, choice: str) -> str:
    """``chosen_ranker``, refusing ``--ranker hybrid`` on a run without a fitted one."""
    ranker = chosen_ranker(run_dir, choice)
    if ranker == "hybrid" and not has_hybrid(run_dir):
        raise GensarError(f"{Path(run_dir) / HYBRID_DIR / FUSION_FILE}: missing (the run has no fitted "
                          "hybrid ranker; use --ranker generative)")
    return ranker


def evaluate_ranker(run_dir: str | Path, ranker: str, split: str, cfg: EvalConfig, full_ranking: bool) -> dict:
    """``{behavior: metrics}`` of ``ranker`` (``hybrid|generative``) on ``split``, in one protocol."""
    if ranker == "generative":
        from gensar.eval.protocol import evaluate_run

        return evaluate_run(run_dir, split, cfg, full_ranking=full_ranking)
    if cfg.method != "beam":
        raise GensarError("--method likelihood ranks by the generative model alone: add --ranker generative")
    hybrid_cfg = load_config(HybridConfig, Path(run_dir) / HYBRID_DIR / "config.yaml", [])
    hybrid_cfg = dataclasses.replace(hybrid_cfg, beam_size=cfg.beam_size)
    both = evaluate_hybrid(run_dir, hybrid_cfg, split, cfg.max_examples, progress=False)
    return both["full" if full_ranking else "sampled"]


def cli_evaluate(args: argparse.Namespace) -> int:
    cfg = EvalConfig(splits=(args.split,), method=args.method, beam_size=args.beam, batch_size=args.batch_size,
                     max_examples=args.max_examples)
    cfg.validate()
    ranker = checked_ranker(args.run_dir, args.ranker)
    metrics = evaluate_ranker(args.run_dir, ranker, args.split, cfg, args.full_ranking)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    protocol = "whole catalog" if args.full_ranking else "saved candidates"
    print(f"{args.split} split, {ranker} ranker, {protocol}"
          + (" (the fusion was fitted on valid: cross-validated figures)" if ranker == "hybrid"
             and args.split == "valid" else ""))
    if args.full_ranking:
        for behavior, m in metrics.items():
            print(behavior, " ".join(f"{k}={v:.4f}" for k, v in m.items() if isinstance(v, float)
                                     and k not in ("seconds", "target_in_candidates")))
    else:
        print(format_metrics({args.split: metrics}))
    return 0
