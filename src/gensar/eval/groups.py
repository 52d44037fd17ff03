"""Cold and warm targets, reported beside all of them (``gensar prepare --cold-items``).

With cold items (``gensar.data.cold``) every evaluator also measures the valid/test examples whose
target is a cold item (``rec_cold``, ``search_cold``) and the others (``rec_warm``,
``search_warm``), from the very ranks it measured all of them with: same examples, candidates and
metric keys, and the two groups' ``n`` add up to the whole's. Without cold items nothing is added,
so every metrics file keeps its shape.

A group without examples is ``{"n": 0}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from gensar.data.prepared import PreparedData

__all__ = ["COLD", "GROUPS", "WARM", "Groups", "grouped", "group_key", "target_groups"]

COLD, WARM = "cold", "warm"
GROUPS = (COLD, WARM)
Groups = Mapping[str, np.ndarray]  # group name -> bool [n_examples]


def group_key(behavior: str, group: str) -> str:
    """The metrics key of a behavior's group: ``rec_cold``."""
    return f"{behavior}_{group}"


def target_groups(data: PreparedData, examples: pd.DataFrame) -> dict[str, np.ndarray]:
    """``{"cold": mask, "warm": mask}`` over ``examples``' rows by whether the target is a cold
    item; ``{}`` when the data has no cold items."""
    if not data.cold_items:
        return {}
    cold = examples["target"].isin(set(data.cold_items)).to_numpy()
    return {COLD: cold, WARM: ~cold}


def grouped(behavior: str, groups: Groups, metrics: Callable[[np.ndarray | None], dict]) -> dict[str, dict]:
    """``{behavior: metrics(None), behavior_cold: metrics(cold mask), behavior_warm: ...}``:
    ``metrics(mask)`` measures the rows ``mask`` selects (None: every row)."""
    out = {behavior: metrics(None)}
    for name, mask in groups.items():
        out[group_key(behavior, name)] = metrics(mask) if mask.any() else {"n": 0}
    return out
