"""Counts and averages of a prepared data directory (``gensar stats``, in ``gensar.data.cli``)."""

from __future__ import annotations

import numpy as np

from gensar.data.prepared import SPLITS, PreparedData
from gensar.data.schema import BEHAVIORS, REC, SEARCH


def compute_stats(data: PreparedData) -> dict:
    """Counts of a prepared dataset.

    ``interactions`` counts clicked items over all events (a search session with two clicks counts
    two; under the ``duplicate`` protocol each purchase counts twice, once per log);
    ``avg_sequence_length`` is events per user; ``avg_history_length`` is over all examples.
    """
    ev, ex = data.events, data.examples
    behavior = ev["behavior"].to_numpy()
    clicks = np.fromiter((len(i) for i in ev["items"]), dtype=np.int64, count=len(ev))
    search_queries = ev["query"][behavior == SEARCH]
    hist = np.fromiter((len(h) for h in ex["history"]), dtype=np.int64, count=len(ex))
    sizes = ex.groupby(["split", "behavior"]).size()
    n_users = int(ev["user_id"].nunique())
    n_search = int((behavior == SEARCH).sum())
    out = {
        "users": n_users,
        "items": len(data.items),
        "interactions": int(clicks.sum()),
        "rec_interactions": int((behavior == REC).sum()),
        "search_sessions": n_search,
        "unique_queries": int(search_queries.nunique()),
        "avg_clicks_per_session": float(clicks[behavior == SEARCH].mean()) if n_search else 0.0,
        "avg_sequence_length": len(ev) / n_users if n_users else 0.0,
        "avg_history_length": float(hist.mean()) if len(hist) else 0.0,
        "examples": {s: {b: int(sizes.get((s, b), 0)) for b in BEHAVIORS} for s in SPLITS},
        "candidate_lists": len(data.candidates),
        "search_protocol": data.manifest.get("search_protocol"),
    }
    if data.cold_items:  # gensar prepare --cold-items (gensar.data.cold)
        out |= {"cold_items": len(data.cold_items), "cold_events": len(data.cold_event_ids)}
    return out


def format_stats(stats: dict) -> str:
    """A readable two-column table plus an examples grid."""
    rows = [(k, v) for k, v in stats.items() if k != "examples"]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v:.2f}" if isinstance(v, float) else f"{k:<{width}}  {v}" for k, v in rows]
    lines += ["", f"{'examples':<8}" + "".join(f"{b:>10}" for b in BEHAVIORS)]
    lines += [f"{s:<8}" + "".join(f"{stats['examples'][s][b]:>10}" for b in BEHAVIORS) for s in SPLITS]
    return "\n".join(lines)
