"""Boolean match + popularity: the classic e-commerce search engine as a baseline.

An item scores ``1 + popularity / (1 + max popularity)`` when its text contains every query
word (stop words and punctuation dropped, as the semi-synthetic queries are built), else
``popularity / (1 + max popularity)``: matching items first, each group by training clicks.
It uses no history and no learning. On semi-synthetic search, where a query is its target's
category words, this is close to a category lookup, which makes it a useful ceiling check.
Matches come from an inverted index (word -> items), so scoring a query costs its postings,
not a pass over the catalog.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce

import numpy as np
import pandas as pd

from gensar.baselines.popularity import item_popularity
from gensar.baselines.scorer import Request, candidate_scores
from gensar.data.prepared import PreparedData
from gensar.data.queries import clean_words, words
from gensar.data.schema import SEARCH


def query_matches(query: str, item_words: frozenset[str]) -> bool:
    """Every word of ``query`` occurs in the item (a query with no words matches nothing)."""
    q = clean_words(words(query))
    return bool(q) and all(w in item_words for w in q)


class MatchPopularityScorer:
    name = "match-popularity"
    behaviors: tuple[str, ...] = (SEARCH,)

    def __init__(self, data: PreparedData) -> None:
        pop = item_popularity(data)
        self.prior = pop / (1.0 + pop.max(initial=0.0))  # [n_items], in [0, 1)
        self.postings = _postings(data.item_texts, 0)  # word -> sorted rows

    def add_items(self, data: PreparedData, start: int) -> None:
        self.prior = np.concatenate([self.prior[:start], np.zeros(len(data.items) - start)])  # no clicks yet
        for w, rows in _postings(data.item_texts[start:], start).items():
            old = self.postings.get(w)
            self.postings[w] = rows if old is None else np.concatenate([old[old < start], rows])

    def matching_items(self, query: str) -> np.ndarray:
        """Sorted item rows whose text holds every word of ``query`` (none for a query without words)."""
        q = set(clean_words(words(query)))
        if not q or any(w not in self.postings for w in q):
            return np.zeros(0, dtype=np.int64)
        return reduce(lambda a, b: np.intersect1d(a, b, assume_unique=True),
                      sorted((self.postings[w] for w in q), key=len))

    def scores(self, requests: Sequence[Request]) -> np.ndarray:
        out = np.tile(self.prior, (len(requests), 1))  # [B, n_items] float64 until the end
        for row, r in enumerate(requests):
            out[row, self.matching_items(r.query)] += 1.0
        return out.astype(np.float32)


def _postings(texts: Sequence[str], first_row: int) -> dict[str, np.ndarray]:
    """word -> sorted rows (``first_row`` + position) of the texts holding it."""
    postings: dict[str, list[int]] = {}
    for row, text in enumerate(texts, start=first_row):
        for w in set(words(text)):
            postings.setdefault(w, []).append(row)
    return {w: np.asarray(rows, dtype=np.int64) for w, rows in postings.items()}


def match_popularity_scores(data: PreparedData, examples: pd.DataFrame, candidates: np.ndarray) -> np.ndarray:
    """Scores [n, C] for the search ``examples`` and their candidate matrix (-1 = padding)."""
    requests = [Request(str(q), ()) for q in examples["query"]]
    return candidate_scores(MatchPopularityScorer(data), requests, candidates)
