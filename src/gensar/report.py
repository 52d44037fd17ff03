"""``gensar report RUN_DIR... --out DIR``: one table of methods x metrics, and the trade-off plot.

Each RUN_DIR holds a ``metrics.json`` from ``gensar pipeline``/``evaluate`` (GenSAR runs),
``gensar baseline`` or ``gensar sasrec``; all of them carry ``{split: {behavior: metrics}}``
(SASRec's flat ``{split: metrics}`` is read as the rec task). A ``"full_ranking": {split: {behavior:
metrics}}`` block (``--full-ranking`` of ``gensar baseline``/``sasrec``) adds a second table of the
whole-catalog recall/ndcg@5/10/20 next to the sampled one.

Runs on the same data whose configs are equal up to keys named ``seed`` are one method: the table
shows their mean ± sample standard deviation, and the number of seeds.

A run prepared with cold items (``gensar prepare --cold-items``) measured its cold and warm targets
apart (``rec_cold``, ``search_warm``, ...): the report adds a table of those, and lists the
baselines that run measured on the same examples (``metrics.json`` → ``baselines``) as rows of
their own.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from gensar.config import from_dict, read_yaml, to_dict
from gensar.errors import ConfigError, GensarError
from gensar.eval.groups import GROUPS, group_key
from gensar.eval.table import BASELINE_NAMES
from gensar.io import atomic_dir
from gensar.metrics import FULL_METRIC_KEYS as FULL_METRICS
from gensar.metrics import METRIC_KEYS as METRICS


TASKS = ("rec", "search", *(group_key(b, g) for b in ("rec", "search") for g in GROUPS))


def read_run(path: str | Path) -> dict:
    """``{"name", "path", "metrics": {split: {behavior: {...}}}, "full_ranking": {same shape}, "data",
    "config"}`` of one run."""
    path = Path(path)
    file = path / "metrics.json" if path.is_dir() else path
    if not file.is_file():
        raise GensarError(f"{path}: no metrics.json")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise GensarError(f"{file}: invalid JSON ({err.msg}, line {err.lineno})") from None
    metrics, full = _blocks(raw)
    if not metrics and not any(full.values()):
        raise GensarError(f"{file}: no valid/test metrics found")
    run_dir = file.parent
    data = None
    if (run_dir / "data" / "manifest.json").is_file():
        data = json.loads((run_dir / "data" / "manifest.json").read_text(encoding="utf-8")).get("source")
    config = next((str(run_dir / c) for c in ("pipeline.yaml", "config.yaml") if (run_dir / c).is_file()), None)
    return {"name": raw.get("label") or run_dir.name, "path": str(run_dir), "metrics": metrics,
            "full_ranking": full,
            "data": data or raw.get("data"), "config": config, "train_seconds": _train_seconds(run_dir, raw)}


def read_runs(path: str | Path) -> list[dict]:
    """The rows of one run: its served ranker, for a hybrid run also the generative model alone
    (``metrics.json`` → ``generative``) as "NAME (generative)", and each baseline the run measured on
    its own examples (``baselines``) as "NAME (BASELINE)"."""
    row = read_run(path)
    file = Path(path) / "metrics.json" if Path(path).is_dir() else Path(path)
    raw = json.loads(file.read_text(encoding="utf-8"))
    rows = [row]
    if raw.get("ranker") == "hybrid" and isinstance(raw.get("generative"), dict):
        metrics, full = _blocks(raw["generative"])
        rows.append(row | {"name": f"{row['name']} (generative)", "part": "generative", "ranker": "generative",
                           "metrics": metrics, "full_ranking": full})
    if isinstance(raw.get("baselines"), dict):  # on the same examples (and cold and warm groups)
        for name, block in raw["baselines"].items():
            metrics, full = _blocks(block)
            part = BASELINE_NAMES.get(name, name)
            rows.append(row | {"name": f"{row['name']} ({part})", "part": part, "ranker": name,
                               "metrics": metrics, "full_ranking": full, "train_seconds": None})
    return rows


def _group_name(members: list[dict]) -> str:
    """A row's name; several seeds of one method drop the run name's seed suffix (``joint-s1``),
    keeping the part a run's row stands for (``joint (dense (MiniLM))``)."""
    first = members[0]
    if len(members) == 1:
        return first["name"]
    run_name = first["name"].removesuffix(f" ({first['part']})") if first.get("part") else first["name"]
    base = re.sub(r"[-_](s|seed)\d+$", "", run_name)
    return f"{base} ({first['part']})" if first.get("part") else base


def _has_groups(row: dict) -> bool:
    return any(t in m for m in row["metrics"].values() for t in TASKS[2:])


def _blocks(raw: dict) -> tuple[dict, dict]:
    """(sampled ``{split: {behavior: metrics}}``, whole-catalog same shape) of a metrics.json object."""
    metrics = {}
    for split in ("valid", "test"):
        block = raw.get(split)
        if not isinstance(block, dict):
            continue
        metrics[split] = {"rec": block} if "hr@10" in block else {
            b: m for b, m in block.items() if isinstance(m, dict) and "hr@10" in m}
    full = {}
    block = raw.get("full_ranking")
    for split in ("valid", "test"):
        per_split = block.get(split) if isinstance(block, dict) else None
        if isinstance(per_split, dict):
            full[split] = {b: m for b, m in per_split.items() if isinstance(m, dict) and "recall@10" in m}
    return metrics, full


def _train_seconds(run_dir: Path, raw: dict) -> float | None:
    state = run_dir / "model" / "train_state.json"
    if state.is_file():  # a generative run: the model's training time
        return json.loads(state.read_text(encoding="utf-8")).get("timings", {}).get("train_seconds")
    return raw.get("train_seconds")  # SASRec; the other baselines do not train


def _resolved_config(path: str) -> dict:
    """A run's config with every default filled in, so a run written before a config key existed
    groups with later runs of the same settings; a file that no longer resolves is taken as is."""
    raw = read_yaml(path)
    if Path(path).name != "pipeline.yaml":
        return raw
    from gensar.pipeline import PipelineConfig

    try:
        return to_dict(from_dict(PipelineConfig, raw))
    except ConfigError:
        return raw


def _without_seeds(obj):
    if isinstance(obj, dict):
        return {k: _without_seeds(v) for k, v in obj.items() if k != "seed"}
    if isinstance(obj, list):
        return [_without_seeds(v) for v in obj]
    return obj


def group_runs(runs: list[dict]) -> list[dict]:
    """Runs equal up to their seeds, merged into one row: per-metric mean and standard deviation."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        if run["config"] is None:  # nothing to compare: a run of its own
            key = json.dumps([run["path"], run.get("ranker", "")])
        else:
            config = _resolved_config(run["config"])
            key = json.dumps([run["data"], _without_seeds(config), run.get("ranker", "")], sort_keys=True,
                             default=str)
        groups.setdefault(key, []).append(run)
    rows = []
    for members in groups.values():
        first = members[0]
        name = _group_name(members)
        metrics = _merged([m["metrics"] for m in members], METRICS)
        full = _merged([m.get("full_ranking", {}) for m in members], FULL_METRICS)
        times = [m["train_seconds"] for m in members if m["train_seconds"] is not None]
        rows.append({"name": name, "seeds": len(members), "runs": [m["path"] for m in members],
                     "data": first["data"], "config": first["config"], "metrics": metrics, "full_ranking": full,
                     "train_seconds": _mean_std(times) if times else None})
    return rows


def _merged(per_run: list[dict], keys: tuple[str, ...]) -> dict:
    """``{split: {behavior: {key: mean/std}}}`` where every run has that split and behavior."""
    out: dict = {}
    for split in ("valid", "test"):
        for behavior in TASKS:
            blocks = [m.get(split, {}).get(behavior) for m in per_run]
            if any(b is None for b in blocks):
                continue
            out.setdefault(split, {})[behavior] = {k: _mean_std([b[k] for b in blocks]) for k in keys
                                              if all(k in b for b in blocks)}
    return out


def _mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def _cell(stat: dict | None, digits: int = 4) -> str:
    if stat is None:
        return "–"
    if stat["n"] == 1:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def markdown_table(rows: list[dict], split: str, block: str = "metrics") -> str:
    """One line per method (from ``group_runs``): metrics for both tasks, seeds, training minutes.
    ``block="full_ranking"``: the whole-catalog metrics instead of the sampled ones."""
    keys = FULL_METRICS if block == "full_ranking" else METRICS
    head = "| method | seeds | " + " | ".join(f"rec {m}" for m in keys) + " | " + \
        " | ".join(f"search {m}" for m in keys) + " | train min |"
    lines = [head, "|" + "---|" * (3 + 2 * len(keys))]
    for row in rows:
        cells = []
        for behavior in ("rec", "search"):
            m = row.get(block, {}).get(split, {}).get(behavior)
            cells += [_cell(m.get(k) if m else None) for k in keys]
        t = row["train_seconds"]
        minutes = None if t is None else {"mean": t["mean"] / 60, "std": t["std"] / 60, "n": t["n"]}
        lines.append(f"| {row['name']} | {row['seeds']} | " + " | ".join(cells) + f" | {_cell(minutes, 1)} |")
    return "\n".join(lines)


SIDE_BY_SIDE = {"metrics": ("hr@10", "ndcg@10"), "full_ranking": ("recall@10", "ndcg@10")}


def side_by_side_table(rows: list[dict], block: str = "metrics") -> str:
    """Valid next to test for the headline metrics of each task: a choice made on valid should
    hold on test, and a row whose test figure runs far ahead of its valid one was chosen on test."""
    keys = SIDE_BY_SIDE[block]
    cols = [(b, k, s) for b in ("rec", "search") for k in keys for s in ("valid", "test")]
    head = "| method | seeds | " + " | ".join(f"{b} {k} {s}" for b, k, s in cols) + " |"
    lines = [head, "|" + "---|" * (2 + len(cols))]
    for row in rows:
        cells = []
        for behavior, key, split in cols:
            m = row.get(block, {}).get(split, {}).get(behavior)
            cells.append(_cell(m.get(key) if m else None))
        lines.append(f"| {row['name']} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def groups_table(rows: list[dict], split: str, block: str = "metrics") -> str:
    """The cold and warm targets of each method that measured them (``gensar prepare --cold-items``):
    the headline metrics of each task, cold beside warm."""
    keys = SIDE_BY_SIDE[block]
    cols = [(b, k, g) for b in ("rec", "search") for k in keys for g in GROUPS]
    head = "| method | seeds | " + " | ".join(f"{b} {k} {g}" for b, k, g in cols) + " |"
    lines = [head, "|" + "---|" * (2 + len(cols))]
    for row in rows:
        per_split = row.get(block, {}).get(split, {})
        if not any(group_key(b, g) in per_split for b, _, g in cols):
            continue
        cells = []
        for behavior, key, group in cols:
            m = per_split.get(group_key(behavior, group))
            cells.append(_cell(m.get(key) if m else None))
        lines.append(f"| {row['name']} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# 7 markers against matplotlib's 10 default colors: (marker, color) repeats only after 70 methods.
MARKERS = "osD^vP*"


def tradeoff_points(rows: list[dict], split: str) -> list[dict]:
    """One numbered point per method with an HR@10 on either task; a task it does not do sits at 0."""
    points = []
    for row in rows:
        m = row["metrics"].get(split, {})
        rec = m.get("rec", {}).get("hr@10")
        search = m.get("search", {}).get("hr@10")
        if rec is None and search is None:
            continue
        shown = [f"{s['mean']:.3f}" if s else "–" for s in (rec, search)]
        i = len(points)
        points.append({
            "number": i + 1, "marker": MARKERS[i % len(MARKERS)], "color": f"C{i % 10}",
            "x": rec["mean"] if rec else 0.0, "y": search["mean"] if search else 0.0,
            "xerr": rec["std"] if rec else 0.0, "yerr": search["std"] if search else 0.0,
            "label": f"{i + 1}  {row['name']} ({', '.join(shown)})",
        })
    return points


def tradeoff_plot(rows: list[dict], split: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=120)
    # Methods crowd together near the top right: points carry a number, the legend the name.
    for p in tradeoff_points(rows, split):
        ax.errorbar([p["x"]], [p["y"]], xerr=[p["xerr"]], yerr=[p["yerr"]], fmt=p["marker"], color=p["color"],
                    ms=6, capsize=3, label=p["label"])
        ax.annotate(str(p["number"]), (p["x"], p["y"]), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False,
              title="method (rec, search HR@10)", title_fontsize=7)
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
    rows = group_runs([row for p in paths for row in read_runs(p)])
    with atomic_dir(out, overwrite=overwrite, kind="report") as tmp:
        lines = ["# gensar report", "", (f"Split: **{split}** (sampled protocol: target + 99 candidates). "
                                          "Several seeds: mean ± sample standard deviation."), "",
                 markdown_table(rows, split), ""]
        if any(row["full_ranking"].get(split) for row in rows):
            lines += ["## Whole catalog", "", ("Every item ranked (`--full-ranking`): Recall/NDCG@5/10/20, "
                                                "tie-aware; – = not measured."), "",
                      markdown_table(rows, split, "full_ranking"), ""]
        lines += ["## Valid and test", "", ("Choices are made on valid and reported on test. A hybrid "
                                            "run's valid figures are its fusion's cross-validated ones "
                                            "(the fusion is fitted on valid)."), "",
                  "Saved candidates:", "", side_by_side_table(rows), ""]
        if any(row["full_ranking"] for row in rows):
            lines += ["Whole catalog:", "", side_by_side_table(rows, "full_ranking"), ""]
        if any(_has_groups(row) for row in rows):
            lines += ["## Cold and warm targets", "",
                      (f"Split: **{split}**. Cold targets are items held out of training (`--cold-items`) "
                       "and added after it; warm targets are the rest. Same examples for every method."),
                      "", "Saved candidates:", "", groups_table(rows, split), ""]
            if any(row["full_ranking"].get(split) for row in rows):
                lines += ["Whole catalog:", "", groups_table(rows, split, "full_ranking"), ""]
        lines += ["![trade-off](tradeoff.png)", "", "## Runs", ""]
        for row in rows:
            paths_md = ", ".join(f"`{p}`" for p in row["runs"])
            lines.append(f"- **{row['name']}**: {paths_md}; data: {row['data'] or 'n/a'}; "
                         f"config: {row['config'] or 'n/a'}")
        (tmp / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / "report.json").write_text(json.dumps({"split": split, "methods": rows}, indent=1) + "\n",
                                         encoding="utf-8")
        tradeoff_plot(rows, split, tmp / "tradeoff.png")
    return Path(out)
