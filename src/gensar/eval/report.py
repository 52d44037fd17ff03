"""``gensar report RUN_DIR... --out DIR``: one table of methods x metrics, and the trade-off plot.

Each RUN_DIR holds a ``metrics.json`` from ``gensar pipeline``/``evaluate`` (GenSAR runs),
``gensar baseline`` or ``gensar sasrec``; all of them carry ``{split: {behavior: metrics}}``
(SASRec's flat ``{split: metrics}`` is read as the rec task).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gensar.errors import GensarError
from gensar.io import atomic_dir

METRICS = ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10")


def read_run(path: str | Path) -> dict:
    """``{"name", "path", "metrics": {split: {behavior: {...}}}, "data", "config"}`` of one run."""
    path = Path(path)
    file = path / "metrics.json" if path.is_dir() else path
    if not file.is_file():
        raise GensarError(f"{path}: no metrics.json")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise GensarError(f"{file}: invalid JSON ({err.msg}, line {err.lineno})") from None
    metrics = {}
    for split in ("valid", "test"):
        block = raw.get(split)
        if not isinstance(block, dict):
            continue
        metrics[split] = {"rec": block} if "hr@10" in block else {
            b: m for b, m in block.items() if isinstance(m, dict) and "hr@10" in m}
    if not metrics:
        raise GensarError(f"{file}: no valid/test metrics found")
    run_dir = file.parent
    data = None
    if (run_dir / "data" / "manifest.json").is_file():
        data = json.loads((run_dir / "data" / "manifest.json").read_text(encoding="utf-8")).get("source")
    config = next((str(run_dir / c) for c in ("pipeline.yaml", "config.yaml") if (run_dir / c).is_file()), None)
    return {"name": raw.get("label") or run_dir.name, "path": str(run_dir), "metrics": metrics,
            "data": data or raw.get("data"), "config": config}


def markdown_table(runs: list[dict], split: str) -> str:
    head = "| method | " + " | ".join(f"rec {m}" for m in METRICS) + " | " + \
        " | ".join(f"search {m}" for m in METRICS) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(METRICS))]
    for run in runs:
        cells = []
        for behavior in ("rec", "search"):
            m = run["metrics"].get(split, {}).get(behavior)
            cells += [f"{m[k]:.4f}" if m else "–" for k in METRICS]
        lines.append(f"| {run['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tradeoff_plot(runs: list[dict], split: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    for run in runs:
        m = run["metrics"].get(split, {})
        rec = m.get("rec", {}).get("hr@10")
        search = m.get("search", {}).get("hr@10")
        if rec is None and search is None:
            continue
        # A single-task method sits on its axis: it does not do the other task.
        x, y = (rec or 0.0), (search or 0.0)
        ax.scatter([x], [y], s=40)
        ax.annotate(run["name"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(f"recommendation HR@10 ({split})")
    ax.set_ylabel(f"search HR@10 ({split})")
    ax.set_title("Search vs recommendation trade-off")
    ax.grid(alpha=0.3)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(paths: list[str], out: str | Path, split: str = "test", overwrite: bool = False) -> Path:
    runs = [read_run(p) for p in paths]
    with atomic_dir(out, overwrite=overwrite) as tmp:
        lines = ["# gensar report", "", f"Split: **{split}** (sampled protocol: target + 99 candidates).", "",
                 markdown_table(runs, split), "", "![trade-off](tradeoff.png)", "", "## Runs", ""]
        for run in runs:
            lines.append(f"- **{run['name']}**: `{run['path']}`; data: {run['data'] or 'n/a'}; "
                         f"config: {run['config'] or 'n/a'}")
        (tmp / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        tradeoff_plot(runs, split, tmp / "tradeoff.png")
    return Path(out)


def cli_report(args: argparse.Namespace) -> int:
    out = write_report(args.runs, args.out, args.split, args.overwrite)
    print((out / "report.md").read_text(encoding="utf-8"))
    return 0
