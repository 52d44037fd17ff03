"""One interface for every non-generative method: score the whole catalog for a batch of requests.

A ``Scorer`` turns requests (a query, possibly empty, and the user's earlier clicks) into a float32
matrix [B, n_items], higher = better. Both evaluation protocols read that one matrix:

sampled       each example's saved candidate list (target + 99) gathered from it
              (``candidate_scores``), so the paper-protocol figures are the full scores' restriction;
full ranking  the target's rank among every item (``full_ranking_metrics``), history items not
              masked, keys recall/ndcg@5/10/20 as ``gensar evaluate --full-ranking``.

Both count tied scores tie-aware (the expectation over a random order of the tied items,
``gensar.metrics.tied_ranks``): BM25 and popularity tie often, and placing the target last among
its ties would understate them against the generative model, whose scores never tie.

Batches are scored one at a time, so nothing ever holds [n_examples, n_items].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
import torch

from gensar.data.prepared import PreparedData
from gensar.data.schema import REC
from gensar.embed.sasrec import SASRec
from gensar.embed.sasrec_checkpoint import load_sasrec
from gensar.embed.sasrec_eval import pad_histories
from gensar.errors import GensarError
from gensar.metrics import full_ranking_tied, summarize_tied, tied_ranks

if TYPE_CHECKING:
    from gensar.baselines.dense import ItemEmbeddings

BATCH_SIZE = 256


@dataclass(frozen=True)
class Request:
    query: str  # "" for a recommendation request
    # item rows (of data.items) the user clicked before, oldest first, both behaviors
    history: tuple[int, ...]


class Scorer(Protocol):
    name: str
    behaviors: tuple[str, ...]  # which behaviors it can rank ("rec", "search")

    def scores(self, requests: Sequence[Request]) -> np.ndarray:
        """float32 [B, n_items] for one batch; higher is better; -inf only where an item cannot be scored."""
        ...

    def add_items(self, data: PreparedData, start: int) -> None:
        """Rows ``start:`` of ``data.items`` joined the catalog (a living catalog, nothing retrained):
        score them from now on. ``data`` is the whole grown catalog; its events are unchanged."""
        ...


# ---- requests from prepared examples ---------------------------------------------------------
def requests_for(data: PreparedData, examples: pd.DataFrame) -> list[Request]:
    """One request per example row: its query ("" for rec) and the items of every event of the
    user strictly earlier than the target event (both behaviors, all of them, as SASRec's
    ``gensar`` protocol reads them; a scorer keeps as many of the newest as it uses), except the
    cold events, which no history holds (``gensar.data.cold``), and search twins
    (``gensar.data.twins``)."""
    index = data.item_index
    ev = data.events
    ev_user = ev["user_id"].to_numpy()
    ev_time = ev["timestamp"].to_numpy()
    skipped = data.cold_event_ids | data.twin_event_ids
    ev_items = [() if e in skipped else tuple(index[i] for i in items)
                for e, items in zip(ev["event_id"].tolist(), ev["items"], strict=True)]
    # events are sorted by (user, timestamp): each user's events form one contiguous slice
    starts: dict[str, int] = {}
    for pos, user in enumerate(ev_user):
        starts.setdefault(user, pos)
    out = []
    columns = (examples["user_id"], examples["event_id"], examples["behavior"], examples["query"])
    for user, event_id, behavior, query in zip(*columns, strict=True):
        target_pos = int(event_id)
        t = ev_time[target_pos]
        history: list[int] = []
        for pos in range(starts[user], target_pos):
            if ev_time[pos] < t:
                history.extend(ev_items[pos])
        out.append(Request("" if behavior == REC else str(query or ""), tuple(history)))
    return out


def example_targets(data: PreparedData, examples: pd.DataFrame) -> np.ndarray:
    """int64 [n] item row of each example's target."""
    index = data.item_index
    return np.array([index[t] for t in examples["target"]], dtype=np.int64)


# ---- the two protocols over one score matrix -------------------------------------------------
def candidate_scores(scorer: Scorer, requests: Sequence[Request], candidates: np.ndarray,
                     batch_size: int = BATCH_SIZE) -> np.ndarray:
    """float64 [n, C]: each request's full scores gathered at its candidate rows (-1 = padding -> -inf)."""
    if len(requests) != len(candidates):
        raise ValueError(f"{len(requests)} requests but {len(candidates)} candidate rows")
    out = np.full(candidates.shape, -np.inf)  # [n, C]
    for lo in range(0, len(requests), batch_size):
        full = scorer.scores(requests[lo : lo + batch_size])  # [B, n_items]
        out[lo : lo + batch_size] = _gather(full, candidates[lo : lo + batch_size])
    return out


def _gather(full: np.ndarray, cands: np.ndarray) -> np.ndarray:
    """full [B, n_items] at cands [B, C] (-1 = padding -> -inf)."""
    return np.where(cands >= 0, np.take_along_axis(full, np.maximum(cands, 0), axis=1), -np.inf)


def full_metrics(better: np.ndarray, ties: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """recall@5/10/20, ndcg@5/10/20 (tie-aware) and n of whole-catalog ranks (the rows of ``mask``)."""
    if mask is not None:
        better, ties = better[mask], ties[mask]
    return full_ranking_tied(better, ties) | {"n": len(better)}


def full_ranking_metrics(scorer: Scorer, data: PreparedData, examples: pd.DataFrame,
                         batch_size: int = BATCH_SIZE) -> dict[str, float]:
    """Whole-catalog recall/ndcg@5/10/20 (+ n) of ``examples``' targets under ``scorer``."""
    if examples.empty:
        raise GensarError("no examples to rank")
    return evaluate_scorer(scorer, data, examples, None, True, batch_size)[1]


def evaluate_scorer(scorer: Scorer, data: PreparedData, examples: pd.DataFrame, candidates: np.ndarray | None,
                    full_ranking: bool, batch_size: int = BATCH_SIZE) -> tuple[dict | None, dict | None]:
    """(sampled metrics over ``candidates`` or None, full-ranking metrics or None), scoring each
    batch once for both."""
    sampled, full = scorer_ranks(scorer, data, examples, candidates, full_ranking, batch_size)
    return (None if sampled is None else sampled_metrics(sampled),
            None if full is None else full_metrics(*full))


Ranks = tuple[np.ndarray, np.ndarray]  # (better [n], ties [n]), as gensar.metrics.tied_ranks


def scorer_ranks(scorer: Scorer, data: PreparedData, examples: pd.DataFrame, candidates: np.ndarray | None,
                 full_ranking: bool, batch_size: int = BATCH_SIZE) -> tuple[Ranks | None, Ranks | None]:
    """Tie-aware ranks of each example's target: (among ``candidates`` or None, among every item
    or None), scoring each batch once for both."""
    requests = requests_for(data, examples)
    targets = example_targets(data, examples)
    gathered = None if candidates is None else np.full(candidates.shape, -np.inf)  # [n, C]
    better, ties = np.empty(len(requests)), np.empty(len(requests))
    for lo in range(0, len(requests), batch_size):
        full = scorer.scores(requests[lo : lo + batch_size])  # [B, n_items]
        hi = lo + len(full)
        if gathered is not None:
            gathered[lo:hi] = _gather(full, candidates[lo:hi])
        if full_ranking:
            better[lo:hi], ties[lo:hi] = tied_ranks(full, targets[lo:hi])
    sampled = None
    if gathered is not None:
        sampled = tied_ranks(gathered, np.zeros(len(gathered), dtype=np.int64))  # target = column 0
    return sampled, ((better, ties) if full_ranking else None)


def sampled_metrics(ranks: Ranks, mask: np.ndarray | None = None) -> dict[str, float]:
    """hr@1/5/10, ndcg@5/10 (tie-aware) and n of candidate-list ranks (the rows of ``mask``)."""
    better, ties = ranks if mask is None else (ranks[0][mask], ranks[1][mask])
    return summarize_tied(better, ties) | {"n": len(better)}


# ---- construction ----------------------------------------------------------------------------
SCORERS = ("popularity", "bm25", "dense", "match-popularity", "content")


def build_scorer(name: str, data: PreparedData, cache_dir: Path | None = None,
                 texts: ItemEmbeddings | None = None) -> Scorer:
    """A fitted/indexed non-generative scorer; ``cache_dir`` caches the text item embeddings (dense,
    content); ``texts``: embeddings of ``data``'s items another text scorer already holds (shared)."""
    if name == "popularity":
        from gensar.baselines.popularity import PopularityScorer

        return PopularityScorer(data)
    if name == "bm25":
        from gensar.baselines.bm25 import BM25Scorer

        return BM25Scorer(data)
    if name in ("dense", "content"):
        from gensar.baselines.content import ContentScorer
        from gensar.baselines.dense import DenseScorer, ItemEmbeddings
        from gensar.embed.semantic import SemanticConfig

        texts = texts if texts is not None else ItemEmbeddings(data, SemanticConfig(), cache_dir)
        return DenseScorer(texts) if name == "dense" else ContentScorer(texts)
    if name == "match-popularity":
        from gensar.baselines.match_popularity import MatchPopularityScorer

        return MatchPopularityScorer(data)
    raise GensarError(f"unknown baseline '{name}' (known: {', '.join(SCORERS)})")


class SASRecScorer:
    """A trained SASRec over a request's history (newest ``max_len`` items); the query is ignored.

    Items added after training have no learned vector: they score the lowest logit of each row
    (no collaborative evidence yet, but a finite feature), and are skipped in histories."""

    name = "sasrec"
    behaviors: tuple[str, ...] = (REC,)

    def __init__(self, model: SASRec) -> None:
        self.model = model.eval()
        self.n_items = model.n_items  # the catalog SASRec was trained on
        self.added = 0  # items appended since

    @torch.no_grad()
    def scores(self, requests: Sequence[Request]) -> np.ndarray:
        histories = [[i for i in r.history if i < self.n_items] for r in requests]
        seq = torch.from_numpy(pad_histories(histories, self.model.cfg.max_len))  # [B, T]
        h = self.model(seq)[:, -1]  # [B, D] state after the newest item
        logits = self.model.item_logits(h).numpy().astype(np.float32, copy=False)  # [B, n_items]
        if not self.added:
            return logits
        cold = np.repeat(logits.min(axis=1, keepdims=True), self.added, axis=1)  # [B, added]
        return np.concatenate([logits, cold], axis=1)

    def add_items(self, data: PreparedData, start: int) -> None:
        self.added = len(data.items) - self.n_items


def load_sasrec_scorer(model_dir: Path, data: PreparedData) -> SASRecScorer:
    """The model saved by ``gensar sasrec DATA --out DIR`` (``DIR/model.pt``), checked against ``data``.

    With cold items (``gensar.data.cold``) SASRec was trained on the items before them: the cold
    items are then scored as items added since (each row's lowest logit)."""
    path = Path(model_dir) / "model.pt"
    if not path.is_file():
        raise GensarError(f"{path}: missing (a `gensar sasrec --out DIR` directory holds it)")
    trained = load_sasrec(path)
    if trained.model.n_items not in (len(data.items), data.trained_items):
        raise GensarError(f"{path}: trained on {trained.model.n_items} items, the data has {len(data.items)}")
    scorer = SASRecScorer(trained.model)
    if trained.model.n_items < len(data.items):
        scorer.add_items(data, trained.model.n_items)
    return scorer
