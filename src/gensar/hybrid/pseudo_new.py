"""New-item weights for a fusion whose valid split holds no new item: fitted on pseudo-new items.

A run trained without cold items has no new candidate on valid, so its fusion cannot learn what an
item added later (``gensar add-items``) is worth, and ranks it with the trained items' weights over
imputed model features: where text evidence is strong, new items then crowd the trained ones out of
the top 10 (benchmarks/README, the demo world). Here a seeded share of the trained items plays new
on the valid candidates, as an added item would appear: a candidate only the beam or SASRec
proposed is gone (they never propose a new item), the model features are imputed from the peers
(``features.impute_new``), the interaction features are those of an item without clicks, and the
``new`` flag is set. A fusion fitted on that gives the new-item weights; they are rewritten into
the real fusion's standardization, so the trained items' ranking is untouched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from gensar.hybrid.evaluate import Collected
from gensar.hybrid.features import NEW, SEEN, UNTRAINED, impute_new, is_model_source, model_proposed
from gensar.hybrid.fusion import LinearFusion, fit_fusion, target_columns

__all__ = ["pseudo_new", "pseudo_rows", "with_pseudo_new_weights"]

NO_CLICKS = {"popularity": np.zeros_like, SEEN: np.zeros_like,
             "match-popularity": np.floor}  # the prior part of match-popularity is the item's clicks


def pseudo_rows(valid: Collected, share: float, seed: int = 0) -> np.ndarray:
    """[N] bool over the item rows of ``valid``'s candidates: a seeded ``share`` of them."""
    return np.random.default_rng([seed, 0x9E3]).random(int(valid.cands.items.max(initial=-1)) + 1) < share


def pseudo_new(valid: Collected, names: Sequence[str], rows: np.ndarray) -> Collected | None:
    """``valid`` with the item ``rows`` [N] bool made new in every request, as described in the
    module doc; None when nothing could be (given candidates carry no proposal sources, so which
    ones a new item could have entered by is unknown)."""
    c = valid.cands
    if NEW not in names or c.source_ranks.shape[-1] == 0 or not c.valid.any():
        return None
    by_model = model_proposed(c.source_ranks, c.sources)
    text = (c.source_ranks[..., [not is_model_source(n) for n in c.sources]] >= 0).any(axis=-1)
    chosen = c.valid & rows[np.maximum(c.items, 0)]
    keep = c.valid & ~(chosen & ~text)  # a new item enters only through a text retriever
    new = chosen & keep
    if not new.any():
        return None
    x = c.features.copy()
    col = {name: i for i, name in enumerate(names)}
    x[..., col[NEW]] = new
    for name in UNTRAINED:
        if name in col:
            x[..., col[name]] = impute_new(x[..., col[name]], new, keep, by_model)
    for name, no_clicks in NO_CLICKS.items():
        if name in col:
            x[..., col[name]] = np.where(new, no_clicks(x[..., col[name]]), x[..., col[name]])
    x = np.where(keep[..., None], x, 0.0)
    targets = np.take_along_axis(c.items, np.maximum(valid.target_col, 0)[:, None], axis=1)[:, 0]
    target_col = np.where(valid.target_col >= 0, target_columns(np.where(keep, c.items, -1), targets), -1)
    cands = dataclasses.replace(c, items=np.where(keep, c.items, -1), features=x)
    return Collected(cands=cands, target_col=target_col)


def with_pseudo_new_weights(fusion: LinearFusion, names: Sequence[str], pseudo: Collected,
                            l2: float) -> LinearFusion:
    """``fusion`` with new-item weights fitted on ``pseudo``, in ``fusion``'s own standardization:
    a new candidate's score is the pseudo fit's, exactly; a trained one's is ``fusion``'s."""
    c = pseudo.cands
    fitted = fit_fusion(names, c.features, c.valid, pseudo.target_col, l2, split_new=True)
    if not fitted.new_weights:
        return fusion
    m, s = np.asarray(fusion.mean), np.asarray(fusion.std)
    m2, s2, w2 = np.asarray(fitted.mean), np.asarray(fitted.std), np.asarray(fitted.new_weights)
    # sum_f w2 (x - m2) / s2 = sum_f a z + offset, with z = (x - m) / s and a = w2 s / s2
    a = w2 * s / s2
    offset = float(np.sum(w2 * (m - m2) / s2))
    new = list(names).index(NEW)
    z_new = (1.0 - m[new]) / s[new]  # every new candidate's standardized flag
    a[new] += offset / z_new
    return dataclasses.replace(fusion, new_weights=tuple(a.tolist()))
