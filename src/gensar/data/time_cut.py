"""The older part of a log: each user's first events, and the catalog those events name.

``gensar prepare --set history_fraction=F`` keeps each user's first ``ceil(F * n)`` events (of their
n, in time order) and only the items those events name, as if the log had been exported earlier.
With the full log it is the setting of a refresh benchmark (``gensar.refresh``): a run trained on
the older part, refreshed with everything; the same seed gives the older events the same search
sessions in both (the cut comes after the search protocol), and the items that only the newer
events name are the items added since.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["first_events"]


def first_events(events: pd.DataFrame, items: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events, items) cut to each user's first ``fraction`` of events (canonical order: by user,
    then time) and to the items they name; event ids renumbered, item order kept."""
    if fraction >= 1.0:
        return events, items
    grouped = events.groupby("user_id", sort=False)
    rank = grouped.cumcount().to_numpy()
    keep = rank < np.ceil(fraction * grouped["event_id"].transform("size").to_numpy())
    kept = events[keep].reset_index(drop=True)
    kept["event_id"] = np.arange(len(kept), dtype=events["event_id"].dtype)
    named = {item for clicked in kept["items"] for item in clicked}
    return kept, items[items["item_id"].isin(named)].reset_index(drop=True)
