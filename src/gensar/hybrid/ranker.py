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

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from gensar.baselines.scorer import Request, Scorer
from gensar.data.prepared import PreparedData
from gensar.data.queries import words
from gensar.errors import GensarError
from gensar.hybrid.config import HybridConfig
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
    normalizer,
    seen_feature,
    source_ranks,
    top_rows,
    union_candidates,
)
from gensar.hybrid.fusion import LinearFusion
from gensar.hybrid.generative import GenerativeScorer


PIN_BONUS = 1e6  # above any fused score: exact-title matches first, in fused order among themselves


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

    @property
    def valid(self) -> np.ndarray:
        return self.items >= 0


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
        names = self.scorer_names(behavior)
        known = None
        if given is None:
            # The retrievers (a MiniLM query encoding, BM25, SASRec) run beside the beam: on two cores
            # a request waits for the slower of the two, not their sum.
            pending = self._pool.submit(self._catalog_scores, names, requests)
            known = self.generative.propose(behavior, inputs, self.beam_size(behavior))
            narrow = [self.generative.propose(behavior, inputs, w).items for w in extra_beams]
            catalog = pending.result()
            proposers = [n for n in names if n not in self.cfg.feature_only]
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
        valid = items >= 0
        new = valid & (items >= self.trained_items)
        cols = {GENERATIVE: self.generative.score(behavior, inputs, items, self.cfg.candidate_chunk, known)}
        cols |= {name: gather(normalizer(name)(catalog[name]), items) for name in names}
        cols[SEEN] = seen_feature([r.history for r in requests], items)
        cols[NEW] = new.astype(np.float64)
        if new.any():
            cols |= {name: impute_new(cols[name], new, valid) for name in UNTRAINED if name in cols}
        feats = np.stack([cols[name] for name in self.feature_names(behavior)], axis=-1)  # [B, C, F]
        feats = np.where(valid[..., None], feats, 0.0)
        pinned = np.zeros(items.shape, dtype=bool)
        if behavior == "search" and self.by_title:
            exact = self._title_rows(requests)  # [B, T]
            pinned = (items[:, :, None] == exact[:, None, :]).any(axis=2) & (items >= 0)
        return Candidates(items=items, features=feats, pinned=pinned, source_ranks=ranks, sources=sources)

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
