"""Data-parallel training under ``torchrun``: this process's rank, and the collectives the loop uses.

Every helper is a no-op (or the identity) for a single process, so the loop reads the same
with and without DDP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gensar.errors import GensarError


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a ``torchrun`` job (world_size 1 without one)."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_env(cls) -> DistEnv:
        return cls(
            int(os.environ.get("RANK", "0")),
            int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")),
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def gather_concat(mine: np.ndarray, env: DistEnv) -> np.ndarray:
    """Every rank's array, concatenated in rank order (``mine`` itself for one process)."""
    if not env.distributed:
        return mine
    import torch.distributed as dist

    parts: list[Any] = [None] * env.world_size
    dist.all_gather_object(parts, mine)
    return np.concatenate(parts)


def shard_report(seen: list[np.ndarray], env: DistEnv) -> dict[str, Any]:
    """Samples per rank this epoch and positions shared by two ranks (0 when shards are disjoint)."""
    import torch.distributed as dist

    mine = np.concatenate(seen) if seen else np.zeros(0, dtype=np.int64)
    parts: list[Any] = [None] * env.world_size
    dist.all_gather_object(parts, mine)
    every = np.concatenate(parts)
    return {"rank_samples": [len(p) for p in parts], "rank_overlap": int(len(every) - len(np.unique(every)))}


def mean_over_ranks(value: torch.Tensor, env: DistEnv) -> float:
    if env.distributed:
        import torch.distributed as dist

        value = value.clone().float()
        dist.all_reduce(value)
        value /= env.world_size
    return float(value.item())


def barrier(env: DistEnv) -> None:
    if env.distributed:
        import torch.distributed as dist

        dist.barrier()


def select_device(name: str, env: DistEnv) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise GensarError("train.device is 'cuda' but no CUDA device is available")
        torch.cuda.set_device(env.local_rank)
        return torch.device("cuda", env.local_rank)
    return torch.device("cpu")
