"""Content-based recommendation: items whose text is like the text of what the user clicked lately.

The score of an item is the cosine between its text embedding (MiniLM, the dense search baseline's
item embeddings) and the recency-weighted mean of the embeddings of the user's newest ``max_len``
clicked items (weight ``decay ** age``, age 0 for the newest). It needs no interactions of the item
itself, so it is the one recommender that can propose an item added to the catalog after training.
A user with no history gets 0 for every item.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gensar.baselines.dense import ItemEmbeddings, normalize
from gensar.baselines.scorer import Request
from gensar.data.prepared import PreparedData
from gensar.data.schema import REC

MAX_LEN = 10  # newest history items read (the prepared histories' default window)
DECAY = 0.7  # weight of the item one step older; 0.7 ** 9 ~ 0.04: the oldest of 10 still counts a little


class ContentScorer:
    name = "content"
    behaviors: tuple[str, ...] = (REC,)

    def __init__(self, embeddings: ItemEmbeddings, max_len: int = MAX_LEN, decay: float = DECAY) -> None:
        self.embeddings = embeddings
        self.max_len = max_len
        self.decay = decay

    @property
    def items(self) -> np.ndarray:
        return self.embeddings.matrix  # [N, d]

    def add_items(self, data: PreparedData, start: int) -> None:
        self.embeddings.add_items(data, start)

    def profiles(self, requests: Sequence[Request]) -> np.ndarray:
        """[B, d] unit-length history profile of each request (zeros without history)."""
        out = np.zeros((len(requests), self.items.shape[1]), dtype=np.float32)
        for b, r in enumerate(requests):
            newest = list(r.history[-self.max_len:])
            if newest:
                w = self.decay ** np.arange(len(newest) - 1, -1, -1, dtype=np.float32)  # oldest first
                out[b] = w @ self.items[newest]
        return normalize(out)

    def scores(self, requests: Sequence[Request]) -> np.ndarray:
        return self.profiles(requests) @ self.items.T  # [B, N]
