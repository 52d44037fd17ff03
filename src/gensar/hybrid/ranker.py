"""Hybrid generative retrieval: candidates from the generative beam and text/collaborative
retrievers, every candidate scored by every part, ordered by a fitted fusion.

For one batch of requests of one behavior:

1. proposals: the generative model's constrained beam over the whole catalog (``beam_size``) and
   the top ``depth`` items of each proposing scorer (BM25 and dense retrieval for search, SASRec
   for recommendation); their union is the candidate set. Given candidates (the sampled protocol's
   saved lists) replace the proposals.
2. features: the exact generative log-probability of every candidate (not only the beam's) and
   each scorer's normalized score (``gensar.hybrid.features``).
3. order: ``LinearFusion`` per behavior. Items outside the union are not ranked.

A fitted fusion also says which scorers it needs and how deep they propose (the fit may leave out a
scorer, or propose less deep, where the valid split shows no loss: ``gensar.hybrid.plan``); before
fitting, the config's scorers and depth are used.

One rule sits above the fusion: a search whose query is exactly an item's title (case and
punctuation aside) shows that item first. A user who types a title means that item, and semi-
synthetic training queries (category words) never teach the fusion so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from gensar.baselines.scorer import Request, Scorer
from gensar.data.prepared import PreparedData
from gensar.data.queries import words
from gensar.errors import GensarError
from gensar.hybrid.config import HISTORY_ONLY, HybridConfig
from gensar.hybrid.features import (
    BEAM,
    GENERATIVE,
    NEW,
    SEEN,
    TITLE,
    UNTRAINED,
    beam_source,
    feature_names,
    fusion_scorers,
    gather,
    impute_new,
    model_proposed,
    normalizer,
    seen_feature,
    source_ranks,
    top_rows,
    union_candidates,
)
from gensar.hybrid.fusion import LinearFusion
from gensar.hybrid.generative import GenerativeScorer, Proposal


PIN_BONUS = 1e6  # above any fused score: exact-title matches first, in fused order among themselves
# Added to the beam's bound before pruning: the exact score sums the same float32 terms in another
# order (one teacher-forced pass), so it may exceed the bound by rounding (~1e-7 relative).
BOUND_SLACK = 1e-3
# Pruning scores the FIRST_PASS * k unscored candidates with the best bounds first, then the rest
# that can still reach the top k. A decoder pass has a fixed cost (measured: ~3 ms, as much as ~50
# candidates), so with at most twice the first pass to score, one pass over all of them is cheaper.
FIRST_PASS = 2


def _restricted(cands: Candidates, keep: np.ndarray, generative: np.ndarray, column: int) -> Candidates:
    """``cands`` with only its ``keep`` [B, C] entries (the rest -1, features 0, as pads) and
    ``generative`` [B, C] in feature ``column``."""
    keep = keep & cands.valid
    feats = cands.features.copy()
    feats[..., column] = generative
    return dataclasses.replace(cands, items=np.where(keep, cands.items, -1),
                               features=np.where(keep[..., None], feats, 0.0), pinned=cands.pinned & keep)


def title_key(text: str) -> str:
    return " ".join(words(text))


@dataclass(frozen=True)
class Candidates:
    items: np.ndarray  # [B, C] item rows, -1 pads
    features: np.ndarray  # [B, C, F] float64, in ``feature_names`` order
    pinned: np.ndarray  # [B, C] bool: the query names this item's title exactly
    # [B, C, S] the candidate's 0-based rank in each proposal source (``sources``), -1 when that
    # source did not propose it; S = 0 when the candidates were given.
    source_ranks: np.ndarray
    sources: tuple[str, ...] = ()
    pruned: int = 0  # candidates left out as unable to reach the top k (``HybridRanker.top_candidates``)

    @property
    def valid(self) -> np.ndarray:
        return self.items >= 0


@dataclass(frozen=True)
class _Pool:
    """A batch's candidate rows before features: each scorer's normalized catalog scores [B, N]
    (``normalizer``) and the beam (None when the candidates were given)."""

    items: np.ndarray
    catalog: dict[str, np.ndarray]
    known: Proposal | None
    source_ranks: np.ndarray
    sources: tuple[str, ...]


class HybridRanker:
    def __init__(self, cfg: HybridConfig, generative: GenerativeScorer, scorers: Mapping[str, Scorer],
                 fusions: Mapping[str, LinearFusion] | None = None, titles: Sequence[str] = (),
                 trained_items: int | None = None) -> None:
        """``trained_items``: the catalog rows the generative model and SASRec trained on (the first
        ones; rows from there on are new: cold or added items); default every row of ``titles``."""
        for behavior in ("rec", "search"):
            missing = [s for s in cfg.scorers(behavior) if s not in scorers]
            if missing:
                raise GensarError(f"hybrid {behavior}: scorer(s) {', '.join(missing)} not available")
        for behavior, fusion in (fusions or {}).items():
            missing = [s for s in fusion_scorers(fusion) if s not in scorers]
            if missing:
                raise GensarError(f"hybrid {behavior}: the fusion needs scorer(s) {', '.join(missing)}, "
                                  "which are not available")
        self.cfg = cfg
        self.generative = generative
        self.scorers = scorers
        self.fusions = dict(fusions or {})
        self.titles: tuple[str, ...] = ()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gensar-retrievers")
        self.by_title: dict[str, list[int]] = {}
        self._add_titles(titles)
        self.trained_items = len(self.titles) if trained_items is None else trained_items

    def _add_titles(self, titles: Sequence[str]) -> None:
        for row, title in enumerate(titles, start=len(self.titles)):
            key = title_key(title)
            if key:
                self.by_title.setdefault(key, []).append(row)
        self.titles += tuple(titles)

    def add_items(self, data: PreparedData, start: int, codes: Mapping[str, np.ndarray]) -> None:
        """Rows ``start:`` of ``data.items`` joined the catalog: every retriever indexes them (BM25,
        dense, the title rule) and the generative model proposes and scores them by their identifiers
        (``codes``: per behavior [M, D] tokens, -1 padded); nothing is retrained."""
        if start != len(self.titles):
            raise GensarError(f"hybrid: items added from row {start}, but the ranker holds {len(self.titles)}")
        self.generative.add_items(codes)
        for scorer in self.scorers.values():
            scorer.add_items(data, start)
        self._add_titles(data.items["title"].tolist()[start:])

    def with_fusions(self, fusions: Mapping[str, LinearFusion]) -> HybridRanker:
        """The same retrievers with other fusion weights (e.g. the sampled protocol's)."""
        return HybridRanker(self.cfg, self.generative, self.scorers, fusions, self.titles, self.trained_items)

    def with_config(self, cfg: HybridConfig) -> HybridRanker:
        """The same retrievers and fusions under other settings (e.g. ``prune`` off, to measure it)."""
        return HybridRanker(cfg, self.generative, self.scorers, self.fusions, self.titles, self.trained_items)

    def scorer_names(self, behavior: str) -> tuple[str, ...]:
        """The scorers a request of ``behavior`` runs: the fitted fusion's, else the config's."""
        fusion = self.fusions.get(behavior)
        return fusion_scorers(fusion) if fusion is not None else self.cfg.scorers(behavior)

    def depth(self, behavior: str) -> int:
        fusion = self.fusions.get(behavior)
        return fusion.depth if fusion is not None and fusion.depth > 0 else self.cfg.depth

    def beam_size(self, behavior: str) -> int:
        fusion = self.fusions.get(behavior)
        return fusion.beam if fusion is not None and fusion.beam > 0 else self.cfg.beam_size

    def feature_names(self, behavior: str) -> tuple[str, ...]:
        """The fitted fusion's features (a fusion written before the ``new`` feature lacks it), else
        the config's."""
        fusion = self.fusions.get(behavior)
        return fusion.features if fusion is not None else feature_names(self.scorer_names(behavior))

    def candidates(self, behavior: str, requests: Sequence[Request], inputs: torch.Tensor,
                   given: np.ndarray | None = None, extra_beams: Sequence[int] = ()) -> Candidates:
        """Candidates and features of a batch; ``given`` [B, C] fixes the candidates (-1 pads).
        ``extra_beams``: narrower beam widths whose proposals join too (sources ``beam@W``), so a fit
        can measure them on the same candidates."""
        pool = self._propose(behavior, requests, inputs, given, extra_beams)
        generative = self.generative.score(behavior, inputs, pool.items, self.cfg.candidate_chunk, pool.known)
        return self._with_features(behavior, requests, pool, generative)

    def top_candidates(self, behavior: str, requests: Sequence[Request], inputs: torch.Tensor,
                       k: int) -> Candidates:
        """The candidates of ``candidates(behavior, requests, inputs)`` that can reach a request's
        fused top ``k``, the rest dropped (-1): ``rank`` of either gives the same top ``k``.

        Exact scoring of the candidates the beam did not propose is a large part of what the hybrid
        adds to a request's time. The beam's own search bounds their exact score from above (a
        candidate scores at most what the beam kept at the step its prefix fell out:
        ``GenerativeScorer.bound``), and the fused score grows with the generative one, so a
        candidate whose fused bound is below the ``k``-th best exact fused score found so far (the
        beam's own candidates and a first pass, ``_pruned``) cannot reach the top ``k`` and is never
        decoded. Off (``hybrid.prune``), with a fusion that does not grow with the generative score,
        or where a new item is among the candidates (their imputed features depend on the whole
        set), every candidate is scored."""
        pool = self._propose(behavior, requests, inputs, None, ())
        fusion = self.fusions.get(behavior)
        items = pool.items
        if self.cfg.prune and fusion is not None and fusion.grows_with(GENERATIVE) and k > 0 \
                and not (items >= self.trained_items).any():
            known, hit = self.generative.known_scores(pool.known, items)
            if int(((items >= 0) & ~hit).sum(axis=1).max(initial=0)) > 2 * FIRST_PASS * k:
                return self._pruned(behavior, requests, inputs, pool, known, hit, k)
        generative = self.generative.score(behavior, inputs, items, self.cfg.candidate_chunk, pool.known)
        return self._with_features(behavior, requests, pool, generative)

    def _pruned(self, behavior: str, requests: Sequence[Request], inputs: torch.Tensor, pool: _Pool,
                known: np.ndarray, hit: np.ndarray, k: int) -> Candidates:
        """``top_candidates`` where pruning pays: two passes. The ``FIRST_PASS * k`` unscored
        candidates with the highest fused bound are scored first, so the threshold (the ``k``-th best
        exact fused score) is close to the final one before the rest is bounded against it.

        The features are built once, with the bound as the generative one; only that column and
        which candidates are kept change after (no candidate is new, so nothing else depends on the
        set)."""
        items = pool.items
        valid = items >= 0
        column = self.feature_names(behavior).index(GENERATIVE)
        bound = np.where(hit, known, self.generative.bound(behavior, pool.known, items) + BOUND_SLACK)
        base = self._with_features(behavior, requests, pool, bound)
        upper = self.fused(behavior, base)  # [B, C]
        order = np.argsort(-np.where(valid & ~hit, upper, -np.inf), axis=1, kind="stable")[:, : FIRST_PASS * k]
        first = hit.copy()
        np.put_along_axis(first, order, True, axis=1)
        first &= valid
        scored = self.generative.score(behavior, inputs, np.where(first, items, -1), self.cfg.candidate_chunk,
                                       pool.known)
        exact = self.fused(behavior, _restricted(base, first, scored, column))
        kth = -np.sort(-exact, axis=1)[:, k - 1] if exact.shape[1] >= k else np.full(len(exact), -np.inf)
        rest = valid & ~first & (upper >= kth[:, None])
        if rest.any():
            later = self.generative.score(behavior, inputs, np.where(rest, items, -1), self.cfg.candidate_chunk,
                                          pool.known)
            scored = np.where(rest, later, scored)
        keep = first | rest
        return dataclasses.replace(_restricted(base, keep, scored, column), pruned=int((valid & ~keep).sum()))

    def _propose(self, behavior: str, requests: Sequence[Request], inputs: torch.Tensor,
                 given: np.ndarray | None, extra_beams: Sequence[int]) -> _Pool:
        names = self.scorer_names(behavior)
        known = None
        if given is None:
            # ``beside_beam`` retrievers run in a second thread while the beam decodes (opt-in:
            # ``HybridConfig.beside_beam``), the rest after it
            beside = [n for n in names if n in self.cfg.beside_beam]
            pending = self._pool.submit(self._catalog_scores, beside, requests) if beside else None
            known = self.generative.propose(behavior, inputs, self.beam_size(behavior))
            narrow = [self.generative.propose(behavior, inputs, w).items for w in extra_beams]
            catalog = self._catalog_scores([n for n in names if n not in beside], requests)
            catalog |= pending.result() if pending is not None else {}
            proposers = [n for n in names if self.cfg.proposes(behavior, n)]
            sources = (BEAM, *(beam_source(w) for w in extra_beams), *proposers)
            proposals = [known.items, *narrow] + [top_rows(catalog[n], self.depth(behavior)) for n in proposers]
            if behavior == "search":
                sources += (TITLE,)
                proposals.append(self._title_rows(requests))
            items = union_candidates(proposals)
            ranks = source_ranks(proposals, items)
        else:
            catalog = self._catalog_scores(names, requests)
            items = np.asarray(given, dtype=np.int64)
            sources, ranks = (), np.zeros(items.shape + (0,), dtype=np.int32)
        normalized = {name: normalizer(name)(scores) for name, scores in catalog.items()}
        return _Pool(items=items, catalog=normalized, known=known, source_ranks=ranks, sources=sources)

    def _with_features(self, behavior: str, requests: Sequence[Request], pool: _Pool,
                       generative: np.ndarray) -> Candidates:
        """The candidates of ``pool`` with their features, ``generative`` [B, C] as the generative one."""
        items = pool.items
        valid = items >= 0
        new = valid & (items >= self.trained_items)
        cols = {GENERATIVE: generative}
        cols |= {name: gather(pool.catalog[name], items) for name in self.scorer_names(behavior)}
        if behavior == "search":  # no history, no evidence: SASRec's empty-history prior is not fitted on
            blind = np.array([not r.history for r in requests])[:, None]
            cols |= {name: np.where(blind, 0.0, cols[name]) for name in HISTORY_ONLY if name in cols}
        cols[SEEN] = seen_feature([r.history for r in requests], items)
        cols[NEW] = new.astype(np.float64)
        if new.any():
            by_model = model_proposed(pool.source_ranks, pool.sources)
            cols |= {name: impute_new(cols[name], new, valid, by_model) for name in UNTRAINED if name in cols}
        feats = np.stack([cols[name] for name in self.feature_names(behavior)], axis=-1)  # [B, C, F]
        feats = np.where(valid[..., None], feats, 0.0)
        pinned = np.zeros(items.shape, dtype=bool)
        if behavior == "search" and self.by_title:
            exact = self._title_rows(requests)  # [B, T]
            pinned = (items[:, :, None] == exact[:, None, :]).any(axis=2) & (items >= 0)
        return Candidates(items=items, features=feats, pinned=pinned, source_ranks=pool.source_ranks,
                          sources=pool.sources)

    def _catalog_scores(self, names: Sequence[str], requests: Sequence[Request]) -> dict[str, np.ndarray]:
        """Each scorer's scores of the whole catalog, [B, N] per name."""
        with torch.inference_mode():  # thread-local: the pool's thread needs its own
            return {name: self.scorers[name].scores(requests) for name in names}

    def _title_rows(self, requests: Sequence[Request]) -> np.ndarray:
        """[B, T] rows of the items whose title is each request's query (-1 pads)."""
        rows = [self.by_title.get(title_key(r.query), []) for r in requests]
        out = np.full((len(rows), max([1] + [len(r) for r in rows])), -1, dtype=np.int64)
        for b, r in enumerate(rows):
            out[b, : len(r)] = r
        return out

    def fused(self, behavior: str, cands: Candidates) -> np.ndarray:
        """[B, C] fused scores (-inf at pads)."""
        fusion = self.fusions.get(behavior)
        if fusion is None:
            raise GensarError(f"hybrid {behavior}: no fitted fusion (run the pipeline's hybrid stage)")
        return fusion.score(cands.features, cands.valid) + np.where(cands.pinned, PIN_BONUS, 0.0)

    def rank(self, behavior: str, cands: Candidates, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (item rows [B, k], fused scores [B, k]) per request, best first (-1 / -inf pads)."""
        scores = self.fused(behavior, cands)
        k = min(k, scores.shape[1])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(scores, order, axis=1)
        items = np.where(np.isfinite(top), np.take_along_axis(cands.items, order, axis=1), -1)
        return items, top
