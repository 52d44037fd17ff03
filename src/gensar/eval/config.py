"""``EvalConfig``: how a trained run is evaluated (the ``eval:`` section of a pipeline config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gensar.config import require


@dataclass(frozen=True)
class EvalConfig:
    splits: tuple[str, ...] = ("valid", "test")
    method: Literal["beam", "likelihood"] = "beam"  # constrained beam search, or exact candidate likelihood
    beam_size: int = 30
    batch_size: int = 32
    max_examples: int = 0  # per split and behavior; 0 = all
    full_ranking: bool = True  # also rank the whole catalog (recall/ndcg@5/10/20)
    baselines: bool = True  # the pipeline also measures each retriever alone (SASRec, BM25, dense, ...)

    def validate(self) -> None:
        require(all(s in ("valid", "test") for s in self.splits), "eval.splits", "each must be valid or test")
        require(self.beam_size >= 10, "eval.beam_size", "must be >= 10 (metrics go up to @10)")
        require(self.batch_size >= 1, "eval.batch_size", "must be >= 1")
        require(self.max_examples >= 0, "eval.max_examples", "must be >= 0")
