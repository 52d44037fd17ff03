"""Process-wide runtime settings: threads (torch's and numpy's BLAS) and seeding."""

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
    single_thread_blas()
    return n


def single_thread_blas() -> None:
    """Run numpy's BLAS (OpenBLAS) in the calling thread, unless $OPENBLAS_NUM_THREADS says otherwise.

    A request that alternates numpy and torch operations (the hybrid: retriever scores in numpy,
    the model in torch) hands the cores back and forth between OpenBLAS's thread pool and torch's
    OpenMP pool, and each pool's threads spin a while after their work, so each waits out the
    other's: on 2 cores a hybrid search took 88-116 ms with both pools at 2 threads and 17 ms with
    BLAS at 1 (benchmarks/README, "Two thread pools"). numpy's products here are small.
    """
    if "OPENBLAS_NUM_THREADS" in os.environ:
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # for a BLAS library loaded later (and child processes)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")  # the ones already loaded


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
