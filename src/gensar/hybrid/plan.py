"""Serving with less where valid shows no loss: which scorers a fitted hybrid runs, how deep they propose.

Each scorer and each proposal costs latency: dense retrieval encodes the query with a transformer
(on a CPU, more than the whole beam), and every proposed candidate is scored exactly by the
generative model. The fit collects the valid candidates once, with every configured scorer at the
full ``depth``; a smaller plan (a ``prunable`` scorer left out, proposals cut to one of
``fit_depths``) is the same collection with those columns and candidates removed, so each plan is
measured without running the model again.

The choice is the one-standard-error rule (Breiman et al. 1984; Hastie et al., "Elements of
Statistical Learning" 7.10): the cheapest plan whose cross-validated valid NDCG@10 lies within one
standard error of the best plan's (the error of the paired per-example difference). A plan is
never taken for being cheaper when valid says it ranks worse than that noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from gensar.hybrid.config import HybridConfig
from gensar.hybrid.evaluate import Collected, HybridProtocol, Ranks, cross_validated_ranks
from gensar.hybrid.features import BEAM, TITLE, feature_names
from gensar.hybrid.fusion import target_columns
from gensar.hybrid.ranker import Candidates
from gensar.metrics import expected_ndcg_each

__all__ = ["Plan", "PlanChoice", "candidate_plans", "choose_plan", "restrict"]

PLAN_METRIC_K = 10  # NDCG@10, the metric the fit selects by (``gensar.hybrid.stage.SELECT_BY``)


@dataclass(frozen=True)
class Plan:
    scorers: tuple[str, ...]
    depth: int

    @property
    def label(self) -> str:
        return f"{'+'.join(self.scorers) or 'generative'}@{self.depth}"


@dataclass(frozen=True)
class PlanChoice:
    plan: Plan
    collected: Collected  # the valid candidates as the plan would have them
    ndcg: dict[str, float]  # cross-validated valid NDCG@10 of every plan tried, by label


def candidate_plans(cfg: HybridConfig, behavior: str, protocol: HybridProtocol) -> list[Plan]:
    """Every plan the fit may choose for ``behavior``, cheapest first (fewest prunable scorers, then
    the shallowest depth). With given candidates (the sampled protocol) depth changes nothing."""
    scorers = cfg.scorers(behavior)
    prunable = [s for s in scorers if s in cfg.prunable]
    depths = sorted({*cfg.fit_depths, cfg.depth}) if protocol == "full" else [cfg.depth]
    out: list[Plan] = []
    for kept in range(len(prunable) + 1):
        for keep in combinations(prunable, kept):
            dropped = set(prunable) - set(keep)
            out += [Plan(tuple(s for s in scorers if s not in dropped), d) for d in depths]
    return out


def restrict(valid: Collected, names: Sequence[str], plan: Plan, cfg: HybridConfig) -> tuple[tuple[str, ...], Collected]:
    """(feature names, candidates) of ``valid`` (collected with every scorer of ``names`` at the full
    depth) as ``plan`` would have produced them: the dropped scorers' features gone, and proposed
    candidates kept only where the beam, an exact title or a kept scorer within ``plan.depth`` had them."""
    c = valid.cands
    kept_names = feature_names(plan.scorers)
    cols = [list(names).index(n) for n in kept_names]
    items = c.items
    if c.sources:
        allowed = [i for i, s in enumerate(c.sources)
                   if s in (BEAM, TITLE) or (s in plan.scorers and s not in cfg.feature_only)]
        limit = np.array([np.iinfo(np.int32).max if c.sources[i] in (BEAM, TITLE) else plan.depth
                          for i in allowed])
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
                protocol: HybridProtocol) -> PlanChoice:
    """The plan the one-standard-error rule picks (see the module doc), with its restricted candidates."""
    tried: list[tuple[Plan, Collected, np.ndarray]] = []
    for plan in candidate_plans(cfg, behavior, protocol):
        plan_names, restricted = restrict(valid, names, plan, cfg)
        r = cross_validated_ranks(plan_names, restricted, cfg.l2, cfg.folds)
        tried.append((plan, restricted, _ndcg_each(r)))
    best = max(tried, key=lambda t: t[2].mean())[2]
    chosen = next(t for t in tried if t[2].mean() >= best.mean() - _paired_se(best, t[2]))
    return PlanChoice(plan=chosen[0], collected=chosen[1],
                      ndcg={p.label: float(e.mean()) for p, _, e in tried})


def _ndcg_each(r: Ranks) -> np.ndarray:
    return expected_ndcg_each(r[0], r[1], PLAN_METRIC_K)


def _paired_se(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
