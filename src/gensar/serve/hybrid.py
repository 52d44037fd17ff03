"""The hybrid ranker as a serving ``Engine``: what ``/search`` and ``/recommend`` answer by default.

Each batch is rendered exactly as the generative engine renders it (same prompts, same history
window), then ``gensar.hybrid.HybridRanker`` proposes candidates (the generative beam, BM25 and
dense retrieval for search, SASRec for recommendation), scores every candidate with every part and
orders them by the fusion fitted on the valid split (``RUN_DIR/hybrid/fusion.json``). An item's
score is its fused score. Query suggestions come from the generative model alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from gensar.baselines.scorer import Request
from gensar.config import load_config
from gensar.data.prepared import PreparedData
from gensar.data.schema import REC, SEARCH
from gensar.data.twins import is_twin
from gensar.errors import GensarError
from gensar.hybrid.config import HybridConfig
from gensar.hybrid.ranker import HybridRanker
from gensar.hybrid.stage import FUSION_FILE, HYBRID_DIR, has_hybrid, load_ranker
from gensar.ids.item_ids import IdMaps
from gensar.model.trained import ID_KIND
from gensar.serve.engine import History, RankedItem, RankedQuery
from gensar.serve.generative import GenerativeEngine, load_trained


class HybridEngine:
    name = "hybrid"

    def __init__(self, generative: GenerativeEngine, ranker: HybridRanker, item_index: dict[str, int]) -> None:
        self.generative = generative
        self.ranker = ranker
        self.item_index = item_index
        self.num_items = generative.num_items

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, data: PreparedData | None = None, beam_size: int = 30) -> HybridEngine:
        run_dir = Path(run_dir)
        if not has_hybrid(run_dir):
            raise GensarError(f"{run_dir / HYBRID_DIR / FUSION_FILE}: missing (the run has no fitted hybrid "
                              "ranker; rerun `gensar pipeline`, or serve with --engine generative)")
        data = data if data is not None else PreparedData.load(run_dir / "data")
        cfg = load_config(HybridConfig, run_dir / HYBRID_DIR / "config.yaml", [])
        cfg = dataclasses.replace(cfg, beam_size=max(cfg.beam_size, beam_size))
        trained = load_trained(run_dir)
        generative = GenerativeEngine.from_trained(trained, data, beam_size=beam_size)
        return cls(generative, load_ranker(run_dir, data, trained, cfg), data.item_index)

    # ---- Engine ------------------------------------------------------------------------
    def recommend(self, histories: Sequence[History], k: int) -> list[list[RankedItem]]:
        return self._rank(REC, [""] * len(histories), histories, k)

    def search(self, queries: Sequence[str], histories: Sequence[History], k: int) -> list[list[RankedItem]]:
        if len(queries) != len(histories):
            raise ValueError(f"{len(queries)} queries but {len(histories)} histories")
        return self._rank(SEARCH, queries, histories, k)

    def suggest_queries(self, histories: Sequence[History], k: int) -> list[list[RankedQuery]]:
        return self.generative.suggest_queries(histories, k)

    def add_items(self, data: PreparedData, start: int, ids: IdMaps) -> None:
        """New items enter through every retriever (BM25, dense, the title rule, the generative
        beam over the grown trie) and are scored by their exact identifier likelihood like the rest."""
        self.generative.add_items(data, start, ids)
        new = data.items["item_id"].tolist()[start:]
        self.ranker.add_items(data, start, {b: self.generative.id_codes(ID_KIND[b], new) for b in (REC, SEARCH)})
        self.item_index = dict(data.item_index)
        self.num_items = self.generative.num_items

    def batch(self, behavior: str, queries: Sequence[str], histories: Sequence[History]) -> tuple[torch.Tensor, list[Request]]:
        """A batch as the ranker takes it: the generative engine's rendered inputs [B, L] (same
        prompts, same history window) and each request's query and history item rows (search
        twins left out, as in the requests the fusion was fitted on: ``gensar.data.twins``)."""
        inputs = self.generative.render(behavior, histories, queries)
        requests = [Request(q if behavior == SEARCH else "", self._history_rows(h))
                    for q, h in zip(queries, histories, strict=True)]
        return inputs, requests

    def _history_rows(self, history: History) -> tuple[int, ...]:
        rows: list[int] = []
        for k, e in enumerate(history):
            prev = history[k - 1] if k else None
            if prev is None or not is_twin(prev.behavior, prev.items, prev.timestamp, e.behavior, e.items, e.timestamp):
                rows += [self.item_index[i] for i in e.items if i in self.item_index]
        return tuple(rows)

    def _rank(self, behavior: str, queries: Sequence[str], histories: Sequence[History], k: int) -> list[list[RankedItem]]:
        if not histories:
            return []
        inputs, requests = self.batch(behavior, queries, histories)
        cands = self.ranker.top_candidates(behavior, requests, inputs, k)
        items, scores = self.ranker.rank(behavior, cands, k)
        return [[RankedItem(int(i), float(s)) for i, s in zip(row_i, row_s, strict=True) if i >= 0]
                for row_i, row_s in zip(items, scores, strict=True)]
