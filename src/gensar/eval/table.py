"""The plain-text metrics table that ``gensar pipeline``, ``demo`` and ``evaluate`` print."""

from __future__ import annotations

from gensar.metrics import METRIC_KEYS


def format_metrics(metrics: dict) -> str:
    """A plain table: one row per split and behavior."""
    cols = METRIC_KEYS
    lines = [f"{'split':<6} {'task':<7} " + " ".join(f"{c:>8}" for c in cols) + f" {'n':>6}"]
    for split in ("valid", "test"):
        for behavior in ("rec", "search"):
            m = metrics.get(split, {}).get(behavior)
            if m:
                lines.append(f"{split:<6} {behavior:<7} " + " ".join(f"{m[c]:>8.4f}" for c in cols)
                             + f" {m.get('n', 0):>6}")
    return "\n".join(lines)
