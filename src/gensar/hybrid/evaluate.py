"""Collecting hybrid candidates for prepared examples, fitting the fusion, measuring it.

Two protocols, as for the generative model (``gensar.eval.protocol``):

``full``     candidates = the union of every proposer's items over the whole catalog; a target no
             proposer found is not ranked. Metrics recall/ndcg@5/10/20.
``sampled``  candidates = each example's saved list (target + 99 negatives), every one scored.
             Metrics hr@1/5/10, ndcg@5/10.

Each protocol has its own fusion, fitted on that protocol's valid candidates. The valid figures
reported for a fitted fusion are ``folds``-fold cross-validated (each fold scored by weights fitted
on the other folds), so no valid figure is an in-sample fit; test is scored by the weights fitted
on the whole valid split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from gensar.baselines.scorer import Request, requests_for
from gensar.data.prepared import PreparedData
from gensar.eval.candidates import candidate_matrix, eval_examples
from gensar.eval.groups import target_groups
from gensar.hybrid.fusion import LinearFusion, fit_fusion, target_columns
from gensar.hybrid.ranker import Candidates, HybridRanker
from gensar.metrics import full_ranking_tied, summarize_tied, tied_ranks
from gensar.model.scoring import pad_batch
from gensar.model.encoder import SampleEncoder
from gensar.model.samples import example_samples

HybridProtocol = Literal["full", "sampled"]
PROTOCOLS: tuple[HybridProtocol, ...] = ("full", "sampled")


@dataclass(frozen=True)
class Collected:
    """Every example of one split and behavior: candidates [n, C], features [n, C, F], target column
    [n], and with cold items the examples' cold and warm groups (``gensar.eval.groups``)."""

    cands: Candidates
    target_col: np.ndarray
    groups: Mapping[str, np.ndarray] = field(default_factory=dict)


def spread(examples, n: int):
    """``n`` evenly spaced rows of ``examples`` (all when ``n`` is 0 or covers them): users are
    contiguous in example order, so a prefix would be a few users' examples."""
    if n <= 0 or n >= len(examples):
        return examples
    return examples.iloc[np.linspace(0, len(examples) - 1, n).round().astype(int)]


def collect(ranker: HybridRanker, encoder: SampleEncoder, pad_id: int, data: PreparedData, split: str,
            behavior: str, protocol: HybridProtocol, max_examples: int = 0,
            progress: bool = False, subset: int = 0, extra_beams: Sequence[int] = ()) -> Collected | None:
    """Candidates of the examples of a split (the first ``max_examples``, then ``subset`` of them
    spread); ``extra_beams`` as ``HybridRanker.candidates``."""
    examples = spread(eval_examples(data, split, behavior, max_examples or None), subset)
    if examples.empty:
        return None
    samples = example_samples(examples)
    requests = requests_for(data, examples)
    given = candidate_matrix(data, examples) if protocol == "sampled" else None
    targets = np.array([data.item_index[t] for t in examples["target"]], dtype=np.int64)
    parts: list[Candidates] = []
    step = ranker.cfg.batch_size
    bar = tqdm(total=len(samples), desc=f"hybrid {protocol} {split} {behavior}", disable=not progress, leave=False)
    for lo in range(0, len(samples), step):
        inputs = pad_batch([encoder.input(s) for s in samples[lo : lo + step]], pad_id)
        parts.append(ranker.candidates(behavior, requests[lo : lo + step], inputs,
                                       None if given is None else given[lo : lo + step], extra_beams))
        bar.update(len(inputs))
    bar.close()
    cands = _concat(parts)
    return Collected(cands=cands, target_col=target_columns(cands.items, targets),
                     groups=target_groups(data, examples))


def single_requests(encoder: SampleEncoder, pad_id: int, data: PreparedData, split: str, behavior: str,
                    n: int) -> list[tuple[torch.Tensor, Request]]:
    """``n`` examples of a split spread over it, each as one request: its rendered input [1, L] and
    its ``Request`` (what ``gensar.hybrid.latency`` times)."""
    examples = spread(eval_examples(data, split, behavior), n)
    samples = example_samples(examples)
    return [(pad_batch([encoder.input(s)], pad_id), r)
            for s, r in zip(samples, requests_for(data, examples), strict=True)]


def _concat(parts: Sequence[Candidates]) -> Candidates:
    width = max(p.items.shape[1] for p in parts)
    items = np.concatenate([np.pad(p.items, ((0, 0), (0, width - p.items.shape[1])), constant_values=-1)
                            for p in parts])
    pinned = np.concatenate([np.pad(p.pinned, ((0, 0), (0, width - p.items.shape[1]))) for p in parts])
    feats = np.concatenate([np.pad(p.features, ((0, 0), (0, width - p.items.shape[1]), (0, 0)))
                            for p in parts])
    source_ranks = np.concatenate([np.pad(p.source_ranks, ((0, 0), (0, width - p.items.shape[1]), (0, 0)),
                                          constant_values=-1) for p in parts])
    return Candidates(items=items, features=feats, pinned=pinned, source_ranks=source_ranks,
                      sources=parts[0].sources)


Ranks = tuple[np.ndarray, np.ndarray]  # (better [n], ties [n]) as gensar.metrics.tied_ranks


def ranks(scores: np.ndarray, target_col: np.ndarray) -> Ranks:
    """Tie-aware ranks of each target among its candidates' scores [n, C]; not ranked when absent."""
    found = target_col >= 0
    better, ties = np.full(len(target_col), np.inf), np.zeros(len(target_col))
    if found.any():
        better[found], ties[found] = tied_ranks(scores[found], target_col[found])
    return better, ties


def protocol_metrics(r: Ranks, protocol: HybridProtocol, mask: np.ndarray | None = None) -> dict[str, float]:
    """The protocol's metrics of ranks ``r`` (of the rows of ``mask``)."""
    if mask is not None:
        r = (r[0][mask], r[1][mask])
    return summarize_tied(*r) if protocol == "sampled" else full_ranking_tied(*r)


def fit(names: Sequence[str], valid: Collected, l2: float, split_new: bool) -> LinearFusion:
    c = valid.cands
    return fit_fusion(names, c.features, c.valid, valid.target_col, l2, split_new)


def cross_validated_ranks(names: Sequence[str], valid: Collected, l2: float, folds: int,
                          split_new: bool) -> Ranks:
    """Ranks of the valid examples, each fold scored by a fusion fitted on the other folds."""
    n = len(valid.target_col)
    fold_of = np.arange(n) % folds  # examples are in example-id order: interleave, no seed needed
    better, ties = np.full(n, np.inf), np.zeros(n)
    c = valid.cands
    for f in range(folds):
        test, train = fold_of == f, fold_of != f
        if not (valid.target_col[train] >= 0).any():
            continue
        fusion = fit_fusion(names, c.features[train], c.valid[train], valid.target_col[train], l2, split_new)
        better[test], ties[test] = ranks(fusion.score(c.features[test], c.valid[test]), valid.target_col[test])
    return better, ties


def feature_ranks(collected: Collected, column: int) -> Ranks:
    """Ranks by one feature alone (e.g. the generative log-probability), within the same candidates."""
    c = collected.cands
    return ranks(np.where(c.valid, c.features[..., column], -np.inf), collected.target_col)
