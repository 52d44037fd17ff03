"""Serving with less where valid shows no loss: which scorers a fitted hybrid runs, how deep they propose.

Each scorer and each proposal costs latency: dense retrieval encodes the query with a transformer
(on a CPU, more than the whole beam), and every proposed candidate is scored exactly by the
generative model. The fit collects the valid candidates once, with every configured scorer at the
full ``depth``, and with the narrower beams of ``fit_beam_sizes`` beside the full beam; a smaller
plan (a ``prunable`` scorer left out, proposals cut to one of ``fit_depths``, a narrower beam) is the
same collection with those columns and candidates removed. Every candidate's features are the same
under every plan (the generative score is exact, not the beam's), so each plan is measured without
running the model again.

The choice follows the one-standard-error rule (Breiman et al. 1984; Hastie et al., "Elements of
Statistical Learning" 7.10), against the full configuration and on two cutoffs: the cheapest plan
whose cross-validated valid NDCG@10 and Recall@20 (HR@10 with given candidates) both lie within one
standard error of the full plan's (the error of the paired per-example difference); the full plan
itself always qualifies. A plan is never taken for being cheaper when valid says it ranks worse
than that noise, at the top or deeper in the list.

With a bound on serving time (``hybrid.max_latency_ratio``, the plans' times measured by
``gensar.hybrid.latency``) the plans above it are out: the same rule runs among the rest, against
the best of them by valid NDCG@10 when the full plan is out too; where every plan is out, the
cheapest serves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from gensar.errors import GensarError
from gensar.hybrid.config import HybridConfig
from gensar.hybrid.evaluate import Collected, HybridProtocol, cross_validated_ranks, fit
from gensar.hybrid.features import BEAM, TITLE, beam_source, feature_names
from gensar.hybrid.fusion import LinearFusion, target_columns
from gensar.hybrid.ranker import Candidates
from gensar.metrics import expected_hit_rate_each, expected_ndcg_each

__all__ = ["Plan", "PlanChoice", "candidate_plans", "choose_plan", "narrower_beams", "plan_fusion", "restrict"]

PLAN_NDCG_K = 10  # NDCG@10, the metric the fit selects by (``gensar.hybrid.stage.SELECT_BY``) ...
PLAN_HIT_K = {"full": 20, "sampled": 10}  # ... and the deepest reported hit cutoff of each protocol


@dataclass(frozen=True)
class Plan:
    scorers: tuple[str, ...]
    depth: int
    beam: int

    @property
    def label(self) -> str:
        return f"beam{self.beam}+{'+'.join(self.scorers)}@{self.depth}"


@dataclass(frozen=True)
class PlanChoice:
    plan: Plan
    collected: Collected  # the valid candidates as the plan would have them
    ndcg: dict[str, float]  # cross-validated valid NDCG@10 of every plan tried, by label
    hits: dict[str, float]  # and its Recall@20 (HR@10 with given candidates)
    latency: dict[str, float] = dataclasses.field(default_factory=dict)  # measured time / the beam's, when bounded


def candidate_plans(cfg: HybridConfig, behavior: str, protocol: HybridProtocol) -> list[Plan]:
    """Every plan the fit may choose for ``behavior``, cheapest first (fewest prunable scorers, then
    the narrowest beam, then the shallowest depth). With given candidates (the sampled protocol)
    beam and depth change nothing."""
    scorers = cfg.scorers(behavior)
    prunable = [s for s in scorers if s in cfg.prunable]
    full = protocol == "full"
    depths = sorted({*(d for d in cfg.fit_depths if d < cfg.depth), cfg.depth}) if full else [cfg.depth]
    beams = sorted({*narrower_beams(cfg), cfg.beam_size}) if full else [cfg.beam_size]
    out: list[Plan] = []
    for kept in range(len(prunable) + 1):
        for keep in combinations(prunable, kept):
            dropped = set(prunable) - set(keep)
            chosen = tuple(s for s in scorers if s not in dropped)
            out += [Plan(chosen, d, b) for b in beams for d in depths]
    return out


def narrower_beams(cfg: HybridConfig) -> list[int]:
    """The beam widths a fit collects beside the full beam."""
    return sorted(w for w in set(cfg.fit_beam_sizes) if w < cfg.beam_size)


def restrict(valid: Collected, names: Sequence[str], plan: Plan, cfg: HybridConfig) -> tuple[tuple[str, ...], Collected]:
    """(feature names, candidates) of ``valid`` (collected with every scorer of ``names`` at the full
    depth) as ``plan`` would have produced them: the dropped scorers' features gone, and proposed
    candidates kept only where the plan's beam, an exact title or a kept scorer within ``plan.depth``
    had them."""
    c = valid.cands
    kept_names = feature_names(plan.scorers)
    cols = [list(names).index(n) for n in kept_names]
    items = c.items
    if c.sources:
        beam = BEAM if plan.beam == cfg.beam_size else beam_source(plan.beam)
        if beam not in c.sources:
            raise GensarError(f"hybrid plan {plan.label}: the candidates were collected without a "
                              f"{plan.beam}-wide beam (sources: {', '.join(c.sources)})")
        whole = (beam, TITLE)  # sources kept whole: the plan's beam, exact-title matches
        # the sources are the beams, titles and scorers that proposed: a dropped scorer's go
        allowed = [i for i, s in enumerate(c.sources) if s in whole or s in plan.scorers]
        limit = np.array([np.iinfo(np.int32).max if c.sources[i] in whole else plan.depth for i in allowed])
        r = c.source_ranks[..., allowed]
        keep = ((r >= 0) & (r < limit)).any(axis=2)
        items = np.where(keep, c.items, -1)
        targets = np.take_along_axis(c.items, np.maximum(valid.target_col, 0)[:, None], axis=1)[:, 0]
        target_col = np.where(valid.target_col >= 0, target_columns(items, targets), -1)
    else:
        target_col = valid.target_col
    cands = Candidates(items=items, features=c.features[..., cols], pinned=c.pinned & (items >= 0),
                       source_ranks=c.source_ranks, sources=c.sources)
    return kept_names, Collected(cands=cands, target_col=target_col, groups=valid.groups)


def choose_plan(valid: Collected, names: Sequence[str], cfg: HybridConfig, behavior: str,
                protocol: HybridProtocol, latency: Mapping[str, float] | None = None) -> PlanChoice:
    """The plan the one-standard-error rule picks (see the module doc), with its restricted candidates.
    ``latency``: each plan's measured time as a multiple of the generative beam's, by label; with
    ``cfg.max_latency_ratio`` above 0 the plans above it are left out."""
    tried: list[tuple[Plan, Collected, np.ndarray, np.ndarray]] = []
    for plan in candidate_plans(cfg, behavior, protocol):
        plan_names, restricted = restrict(valid, names, plan, cfg)
        better, ties = cross_validated_ranks(plan_names, restricted, cfg.l2, cfg.folds, cfg.new_weights)
        tried.append((plan, restricted, expected_ndcg_each(better, ties, PLAN_NDCG_K),
                      expected_hit_rate_each(better, ties, PLAN_HIT_K[protocol])))
    bounded = cfg.max_latency_ratio > 0 and latency is not None
    fast = [t for t in tried if not bounded or latency[t[0].label] <= cfg.max_latency_ratio]
    if not fast:
        chosen = tried[0]  # nothing is fast enough: the cheapest by construction
    else:
        # every scorer, the full beam and depth (the last plan): always acceptable when allowed
        best = fast[-1] if fast[-1] is tried[-1] else max(fast, key=lambda t: (t[2].mean(), t[3].mean()))
        chosen = next(t for t in fast if all(t[m].mean() >= best[m].mean() - _paired_se(best[m], t[m])
                                             for m in (2, 3)))
    return PlanChoice(plan=chosen[0], collected=chosen[1],
                      ndcg={t[0].label: float(t[2].mean()) for t in tried},
                      hits={t[0].label: float(t[3].mean()) for t in tried},
                      latency=dict(latency) if bounded else {})


def plan_fusion(valid: Collected, names: Sequence[str], plan: Plan, cfg: HybridConfig) -> LinearFusion:
    """The fusion ``plan`` would serve with (shared weights, fitted on all of ``valid``): what the
    plan's serving time is measured with."""
    plan_names, restricted = restrict(valid, names, plan, cfg)
    return dataclasses.replace(fit(plan_names, restricted, cfg.l2, False), depth=plan.depth, beam=plan.beam)


def _paired_se(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
