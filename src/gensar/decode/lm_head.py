"""The decoder's vocabulary projection, evaluated without materialising [rows, vocab] logits.

Beam search needs, per row, the log-normaliser over the whole vocabulary and the logits of a few
tokens (the trie's allowed children, or the row's best tokens). Writing the full [rows, V] logits
to memory and reading them back several times (``logsumexp`` is max, subtract, exp, sum) is what
dominates a decoding step on CPU; projecting onto vocabulary chunks of a few thousand tokens and
reducing each chunk while it is still in cache computes the same numbers several times faster.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

BLOCK_ELEMENTS = 1 << 20  # logits per block (4 MiB in float32): stays in cache while it is reduced


@dataclass(frozen=True)
class OutputHead:
    weight: torch.Tensor  # [V, d]
    bias: torch.Tensor | None  # [V]
    block_elements: int = BLOCK_ELEMENTS

    @property
    def vocab_size(self) -> int:
        return int(self.weight.shape[0])

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Full logits [R, V] (reference path, for tests)."""
        return F.linear(hidden, self.weight, self.bias)

    def logsumexp(self, hidden: torch.Tensor) -> torch.Tensor:
        """log sum_v exp(logit[r, v]) over the whole vocabulary: [R]."""
        rows = hidden.shape[0]
        # Vocabulary chunks sized so that a [R, chunk] block fits in cache (power of two, 256..8192);
        # one reused buffer, reduced in place, so no chunk touches fresh memory.
        chunk = 1 << max(8, min(13, (self.block_elements // max(rows, 1)).bit_length() - 1))
        buf = hidden.new_empty(rows * min(chunk, self.vocab_size))
        maxes, sums = [], []
        for c0 in range(0, self.vocab_size, chunk):
            c1 = min(c0 + chunk, self.vocab_size)
            block = buf[: rows * (c1 - c0)].view(rows, c1 - c0)
            torch.mm(hidden, self.weight[c0:c1].t(), out=block)  # [R, c]
            if self.bias is not None:
                block.add_(self.bias[c0:c1])
            m = block.amax(dim=1, keepdim=True)  # [R, 1]
            maxes.append(m)
            sums.append(block.sub_(m).exp_().sum(dim=1, keepdim=True))
        m, s = torch.cat(maxes, dim=1), torch.cat(sums, dim=1)  # [R, n_chunks]
        top = m.amax(dim=1, keepdim=True)  # [R, 1]
        return (top + torch.log((s * torch.exp(m - top)).sum(dim=1, keepdim=True))).squeeze(1)  # [R]

    def logits_at(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """logit[r, tokens[r, c]]: [R, C]; slots with token -1 get 0 (callers mask them)."""
        # Rows at one step draw their allowed tokens from a small set (one codebook level), so
        # project once onto the union of those tokens and gather.
        union, where = torch.unique(tokens.clamp(min=0), return_inverse=True)  # [U], [R, C]
        bias = None if self.bias is None else self.bias[union]
        sub = F.linear(hidden, self.weight[union], bias)  # [R, U]
        return sub.gather(1, where).masked_fill(tokens < 0, 0.0)  # [R, C]

    def topk(self, hidden: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Best ``k`` logits per row and their tokens ([R, k] each, best first), and the logsumexp [R]."""
        logits = self.logits(hidden)  # [R, V]; a full top-k needs every logit anyway
        best, tokens = logits.topk(k, dim=1)  # [R, k]
        rows = max(1, self.block_elements // self.vocab_size)  # row blocks that fit in cache
        lse = torch.cat([torch.logsumexp(block, dim=1) for block in logits.split(rows)])  # [R]
        return best, tokens, lse
