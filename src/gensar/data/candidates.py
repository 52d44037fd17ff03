"""Evaluation candidates: the target first, then ``num_negatives`` items the user never touched.

* rec: negatives are drawn uniformly from the items the user never interacted with (any behavior,
  the whole log, so later and evaluation events count too).
* search: negatives are the items BM25 ranks highest for the example's query over the item texts
  (``schema.item_texts``), skipping the target and everything the user interacted with. These are
  hard negatives: they share the query's category words. When fewer than ``num_negatives`` such
  items have a positive BM25 score, the rest are drawn uniformly like rec negatives (items with a
  zero score are tied; a random draw is the fair tie-break).

Both are seeded and reproducible. BM25 runs once per distinct query, all queries in one batched
``bm25s`` call. If the catalog minus a user's items has fewer than ``num_negatives`` items, the
list holds all of them; ``CandidateStats`` counts such short lists for the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import bm25s
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gensar.config import require
from gensar.data.schema import REC, SEARCH, item_texts


@dataclass(frozen=True)
class BM25Config:
    """BM25 scoring of search negatives (bm25s parameters)."""

    k1: float = 1.5
    b: float = 0.75
    method: Literal["robertson", "lucene", "bm25l", "bm25+", "atire"] = "lucene"

    def validate(self) -> None:
        require(self.k1 >= 0, "bm25.k1", "must be >= 0")
        require(0 <= self.b <= 1, "bm25.b", "must be in [0, 1]")


@dataclass(frozen=True)
class CandidateStats:
    num_negatives: int
    lists: int
    short_lists: int  # lists with fewer than num_negatives negatives (small catalog)
    min_negatives: int
    search_random_fill: int  # search lists topped up with random items (too few BM25 matches)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def user_item_index(events: pd.DataFrame, item_index: dict[str, int]) -> dict[str, np.ndarray]:
    """user_id -> sorted item indices of every item the user interacted with."""
    out: dict[str, set[int]] = {}
    for user, items in zip(events["user_id"], events["items"], strict=True):
        out.setdefault(user, set()).update(item_index[i] for i in items)
    return {u: np.fromiter(sorted(s), dtype=np.int64, count=len(s)) for u, s in out.items()}


def sample_negatives(rng: np.random.Generator, blocked: np.ndarray, n_blocked: int, k: int) -> np.ndarray:
    """``min(k, available)`` distinct item indices where ``blocked`` is False, in random order.

    ``blocked`` is a (n_items,) bool mask with ``n_blocked`` True entries.
    """
    n_items = len(blocked)
    if n_items - n_blocked <= k:
        return rng.permutation(np.flatnonzero(~blocked))
    # Rejection sampling: draw a few more than needed, drop blocked ones; retry on a rare shortfall.
    while True:
        draw = rng.choice(n_items, size=min(n_items, k + n_blocked + 8), replace=False)
        draw = draw[~blocked[draw]]
        if len(draw) >= k:
            return draw[:k]


class BM25Index:
    """A bm25s index over item texts; ``retrieve`` ranks item indices for many queries at once."""

    def __init__(self, texts: list[str], cfg: BM25Config) -> None:
        self.n_items = len(texts)
        self.retriever = bm25s.BM25(k1=cfg.k1, b=cfg.b, method=cfg.method)
        corpus = bm25s.tokenize(texts, stopwords="en", show_progress=False)
        self.retriever.index(corpus, show_progress=False)

    def retrieve(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` item indices and scores per query: two (len(queries), k) arrays, best first."""
        k = min(k, self.n_items)
        tokens = bm25s.tokenize(queries, stopwords="en", return_ids=False, show_progress=False)
        docs, scores = self.retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return docs.astype(np.int64), scores


def build_candidates(
    examples: pd.DataFrame,
    events: pd.DataFrame,
    items: pd.DataFrame,
    num_negatives: int = 99,
    seed: int = 0,
    bm25: BM25Config = BM25Config(),  # frozen, so a shared default is safe
    progress: bool = False,
) -> tuple[pd.DataFrame, CandidateStats]:
    """Candidate lists for every valid/test example: a (example_id, candidates) table and stats."""
    item_ids = items["item_id"].tolist()
    item_index = {it: i for i, it in enumerate(item_ids)}
    n_items = len(item_ids)
    seen = user_item_index(events, item_index)
    evals = examples[examples["split"] != "train"]

    # Rank items for every distinct search query in one batched BM25 call. Depth: enough for the
    # negatives plus most users' own items; queries that run short are re-ranked over the catalog.
    search = evals[evals["behavior"] == SEARCH]
    ranked: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if len(search):
        index = BM25Index(item_texts(items), bm25)
        queries = sorted(set(search["query"]))
        n_seen = np.array([len(seen[u]) for u in search["user_id"]])
        depth = num_negatives + int(np.percentile(n_seen, 99)) + 1
        docs, scores = index.retrieve(queries, depth)
        ranked = {q: (docs[i], scores[i]) for i, q in enumerate(queries)}
        # A list of depth d keeps >= d - |seen| unseen items: short only when |seen| + negatives >= d.
        depth = docs.shape[1]
        need_full = set()
        if depth < n_items:
            need_full = {q for q, u in zip(search["query"], search["user_id"], strict=True)
                         if len(seen[u]) + num_negatives >= depth}
        if need_full:
            full = sorted(need_full)
            docs, scores = index.retrieve(full, n_items)
            ranked.update({q: (docs[i], scores[i]) for i, q in enumerate(full)})

    rng = np.random.default_rng([seed, 0xCA4D])
    blocked = np.zeros(n_items, dtype=bool)  # scratch mask: the current user's items (+ BM25 hits)
    rows, short, fill, min_neg = [], 0, 0, num_negatives
    columns = [evals[c].tolist() for c in ("example_id", "user_id", "behavior", "query", "target")]
    for ex_id, user, behavior, query, target in tqdm(
        zip(*columns, strict=True), total=len(evals), desc="candidates", disable=not progress
    ):
        exclude = seen[user]  # includes the target
        blocked[exclude] = True
        if behavior == REC:
            neg = sample_negatives(rng, blocked, len(exclude), num_negatives)
        else:
            docs, scores = ranked[query]
            neg = docs[(scores > 0) & ~blocked[docs]][:num_negatives]
            if len(neg) < num_negatives:
                fill += 1
                blocked[neg] = True
                rest = sample_negatives(rng, blocked, len(exclude) + len(neg), num_negatives - len(neg))
                blocked[neg] = False
                neg = np.concatenate([neg, rest])
        blocked[exclude] = False
        short += len(neg) < num_negatives
        min_neg = min(min_neg, len(neg))
        rows.append((ex_id, [target] + [item_ids[j] for j in neg.tolist()]))
    table = pd.DataFrame(rows, columns=["example_id", "candidates"])
    table["example_id"] = table["example_id"].astype(np.int64)
    stats = CandidateStats(num_negatives, len(rows), short, min_neg if rows else 0, fill)
    return table, stats
