"""The generative model's two roles in hybrid retrieval: proposer (beam search) and scorer (exact)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gensar.decode.beam import constrained_beam_search
from gensar.decode.score import identifier_log_probs
from gensar.ids.trie import IdTrie


@dataclass
class GenerativeScorer:
    """``model`` in eval mode; per behavior the identifier tokens of every item [N, D] (-1 padded),
    the catalog trie of those identifiers and the forced prefix (the behavior token)."""

    model: torch.nn.Module
    pad_id: int
    codes: Mapping[str, np.ndarray]
    tries: Mapping[str, IdTrie]
    prefixes: Mapping[str, Sequence[int]]

    @classmethod
    def from_codes(cls, model: torch.nn.Module, pad_id: int, codes: Mapping[str, np.ndarray],
                   prefixes: Mapping[str, Sequence[int]]) -> GenerativeScorer:
        tries = {b: IdTrie.build(c) for b, c in codes.items()}
        return cls(model=model, pad_id=pad_id, codes=codes, tries=tries, prefixes=prefixes)

    def propose(self, behavior: str, inputs: torch.Tensor, beam_size: int) -> np.ndarray:
        """[B, beam_size] item rows of the catalog beam, best first (-1 pads)."""
        ranked = constrained_beam_search(self.model, inputs, inputs != self.pad_id, self.tries[behavior],
                                         self.prefixes[behavior], beam_size=beam_size)
        return ranked.items.numpy()

    def score(self, behavior: str, inputs: torch.Tensor, candidates: np.ndarray, chunk: int = 64) -> np.ndarray:
        """[B, C] exact ``log p(identifier | input)`` of each candidate (-inf where it is -1)."""
        codes = torch.as_tensor(self.codes[behavior])
        out = np.full(candidates.shape, -np.inf)
        mask = inputs != self.pad_id
        for lo in range(0, candidates.shape[1], chunk):
            part = torch.as_tensor(candidates[:, lo : lo + chunk])
            if bool((part >= 0).any()):
                out[:, lo : lo + chunk] = identifier_log_probs(self.model, inputs, mask, codes, part,
                                                               self.prefixes[behavior]).numpy()
        return out
