"""Process-wide runtime settings: torch threads and seeding."""

from __future__ import annotations

import os
import random

import numpy as np


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: explicit value, else $GENSAR_THREADS, else all cores.

    Two torch jobs on a 2-core machine each using all cores run ~10x slower than one job,
    so callers that run in parallel must pass a share of the cores.
    """
    import torch

    n = threads or int(os.environ.get("GENSAR_THREADS", "0")) or (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
