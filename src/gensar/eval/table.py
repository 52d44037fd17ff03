"""The plain-text metrics table that ``gensar pipeline``, ``demo`` and ``evaluate`` print."""

from __future__ import annotations

from gensar.eval.groups import GROUPS, group_key
from gensar.metrics import METRIC_KEYS


def format_metrics(metrics: dict) -> str:
    """A plain table: one row per split and behavior (and per cold/warm group where measured)."""
    cols = METRIC_KEYS
    w = 11 if any(has_groups(metrics, s) for s in ("valid", "test")) else 7
    lines = [f"{'split':<6} {'task':<{w}} " + " ".join(f"{c:>8}" for c in cols) + f" {'n':>6}"]
    for split in ("valid", "test"):
        for behavior in ("rec", "search"):
            for task in (behavior, *(group_key(behavior, g) for g in GROUPS)):
                m = metrics.get(split, {}).get(task)
                if m and all(c in m for c in cols):
                    lines.append(f"{split:<6} {task:<{w}} " + " ".join(f"{m[c]:>8.4f}" for c in cols)
                                 + f" {m.get('n', 0):>6}")
    return "\n".join(lines)


def has_groups(metrics: dict, split: str = "test") -> bool:
    """Whether ``metrics`` measured cold and warm targets (``gensar prepare --cold-items``)."""
    return any(group_key(b, g) in metrics.get(split, {}) for b in ("rec", "search") for g in GROUPS)


COMPARISON = (("sampled", "rec", "hr@10"), ("sampled", "rec", "ndcg@10"), ("sampled", "search", "hr@10"),
              ("sampled", "search", "ndcg@10"), ("full", "rec", "recall@10"), ("full", "rec", "recall@20"),
              ("full", "search", "recall@10"), ("full", "search", "recall@20"))
BASELINE_NAMES = {"sasrec": "SASRec", "bm25": "BM25", "dense": "dense (MiniLM)",
                  "match-popularity": "match-popularity", "content": "content (MiniLM)",
                  "popularity": "popularity"}


def format_comparison(metrics: dict, split: str = "test", group: str | None = None) -> str:
    """GenSAR (served ranker, generative alone) beside the baselines of ``metrics["baselines"]``:
    one row per method, the sampled protocol's HR/NDCG@10 and the whole catalog's Recall@10/20;
    ``group``: on the cold or the warm targets alone (``gensar.eval.groups``)."""
    rows: list[tuple[str, dict]] = []
    label = "GenSAR (hybrid)" if metrics.get("ranker") == "hybrid" else "GenSAR"
    rows.append((label, metrics))
    if metrics.get("ranker") == "hybrid" and "generative" in metrics:
        rows.append(("GenSAR (generative)", metrics["generative"]))
    for name, title in BASELINE_NAMES.items():
        if name in metrics.get("baselines", {}):
            rows.append((title, metrics["baselines"][name]))
    head1 = f"{'':<20} {'sampled (target + negatives)':^35} {'whole catalog':^35}"
    names = ["rec hr10", "rec nd10", "srch hr10", "srch nd10", "rec R10", "rec R20", "srch R10", "srch R20"]
    head2 = f"{'method':<20} " + " ".join(f"{n:>8}" for n in names)
    lines = [f"{split} split" + (f", {group} targets" if group else ""), head1, head2]
    for title, m in rows:
        cells = []
        for protocol, behavior, key in COMPARISON:
            block = m.get(split, {}) if protocol == "sampled" else m.get("full_ranking", {}).get(split, {})
            value = block.get(group_key(behavior, group) if group else behavior, {}).get(key)
            cells.append(f"{value:>8.4f}" if isinstance(value, (int, float)) else f"{'-':>8}")
        lines.append(f"{title:<20} " + " ".join(cells))
    return "\n".join(lines)
