"""Serving time of each whole-catalog plan, as a multiple of the generative beam's.

A bound on the plan's serving time (``hybrid.max_latency_ratio``, ``gensar.hybrid.plan``) needs
each plan's time on this machine: what the dense retriever's query encoding, each proposal and
each exactly scored candidate cost depends on the model's shape and the hardware, so it is measured,
not modelled. Each valid request is answered alone (as a server answers one client) by the
generative beam (``hybrid.beam_size`` wide; rendering the input is left out of both sides) and by
every plan with the fusion it would serve with, the plans in a rotating order so that machine noise
falls on all alike; a plan's ratio is the median over requests of its time over the beam's time
for the same request. Queries are encoded anew for every plan (the dense retriever's cache is
cleared), as for a query the server never saw.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from gensar.baselines.dense import DenseScorer
from gensar.baselines.scorer import Request
from gensar.hybrid.fusion import LinearFusion
from gensar.hybrid.ranker import HybridRanker

__all__ = ["plan_latencies"]

TOP_K = 10  # answers per timed request (serving's default k)


def plan_latencies(ranker: HybridRanker, behavior: str, fusions: Mapping[str, LinearFusion],
                   requests: Sequence[tuple[torch.Tensor, Request]]) -> dict[str, float]:
    """``{label: median time ratio}`` of each plan's fusion in ``fusions`` over ``requests`` (each a
    rendered input [1, L] and its request), against the generative beam alone."""
    rankers = [(label, ranker.with_fusions({behavior: fusion})) for label, fusion in fusions.items()]
    dense = [s for s in ranker.scorers.values() if isinstance(s, DenseScorer)]
    ratios: dict[str, list[float]] = {label: [] for label in fusions}
    with torch.inference_mode():
        for i, (inputs, request) in enumerate([requests[0], *requests]):  # the first twice: a warm-up
            start = time.perf_counter()
            ranker.generative.propose(behavior, inputs, ranker.cfg.beam_size)
            beam = time.perf_counter() - start
            shift = i % len(rankers)
            for label, plan_ranker in rankers[shift:] + rankers[:shift]:
                for scorer in dense:
                    scorer.forget_queries()
                start = time.perf_counter()
                cands = plan_ranker.top_candidates(behavior, [request], inputs, TOP_K)
                plan_ranker.rank(behavior, cands, TOP_K)
                if i:
                    ratios[label].append((time.perf_counter() - start) / beam)
    return {label: float(np.median(r)) for label, r in ratios.items()}
