"""The generative model's two roles in hybrid retrieval: proposer (beam search) and scorer (exact)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from gensar.decode.beam import constrained_beam_search
from gensar.decode.score import identifier_log_probs
from gensar.decode.t5_decoder import T5BeamDecoder
from gensar.decode.t5_fused import T5Weights
from gensar.ids.trie import IdTrie


@dataclass(frozen=True)
class Proposal:
    """The catalog beam of a batch: item rows [B, K] best first (-1 pads), their exact scores, the
    encoded inputs (so scoring the other candidates does not run the encoder again), and the trie
    nodes and scores the beam kept after each step [B, D, beam] (``RankedItems.kept``)."""

    items: np.ndarray
    scores: np.ndarray
    encoded: T5BeamDecoder
    kept: np.ndarray
    kept_scores: np.ndarray


@dataclass
class GenerativeScorer:
    """``model`` in eval mode; per behavior the identifier tokens of every item [N, D] (-1 padded),
    the catalog trie of those identifiers and the forced prefix (the behavior token)."""

    model: torch.nn.Module
    pad_id: int
    codes: Mapping[str, np.ndarray]
    tries: Mapping[str, IdTrie]
    prefixes: Mapping[str, Sequence[int]]
    paths: Mapping[str, np.ndarray] = field(init=False)  # per behavior [N, D] trie nodes (``item_paths``)
    nodes: Mapping[str, torch.Tensor] = field(init=False)  # the same as tensors (``identifier_log_probs``)
    weights: T5Weights = field(init=False)  # the model is frozen here: its weights regrouped once

    def __post_init__(self) -> None:
        self._index_paths()
        with torch.no_grad():
            self.weights = T5Weights.of(self.model)

    @classmethod
    def from_codes(cls, model: torch.nn.Module, pad_id: int, codes: Mapping[str, np.ndarray],
                   prefixes: Mapping[str, Sequence[int]]) -> GenerativeScorer:
        tries = {b: IdTrie.build(c) for b, c in codes.items()}
        return cls(model=model, pad_id=pad_id, codes=codes, tries=tries, prefixes=prefixes)

    def add_items(self, codes: Mapping[str, np.ndarray]) -> None:
        """Append items (per behavior their identifier tokens [M, D'], -1 padded) and grow the tries:
        new items are proposed and scored like the trained ones, old rows and identifiers unchanged."""
        grown = {b: pad_rows([self.codes[b], codes[b]]) for b in self.codes}
        self.tries = {b: IdTrie.build(c) for b, c in grown.items()}  # rebuilt: nodes are stored level by level
        self._index_paths()
        self.codes = grown

    def _index_paths(self) -> None:
        self.nodes = {b: t.item_paths() for b, t in self.tries.items()}
        self.paths = {b: n.numpy() for b, n in self.nodes.items()}

    def propose(self, behavior: str, inputs: torch.Tensor, beam_size: int) -> Proposal:
        """The catalog beam of ``inputs`` [B, L] (``beam_size`` items per example)."""
        encoded = T5BeamDecoder(self.model, inputs, inputs != self.pad_id, weights=self.weights)
        ranked = constrained_beam_search(self.model, inputs, inputs != self.pad_id, self.tries[behavior],
                                         self.prefixes[behavior], beam_size=beam_size, decoder=encoded)
        return Proposal(ranked.items.numpy(), ranked.scores.numpy().astype(np.float64), encoded,
                        ranked.kept.numpy(), ranked.kept_scores.numpy().astype(np.float64))

    def score(self, behavior: str, inputs: torch.Tensor, candidates: np.ndarray, chunk: int = 64,
              known: Proposal | None = None) -> np.ndarray:
        """[B, C] exact ``log p(identifier | input)`` of each candidate (-inf where it is -1).

        ``known``: the beam of these inputs; its finished hypotheses (the same quantity) are copied
        instead of decoded again, and its encoded inputs are reused."""
        codes = torch.as_tensor(self.codes[behavior])
        if known is None:
            return self._decode(behavior, inputs, candidates, codes, chunk, None)
        out, hit = self.known_scores(known, candidates)
        todo = np.where(hit, -1, candidates)
        # decode only the columns that still hold an unscored candidate
        cols = np.flatnonzero((todo >= 0).any(axis=0))
        if len(cols) == 0:
            return out
        sub = self._decode(behavior, inputs, todo[:, cols], codes, chunk, known.encoded)
        out[:, cols] = np.where(todo[:, cols] >= 0, sub, out[:, cols])
        return out

    @staticmethod
    def known_scores(known: Proposal, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores [B, C], hit [B, C]): the beam's exact score of each candidate it proposed (hit),
        -inf elsewhere."""
        out = np.full(candidates.shape, -np.inf)
        match = (candidates[:, :, None] == known.items[:, None, :]) & (candidates >= 0)[:, :, None]  # [B, C, K]
        hit = match.any(axis=2)
        out[hit] = np.take_along_axis(known.scores, match.argmax(axis=2), axis=1)[hit]
        return out, hit

    def bound(self, behavior: str, known: Proposal, candidates: np.ndarray) -> np.ndarray:
        """[B, C] an upper bound of each candidate's exact score (``score``) from the beam's trace
        alone, no decoding; -inf at pads (and the exact score where the beam finished it).

        Let step j be the first at which the beam did not keep the candidate's prefix (its first j
        tokens were kept). That prefix then lost step j's top-k, so it scores at most the lowest
        score kept at step j, and at most its kept parent's score; later tokens only lower it."""
        paths = self.paths[behavior][np.maximum(candidates, 0)]  # [B, C, D] node after each step
        kept = known.kept[:, None]  # [B, 1, D, W]
        held = paths[..., None] == kept  # [B, C, D, W]
        partial = np.where(held, known.kept_scores[:, None], -np.inf).max(axis=3)  # [B, C, D] -inf: not kept
        out_at = np.isneginf(partial)
        first_out = np.where(out_at.any(axis=2), out_at.argmax(axis=2), paths.shape[2])  # [B, C]; D: never out
        depth = paths.shape[2]
        floors = np.concatenate([known.kept_scores[:, :, -1], np.full((len(candidates), 1), np.inf)], axis=1)
        parent = np.concatenate([np.zeros(partial.shape[:2] + (1,)), partial], axis=2)  # score before step j
        rows = np.arange(len(candidates))[:, None]
        bound = np.minimum(floors[rows, first_out],
                           np.take_along_axis(parent, first_out[..., None], axis=2)[..., 0])
        bound = np.where(first_out == depth, partial[..., -1] if depth else -np.inf, bound)
        return np.where(candidates >= 0, bound, -np.inf)

    def _decode(self, behavior: str, inputs: torch.Tensor, candidates: np.ndarray, codes: torch.Tensor,
                chunk: int, encoded: T5BeamDecoder | None) -> np.ndarray:
        out = np.full(candidates.shape, -np.inf)
        mask = inputs != self.pad_id
        if encoded is None:
            encoded = T5BeamDecoder(self.model, inputs, mask, weights=self.weights)
        for lo in range(0, candidates.shape[1], chunk):
            part = torch.as_tensor(candidates[:, lo : lo + chunk])
            if bool((part >= 0).any()):
                out[:, lo : lo + chunk] = identifier_log_probs(
                    self.model, inputs, mask, codes, part, self.prefixes[behavior], decoder=encoded,
                    prefix_nodes=self.nodes[behavior]).numpy()
        return out


def pad_rows(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Stack [n_i, D_i] int arrays of identifier tokens, right-padding every row with -1 to the widest."""
    width = max(p.shape[1] for p in parts)
    out = np.full((sum(len(p) for p in parts), width), -1, dtype=np.int64)
    row = 0
    for p in parts:
        out[row : row + len(p), : p.shape[1]] = p
        row += len(p)
    return out
