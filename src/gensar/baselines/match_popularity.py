"""Boolean match + popularity: the classic e-commerce search engine as a baseline.

A candidate scores ``1 + popularity / (1 + max popularity)`` when its text contains every query
word (stop words and punctuation dropped, as the semi-synthetic queries are built), else
``popularity / (1 + max popularity)``: matching items first, each group by training clicks.
It uses no history and no learning. On semi-synthetic search, where a query is its target's
category words, this is close to a category lookup, which makes it a useful ceiling check.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gensar.baselines.popularity import item_popularity
from gensar.data.prepared import PreparedData
from gensar.data.queries import clean_words, words


def query_matches(query: str, item_words: frozenset[str]) -> bool:
    """Every word of ``query`` occurs in the item (a query with no words matches nothing)."""
    q = clean_words(words(query))
    return bool(q) and all(w in item_words for w in q)


def match_popularity_scores(data: PreparedData, examples: pd.DataFrame, candidates: np.ndarray) -> np.ndarray:
    """Scores [n, C] for the search ``examples`` and their candidate matrix (-1 = padding)."""
    pop = item_popularity(data)
    prior = pop / (1.0 + pop.max(initial=0.0))  # [n_items], in [0, 1)
    item_words = [frozenset(words(t)) for t in data.item_texts]
    scores = np.full(candidates.shape, -np.inf)  # [n, C]
    for row, query in enumerate(examples["query"]):
        for col, item in enumerate(candidates[row]):
            if item >= 0:
                scores[row, col] = float(query_matches(query, item_words[item])) + prior[item]
    return scores
