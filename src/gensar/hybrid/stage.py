"""The pipeline's ``hybrid`` stage (fit on valid) and the hybrid part of its ``evaluate`` stage.

RUN_DIR/hybrid/
  sasrec/model.pt   the recommendation retriever (SASRec on training events, early-stopped on valid;
                    the same training as the collaborative embeddings of the ID stage)
  fusion.json       {"full": {behavior: LinearFusion}, "sampled": {...}} fitted on the valid split
  fit_report.json   per protocol and behavior: the weights, how many valid targets the candidates
                    held, and the cross-validated valid metrics of the fusion and of each part alone
  config.yaml       the HybridConfig
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from gensar.baselines.scorer import SASRecScorer, Scorer, build_scorer, load_sasrec_scorer
from gensar.config import to_yaml
from gensar.data.prepared import PreparedData
from gensar.data.schema import BEHAVIORS
from gensar.embed.collaborative import gensar_protocol, train_sasrec
from gensar.embed.sasrec import SASRecConfig
from gensar.errors import GensarError
from gensar.hybrid.config import HybridConfig
from gensar.hybrid.evaluate import (
    PROTOCOLS,
    Collected,
    collect,
    cross_validated_ranks,
    feature_ranks,
    fit,
    protocol_metrics,
    ranks,
)
from gensar.hybrid.fusion import LinearFusion
from gensar.hybrid.generative import GenerativeScorer
from gensar.hybrid.ranker import HybridRanker
from gensar.io import atomic_dir, atomic_write_json, atomic_write_text
from gensar.model.trained import ID_KIND, TrainedModel

HYBRID_DIR = "hybrid"
FUSION_FILE = "fusion.json"


def generative_scorer(trained: TrainedModel, data: PreparedData) -> GenerativeScorer:
    item_ids = data.items["item_id"].tolist()
    codes = {b: trained.id_codes(ID_KIND[b], item_ids) for b in BEHAVIORS}
    return GenerativeScorer.from_codes(trained.model, trained.pad_id, codes,
                                       {b: trained.prefix(b) for b in BEHAVIORS})


def build_scorers(cfg: HybridConfig, data: PreparedData, sasrec: SASRecScorer | None,
                  cache_dir: Path | None = None) -> dict[str, Scorer]:
    names = dict.fromkeys(cfg.rec_scorers + cfg.search_scorers)
    out: dict[str, Scorer] = {}
    for name in names:
        if name == "sasrec":
            if sasrec is None:
                raise GensarError("hybrid: the sasrec scorer needs a trained SASRec (RUN_DIR/hybrid/sasrec)")
            out[name] = sasrec
        else:
            out[name] = build_scorer(name, data, cache_dir)
    return out


def load_fusions(hybrid_dir: Path, protocol: str = "full") -> dict[str, LinearFusion]:
    path = hybrid_dir / FUSION_FILE
    if not path.is_file():
        raise GensarError(f"{path}: missing (run the pipeline's hybrid stage)")
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {b: LinearFusion.from_json(f, f"{path}: {protocol}.{b}") for b, f in raw.get(protocol, {}).items()}


def load_ranker(run_dir: Path, data: PreparedData, trained: TrainedModel, cfg: HybridConfig,
                protocol: str = "full") -> HybridRanker:
    """The fitted ranker of a run directory (for evaluation and serving)."""
    hybrid = Path(run_dir) / HYBRID_DIR
    sasrec = load_sasrec_scorer(hybrid / "sasrec", data) if "sasrec" in cfg.rec_scorers else None
    scorers = build_scorers(cfg, data, sasrec, hybrid / "cache")
    return HybridRanker(cfg, generative_scorer(trained, data), scorers, load_fusions(hybrid, protocol),
                        titles=data.items["title"].tolist())


def fit_hybrid(run_dir: str | Path, cfg: HybridConfig, sasrec_cfg: SASRecConfig, max_examples: int = 0,
               progress: bool = True) -> dict:
    """Train the SASRec retriever, fit each protocol's fusion on the valid split; write RUN_DIR/hybrid."""
    run = Path(run_dir)
    data = PreparedData.load(run / "data")
    trained = TrainedModel.load(run / "model")
    out = run / HYBRID_DIR
    start = time.perf_counter()
    with atomic_dir(out, overwrite=True, kind="hybrid") as tmp:
        sasrec = None
        if "sasrec" in cfg.rec_scorers:
            proto = gensar_protocol(data)
            model = train_sasrec(proto.train_seqs, len(data.items), sasrec_cfg, valid=proto.valid, progress=progress)
            (tmp / "sasrec").mkdir()
            model.save(tmp / "sasrec" / "model.pt")
            sasrec = SASRecScorer(model.model)
        ranker = HybridRanker(cfg, generative_scorer(trained, data), build_scorers(cfg, data, sasrec, tmp / "cache"),
                              titles=data.items["title"].tolist())
        encoder = trained.encoder(data)
        fusions: dict[str, dict] = {}
        report: dict[str, dict] = {}
        for protocol in PROTOCOLS:
            fusions[protocol], report[protocol] = {}, {}
            for behavior in BEHAVIORS:
                valid = collect(ranker, encoder, trained.pad_id, data, "valid", behavior, protocol,
                                max_examples, progress)
                if valid is None:
                    continue
                names = ranker.feature_names(behavior)
                fusion = fit(names, valid, cfg.l2)
                fusions[protocol][behavior] = fusion.to_json()
                report[protocol][behavior] = _fit_report(names, fusion, valid, cfg, protocol)
        atomic_write_json(tmp / FUSION_FILE, fusions)
        atomic_write_json(tmp / "fit_report.json", report | {"seconds": round(time.perf_counter() - start, 1)})
        atomic_write_text(tmp / "config.yaml", to_yaml(cfg))
    return report


def skip_hybrid(run_dir: str | Path, cfg: HybridConfig) -> None:
    """The stage's output when the hybrid is off: its config alone (evaluation and serving use the beam)."""
    with atomic_dir(Path(run_dir) / HYBRID_DIR, overwrite=True, kind="hybrid") as tmp:
        atomic_write_text(tmp / "config.yaml", to_yaml(cfg))


def _fit_report(names, fusion: LinearFusion, valid: Collected, cfg: HybridConfig, protocol) -> dict:
    found = valid.target_col >= 0
    parts = {name: protocol_metrics(feature_ranks(valid, col), protocol) for col, name in enumerate(names)}
    cv = cross_validated_ranks(names, valid, cfg.l2, cfg.folds)
    return {"weights": dict(zip(names, fusion.weights, strict=True)), "n": int(len(found)),
            "target_in_candidates": float(found.mean()),
            "mean_candidates": float(valid.cands.valid.sum(axis=1).mean()),
            "fused_cv": protocol_metrics(cv, protocol), "parts": parts}


def evaluate_hybrid(run_dir: str | Path, cfg: HybridConfig, split: str, max_examples: int = 0,
                    progress: bool = True) -> dict:
    """``{protocol: {behavior: metrics}}`` of the fitted hybrid on ``split``; valid figures are
    the fit's cross-validated ones (the fusion was fitted on valid)."""
    run = Path(run_dir)
    if split == "valid":
        report = json.loads((run / HYBRID_DIR / "fit_report.json").read_text(encoding="utf-8"))
        return {p: {b: r["fused_cv"] | {"n": r["n"]} for b, r in report[p].items()} for p in PROTOCOLS}
    data = PreparedData.load(run / "data")
    trained = TrainedModel.load(run / "model")
    encoder = trained.encoder(data)
    out: dict[str, dict] = {}
    for protocol in PROTOCOLS:
        ranker = load_ranker(run, data, trained, cfg, protocol)
        out[protocol] = {}
        for behavior in BEHAVIORS:
            got = collect(ranker, encoder, trained.pad_id, data, split, behavior, protocol, max_examples, progress)
            if got is None:
                continue
            r = ranks(ranker.fused(behavior, got.cands), got.target_col)
            names = ranker.feature_names(behavior)
            parts = {name: protocol_metrics(feature_ranks(got, col), protocol) for col, name in enumerate(names)}
            out[protocol][behavior] = protocol_metrics(r, protocol) | {
                "n": len(got.target_col), "target_in_candidates": float(np.mean(got.target_col >= 0)), "parts": parts}
    return out
