"""The pipeline's ``hybrid`` stage (fit on valid) and the hybrid part of its ``evaluate`` stage.

RUN_DIR/hybrid/
  sasrec/model.pt   SASRec on training events (early-stopped on valid; the same training as the
                    collaborative embeddings of the ID stage): the recommendation retriever, and in
                    search a feature of what the user's history predicts
  fusion.json       {"full": {behavior: LinearFusion}, "sampled": {...}} fitted on the valid split
  fit_report.json   per protocol and behavior: the weights, how many valid targets the candidates
                    held, and the cross-validated valid metrics of the fusion and of each part alone
                    (with cold items also per group: ``groups.cold``, ``groups.warm``)
  config.yaml       the HybridConfig

With cold items (``gensar prepare --cold-items``) the SASRec retriever trains on the warm catalog
(``PreparedData.training_view``); everything else ranks the whole catalog, the cold items with the
identifiers the cold stage gave them. In the fusion a cold item is ``new``: its generative and SASRec
features are the mean over the request's trained candidates that only text retrievers proposed
(``gensar.hybrid.features.impute_new``). The fusion
is fitted on the valid examples as they are, cold targets included (about the share a catalog
renewed at that rate would show), so the ``new`` weight says what a new item is worth.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from gensar.baselines.content import ContentScorer
from gensar.baselines.dense import DenseScorer, ItemEmbeddings
from gensar.baselines.scorer import SASRecScorer, Scorer, build_scorer, load_sasrec_scorer
from gensar.config import to_yaml
from gensar.data.prepared import PreparedData
from gensar.data.schema import BEHAVIORS
from gensar.embed.sasrec import SASRecConfig
from gensar.embed.sasrec_protocols import gensar_protocol
from gensar.embed.sasrec_train import train_sasrec
from gensar.errors import GensarError
from gensar.eval.groups import group_key, grouped
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
    single_requests,
)
from gensar.hybrid.features import feature_names
from gensar.hybrid.fusion import LinearFusion, new_mask
from gensar.hybrid.latency import plan_latencies
from gensar.hybrid.plan import PlanChoice, candidate_plans, choose_plan, narrower_beams, plan_fusion
from gensar.hybrid.pseudo_new import pseudo_new, pseudo_rows, with_pseudo_new_weights
from gensar.hybrid.generative import GenerativeScorer
from gensar.hybrid.ranker import HybridRanker
from gensar.io import atomic_dir, atomic_write_json, atomic_write_text
from gensar.model.trained import ID_KIND, TrainedModel, load_run

HYBRID_DIR = "hybrid"
FUSION_FILE = "fusion.json"


def has_hybrid(run_dir: str | Path) -> bool:
    """Whether the run's hybrid stage fitted a ranker (it writes only its config when turned off)."""
    return (Path(run_dir) / HYBRID_DIR / FUSION_FILE).is_file()


def chosen_ranker(run_dir: str | Path, choice: str) -> str:
    """``hybrid`` or ``generative`` for ``auto|hybrid|generative``: auto is the hybrid when the run
    fitted one (what ``gensar serve`` and ``gensar evaluate`` answer by default)."""
    if choice == "auto":
        return "hybrid" if has_hybrid(run_dir) else "generative"
    return choice


def generative_scorer(trained: TrainedModel, data: PreparedData) -> GenerativeScorer:
    item_ids = data.items["item_id"].tolist()
    codes = {b: trained.id_codes(ID_KIND[b], item_ids) for b in BEHAVIORS}
    return GenerativeScorer.from_codes(trained.model, trained.pad_id, codes,
                                       {b: trained.prefix(b) for b in BEHAVIORS})


def _needs_sasrec(cfg: HybridConfig) -> bool:
    return "sasrec" in cfg.rec_scorers + cfg.search_scorers


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
            out[name] = build_scorer(name, data, cache_dir, _shared_texts(out))
    return out


def _shared_texts(scorers: dict[str, Scorer]) -> ItemEmbeddings | None:
    """The item text embeddings a text scorer built so far holds (dense, content), else None."""
    return next((s.embeddings for s in scorers.values() if isinstance(s, DenseScorer | ContentScorer)), None)


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
    sasrec = load_sasrec_scorer(hybrid / "sasrec", data) if _needs_sasrec(cfg) else None
    scorers = build_scorers(cfg, data, sasrec, hybrid / "cache")
    return HybridRanker(cfg, generative_scorer(trained, data), scorers, load_fusions(hybrid, protocol),
                        titles=data.items["title"].tolist(), trained_items=data.trained_items)


def fit_hybrid(run_dir: str | Path, cfg: HybridConfig, sasrec_cfg: SASRecConfig, max_examples: int = 0,
               progress: bool = True) -> dict:
    """Train the SASRec retriever, fit each protocol's fusion on the valid split; write RUN_DIR/hybrid."""
    run = Path(run_dir)
    data, trained = load_run(run)
    out = run / HYBRID_DIR
    start = time.perf_counter()
    with atomic_dir(out, overwrite=True, kind="hybrid") as tmp:
        sasrec = None
        if _needs_sasrec(cfg):
            warm = data.training_view()
            proto = gensar_protocol(warm)
            model = train_sasrec(proto.train_seqs, len(warm.items), sasrec_cfg, valid=proto.valid,
                                 progress=progress)
            (tmp / "sasrec").mkdir()
            model.save(tmp / "sasrec" / "model.pt")
            sasrec = SASRecScorer(model.model)
            if len(warm.items) < len(data.items):
                sasrec.add_items(data, len(warm.items))  # the cold items: never trained on
        ranker = HybridRanker(cfg, generative_scorer(trained, data), build_scorers(cfg, data, sasrec, tmp / "cache"),
                              titles=data.items["title"].tolist(), trained_items=data.trained_items)
        encoder = trained.encoder(data)
        fusions: dict[str, dict] = {}
        report: dict[str, dict] = {}
        for protocol in PROTOCOLS:
            fusions[protocol], report[protocol] = {}, {}
            for behavior in BEHAVIORS:
                valid = collect(ranker, encoder, trained.pad_id, data, "valid", behavior, protocol,
                                max_examples, progress, subset=cfg.fit_examples,
                                extra_beams=narrower_beams(cfg))
                if valid is None:
                    continue
                names = ranker.feature_names(behavior)
                latency = None
                if cfg.max_latency_ratio > 0 and protocol == "full":  # given candidates cost every plan alike
                    fusions_by_plan = {plan.label: plan_fusion(valid, names, plan, cfg)
                                       for plan in candidate_plans(cfg, behavior, protocol)}
                    latency = plan_latencies(ranker, behavior, fusions_by_plan, single_requests(
                        encoder, trained.pad_id, data, "valid", behavior, cfg.latency_requests))
                choice = choose_plan(valid, names, cfg, behavior, protocol, latency)
                fusion, report[protocol][behavior] = _fit_and_select(choice, cfg, protocol)
                fusions[protocol][behavior] = fusion.to_json()
        atomic_write_json(tmp / FUSION_FILE, fusions)
        atomic_write_json(tmp / "fit_report.json", report | {"seconds": round(time.perf_counter() - start, 1)})
        atomic_write_text(tmp / "config.yaml", to_yaml(cfg))
    return report


def skip_hybrid(run_dir: str | Path, cfg: HybridConfig) -> None:
    """The stage's output when the hybrid is off: its config alone (evaluation and serving use the beam)."""
    with atomic_dir(Path(run_dir) / HYBRID_DIR, overwrite=True, kind="hybrid") as tmp:
        atomic_write_text(tmp / "config.yaml", to_yaml(cfg))


SELECT_BY = "ndcg@10"  # the valid metric that decides between the fusion and a part alone


def _fit_and_select(choice: PlanChoice, cfg: HybridConfig, protocol) -> tuple[LinearFusion, dict]:
    """The fusion over the chosen plan's candidates, unless one part alone ranks the valid split better
    (cross-validated ``SELECT_BY``): then that part alone, so the served ranker is never below its
    best part on valid. The fusion's objective is likelihood, not a ranking metric, and a small valid
    split makes its weights noisy. Where valid holds new candidates, the fusion with weights of their
    own (``hybrid.new_weights``) and the one with shared weights are both fitted, and valid's
    ``SELECT_BY`` picks (the shared one on a tie): more weights fit the likelihood better, not
    necessarily the ranking."""
    valid, names = choice.collected, feature_names(choice.plan.scorers)
    found = valid.target_col >= 0
    part_ranks = {name: feature_ranks(valid, col) for col, name in enumerate(names)}
    parts = {name: protocol_metrics(r, protocol) for name, r in part_ranks.items()}
    variant_ranks = {"shared": cross_validated_ranks(names, valid, cfg.l2, cfg.folds, False)}
    has_new = bool(new_mask(valid.cands.features, names)[valid.cands.valid].any())
    if cfg.new_weights and has_new:
        variant_ranks["new_weights"] = cross_validated_ranks(names, valid, cfg.l2, cfg.folds, True)
    variants = {v: protocol_metrics(r, protocol) for v, r in variant_ranks.items()}
    chosen = max(variant_ranks, key=lambda v: (variants[v][SELECT_BY], v == "shared"))
    split_new, cv_ranks, cv = chosen == "new_weights", variant_ranks[chosen], variants[chosen]
    fusion = dataclasses.replace(fit(names, valid, cfg.l2, split_new), depth=choice.plan.depth,
                                 beam=choice.plan.beam)
    best = max(parts, key=lambda n: parts[n][SELECT_BY])
    selected = "fusion"
    if parts[best][SELECT_BY] > cv[SELECT_BY]:
        fusion = single_feature(fusion, names.index(best))
        selected = best
    pseudo = None
    if selected == "fusion" and cfg.new_weights and cfg.pseudo_new > 0 and not has_new:
        pseudo = pseudo_new(valid, names, pseudo_rows(valid, cfg.pseudo_new))
        if pseudo is not None:
            fusion = with_pseudo_new_weights(fusion, names, pseudo, cfg.l2)
    report = {"selected": selected, "plan": choice.plan.label, "plans_cv_ndcg@10": choice.ndcg,
              "plans_cv_hits": choice.hits,
              **({"plans_latency_ratio": choice.latency, "max_latency_ratio": cfg.max_latency_ratio}
                 if choice.latency else {}),
              "weights": dict(zip(names, fusion.weights, strict=True)),
              "new_weights": dict(zip(names, fusion.new_weights, strict=True)) if fusion.new_weights else None,
              "pseudo_new": None if pseudo is None else _pseudo_counts(pseudo, names),
              "n": int(len(found)), "target_in_candidates": float(found.mean()),
              "mean_candidates": float(valid.cands.valid.sum(axis=1).mean()),
              "fused_cv": cv if selected == "fusion" else parts[best], "fusion_cv": cv,
              "fusion_variants_cv": variants, "parts": parts}
    if valid.groups:  # the same cross-validated ranks, on the cold and the warm targets
        report["groups"] = {}
        for group, mask in valid.groups.items():
            if not mask.any():
                report["groups"][group] = {"n": 0}
                continue
            g_parts = {name: protocol_metrics(r, protocol, mask) for name, r in part_ranks.items()}
            g_cv = protocol_metrics(cv_ranks, protocol, mask)
            report["groups"][group] = {
                "n": int(mask.sum()), "target_in_candidates": float(found[mask].mean()),
                "fused_cv": g_cv if selected == "fusion" else g_parts[best], "fusion_cv": g_cv,
                "fusion_variants_cv": {v: protocol_metrics(r, protocol, mask) for v, r in variant_ranks.items()},
                "parts": g_parts}
    return fusion, report


def _pseudo_counts(pseudo: Collected, names) -> dict[str, int]:
    """How many valid candidates, and found targets, played new (``gensar.hybrid.pseudo_new``)."""
    new = new_mask(pseudo.cands.features, names) & pseudo.cands.valid
    rows = np.nonzero(pseudo.target_col >= 0)[0]
    return {"candidates": int(new.sum()), "targets": int(new[rows, pseudo.target_col[rows]].sum())}


def single_feature(fusion: LinearFusion, column: int) -> LinearFusion:
    """A fusion that ranks by one feature alone (same features and depth, weight 1 on ``column``)."""
    return dataclasses.replace(fusion, weights=tuple(1.0 if i == column else 0.0 for i in range(len(fusion.features))),
                               new_weights=())


def evaluate_hybrid(run_dir: str | Path, cfg: HybridConfig, split: str, max_examples: int = 0,
                    progress: bool = True) -> dict:
    """``{protocol: {behavior: metrics}}`` of the fitted hybrid on ``split``; valid figures are
    the fit's cross-validated ones (the fusion was fitted on valid)."""
    run = Path(run_dir)
    if split == "valid":
        report = json.loads((run / HYBRID_DIR / "fit_report.json").read_text(encoding="utf-8"))
        return {p: {key: m for b, r in report[p].items() for key, m in _fitted(b, r).items()}
                for p in PROTOCOLS}
    data, trained = load_run(run)
    encoder = trained.encoder(data)
    full = load_ranker(run, data, trained, cfg)
    out: dict[str, dict] = {}
    for protocol in PROTOCOLS:
        ranker = full if protocol == "full" else full.with_fusions(load_fusions(run / HYBRID_DIR, protocol))
        out[protocol] = {}
        for behavior in BEHAVIORS:
            got = collect(ranker, encoder, trained.pad_id, data, split, behavior, protocol, max_examples, progress)
            if got is None:
                continue
            r = ranks(ranker.fused(behavior, got.cands), got.target_col)
            names = ranker.feature_names(behavior)
            part_ranks = {name: feature_ranks(got, col) for col, name in enumerate(names)}

            def metrics(mask: np.ndarray | None, r=r, got=got, part_ranks=part_ranks) -> dict:
                found = got.target_col >= 0 if mask is None else got.target_col[mask] >= 0
                return protocol_metrics(r, protocol, mask) | {
                    "n": len(found), "target_in_candidates": float(np.mean(found)),
                    "parts": {name: protocol_metrics(pr, protocol, mask) for name, pr in part_ranks.items()}}

            out[protocol] |= grouped(behavior, got.groups, metrics)
    return out


def _fitted(behavior: str, report: dict) -> dict[str, dict]:
    """The valid metrics of one fitted behavior (and of its groups) from its fit report entry."""
    out = {behavior: report["fused_cv"] | {"n": report["n"], "parts": report["parts"]}}
    for group, r in report.get("groups", {}).items():
        out[group_key(behavior, group)] = r["fused_cv"] | {"n": r["n"], "parts": r["parts"]} if r["n"] else r
    return out


def baseline_metrics(run_dir: str | Path, splits: tuple[str, ...], max_examples: int = 0) -> dict:
    """``{name: {split: {behavior: sampled}, "full_ranking": {split: {behavior: full}}}}`` of each
    retriever alone (popularity, BM25, dense, match-popularity, and the run's SASRec when the hybrid
    trained one), on the run's own examples and candidates: the baselines beside GenSAR."""
    from gensar.baselines.run import evaluate_splits

    run = Path(run_dir)
    data = PreparedData.load(run / "data")
    sasrec_dir = run / HYBRID_DIR / "sasrec"
    sasrec = load_sasrec_scorer(sasrec_dir, data) if (sasrec_dir / "model.pt").is_file() else None
    names = ("popularity", "bm25", "dense", "match-popularity", "content")
    scorers: dict[str, Scorer] = {}
    for n in names:
        scorers[n] = build_scorer(n, data, run / HYBRID_DIR / "cache", _shared_texts(scorers))
    if sasrec is not None:
        scorers["sasrec"] = sasrec
    out: dict[str, dict] = {}
    for name, scorer in scorers.items():
        result: dict = {}
        result["full_ranking"] = evaluate_splits(scorer, data, splits, result, True, max_examples)
        out[name] = result
    return out
