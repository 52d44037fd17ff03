"""A deterministic, model-free engine: popularity plus word overlap with the history and the query.

It exists so the API, the web page and the load generator can be exercised in milliseconds and
without a trained model (``gensar serve RUN_DIR --engine fake`` needs only ``RUN_DIR/data``). It is
not a baseline to report: ``gensar baseline`` has the real ones.

Scores, with ``W_i`` the words of item ``i`` (title, category path and brand, stop words removed,
``gensar.data.queries.clean_words``):

* profile of a history: ``p[w] = sum over events e containing w of 0.5 ** age(e)``, age 0 for the
  newest event; an event's words are its query's and its items'.
* ``affinity_i = sum_{w in W_i} p[w]``; ``popularity_i = log1p(count_i) / log1p(max count)`` in [0, 1],
  ``count_i`` = events of the prepared data naming item ``i``.
* recommend: ``affinity_i + 0.01 * popularity_i`` (always ``k`` items: popularity fills in).
* search: ``|Q ∩ W_i| + 0.1 * affinity_i / (1 + max_j affinity_j) + 0.01 * popularity_i`` for items
  sharing at least one word with the query ``Q``; no match, no result.
* suggest: over the distinct queries of the prepared search log,
  ``sum_{w in q} p[w] / |q| + 0.01 * log1p(count_q) / log1p(max count)``.

Ties are broken by the lower item index (or the earlier query in first-seen order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gensar.data.prepared import PreparedData
from gensar.data.queries import clean_words, words
from gensar.data.schema import SEARCH, item_text
from gensar.ids.item_ids import IdMaps
from gensar.serve.engine import History, RankedItem, RankedQuery

POPULARITY_WEIGHT = 0.01
PERSONAL_WEIGHT = 0.1
RECENCY_DECAY = 0.5


class FakeEngine:
    name = "fake"

    def __init__(self, items: pd.DataFrame, events: pd.DataFrame) -> None:
        self._events = events
        self._build(items)

    def add_items(self, data: PreparedData, start: int, ids: IdMaps) -> None:
        self._build(data.items)  # word tables rebuilt over the grown catalog; new items have no clicks

    def _build(self, items: pd.DataFrame) -> None:
        events = self._events
        self.item_ids: list[str] = items["item_id"].tolist()
        self.num_items = len(self.item_ids)
        self._index = {item: i for i, item in enumerate(self.item_ids)}
        self._vocab: dict[str, int] = {}
        item_words = [
            self._word_ids(item_text(r.title, list(r.categories), r.brand, ""), grow=True)
            for r in items.itertuples(index=False)
        ]
        self._item_words = item_words
        self._items = _binary_rows(item_words, len(self._vocab))  # [N, V] csr
        counts = np.zeros(self.num_items, dtype=np.float64)
        query_counts: dict[str, int] = {}
        for behavior, query, names in zip(events["behavior"], events["query"], events["items"], strict=True):
            for name in names:
                if name in self._index:
                    counts[self._index[name]] += 1
            if behavior == SEARCH and query.strip():
                query_counts[query] = query_counts.get(query, 0) + 1
        self._popularity = np.log1p(counts) / max(np.log1p(counts.max(initial=0.0)), 1e-12)  # [N]
        # Queries keep first-seen order; those without a known word can never be suggested usefully.
        self.queries = [q for q in query_counts if self._word_ids(q)]
        query_words = [self._word_ids(q) for q in self.queries]
        self._queries = _binary_rows(query_words, len(self._vocab))  # [NQ, V] csr
        self._query_len = np.array([max(len(w), 1) for w in query_words], dtype=np.float64)  # [NQ]
        qc = np.array([query_counts[q] for q in self.queries], dtype=np.float64)
        self._query_prior = np.log1p(qc) / max(np.log1p(qc.max(initial=0.0)), 1e-12)  # [NQ]

    # ---- Engine ------------------------------------------------------------------------
    def recommend(self, histories: Sequence[History], k: int) -> list[list[RankedItem]]:
        out = []
        for history in histories:
            score = self._affinity(history) + POPULARITY_WEIGHT * self._popularity  # [N]
            out.append([RankedItem(int(i), float(score[i])) for i in _top(score, k)])
        return out

    def search(self, queries: Sequence[str], histories: Sequence[History], k: int) -> list[list[RankedItem]]:
        if len(queries) != len(histories):
            raise ValueError(f"{len(queries)} queries but {len(histories)} histories")
        out = []
        for query, history in zip(queries, histories, strict=True):
            q = np.zeros(len(self._vocab))
            q[self._word_ids(query)] = 1.0
            match = self._items @ q  # [N] number of query words in each item
            affinity = self._affinity(history)
            score = match + PERSONAL_WEIGHT * affinity / (1.0 + affinity.max(initial=0.0)) \
                + POPULARITY_WEIGHT * self._popularity
            hits = np.flatnonzero(match > 0)
            out.append([RankedItem(int(hits[j]), float(score[hits[j]])) for j in _top(score[hits], k)])
        return out

    def suggest_queries(self, histories: Sequence[History], k: int) -> list[list[RankedQuery]]:
        out = []
        for history in histories:
            score = (self._queries @ self._profile(history)) / self._query_len \
                + POPULARITY_WEIGHT * self._query_prior  # [NQ]
            out.append([RankedQuery(self.queries[j], float(score[j])) for j in _top(score, k)])
        return out

    # ---- pieces ------------------------------------------------------------------------
    def _word_ids(self, text: str, grow: bool = False) -> list[int]:
        ids = []
        for w in clean_words(words(text)):
            if w not in self._vocab:
                if not grow:
                    continue
                self._vocab[w] = len(self._vocab)
            ids.append(self._vocab[w])
        return ids

    def _profile(self, history: History) -> np.ndarray:
        """p[w] of the module doc: [V]."""
        p = np.zeros(len(self._vocab))
        for age, event in enumerate(reversed(history)):
            found = set(self._word_ids(event.query))
            for name in event.items:
                i = self._index.get(name)
                if i is not None:
                    found.update(self._item_words[i])
            p[list(found)] += RECENCY_DECAY ** age
        return p

    def _affinity(self, history: History) -> np.ndarray:
        return self._items @ self._profile(history)  # [N]


def _binary_rows(rows: list[list[int]], width: int) -> sp.csr_matrix:
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.array([j for r in rows for j in r], dtype=np.int64)
    return sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(rows), width))


def _top(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores, best first, ties to the lower index."""
    order = np.lexsort((np.arange(len(score)), -score))
    return order[:k]
