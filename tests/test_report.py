"""`gensar report`: seed grouping, mean ± std by hand, training time, table and plot files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gensar.cli import main
from gensar.report import METRICS, group_runs, read_run, tradeoff_points


def _run(root: Path, name: str, rec_hr10: float, search_hr10: float | None, seed: int | None,
         lr: float = 0.002, train_seconds: float | None = None) -> Path:
    run = root / name
    run.mkdir()
    block = {"rec": {k: rec_hr10 for k in METRICS}}
    if search_hr10 is not None:
        block["search"] = {k: search_hr10 for k in METRICS}
    (run / "metrics.json").write_text(json.dumps({"method": "gensar", "test": block}))
    if seed is not None:
        (run / "pipeline.yaml").write_text(
            f"data: {{source: x, prepare: {{seed: 0}}}}\nmodel: {{train: {{seed: {seed}, lr: {lr}}}}}\n")
    if train_seconds is not None:
        (run / "model").mkdir()
        (run / "model" / "train_state.json").write_text(json.dumps({"timings": {"train_seconds": train_seconds}}))
    return run


def test_runs_equal_up_to_seeds_are_one_row(tmp_path):
    paths = [_run(tmp_path, "joint-s0", 0.40, 0.30, 0, train_seconds=600),
             _run(tmp_path, "joint-s1", 0.44, 0.34, 1, train_seconds=660),
             _run(tmp_path, "joint-s2", 0.48, 0.32, 2, train_seconds=720),
             _run(tmp_path, "joint-lr", 0.50, 0.20, 0, lr=0.01),
             _run(tmp_path, "bm25", 0.10, None, None)]
    rows = group_runs([read_run(p) for p in paths])
    assert [r["name"] for r in rows] == ["joint", "joint-lr", "bm25"]
    joint = rows[0]
    assert joint["seeds"] == 3
    rec = joint["metrics"]["test"]["rec"]["hr@10"]
    assert rec["mean"] == pytest.approx(0.44) and rec["std"] == pytest.approx(0.04)  # sample std of .40/.44/.48
    search = joint["metrics"]["test"]["search"]["ndcg@5"]
    assert search["mean"] == pytest.approx(0.32) and search["std"] == pytest.approx(0.02)
    assert joint["train_seconds"]["mean"] == pytest.approx(660) and joint["train_seconds"]["std"] == pytest.approx(60)
    assert rows[1]["seeds"] == 1 and rows[1]["train_seconds"] is None
    assert "search" not in rows[2]["metrics"]["test"]


def test_runs_group_by_resolved_config(tmp_path):
    """A run written before a config key existed (the key absent from its pipeline.yaml) groups with
    runs that spell out that key's default; a non-default value is another method."""
    from gensar.embed.semantic import SemanticConfig

    default = SemanticConfig().category_weight
    old = _run(tmp_path, "joint-s0", 0.40, 0.30, 0)
    new = _run(tmp_path, "joint-s1", 0.44, 0.34, 1)
    other = _run(tmp_path, "joint-cat", 0.50, 0.20, 0)
    for run, weight in ((new, default), (other, 1.0)):
        text = (run / "pipeline.yaml").read_text()
        (run / "pipeline.yaml").write_text(text + f"ids: {{semantic: {{category_weight: {weight}}}}}\n")
    rows = group_runs([read_run(p) for p in (old, new, other)])
    assert [(r["name"], r["seeds"]) for r in rows] == [("joint", 2), ("joint-cat", 1)]


def test_tradeoff_points_number_methods_and_put_a_missing_task_at_zero(tmp_path):
    paths = [_run(tmp_path, "joint-s0", 0.40, 0.30, 0), _run(tmp_path, "joint-s1", 0.44, 0.34, 1),
             _run(tmp_path, "sasrec", 0.42, None, None)]
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "metrics.json").write_text(json.dumps({"method": "x", "valid": {}}))
    rows = group_runs([read_run(p) for p in [*paths, tmp_path / "nothing"]])
    points = tradeoff_points(rows, "test")
    assert [p["number"] for p in points] == [1, 2]  # the run without test metrics gets no point
    joint, sasrec = points
    assert (joint["x"], joint["y"]) == (pytest.approx(0.42), pytest.approx(0.32))
    assert joint["xerr"] == pytest.approx(0.0283, abs=1e-4) and joint["label"] == "1  joint (0.420, 0.320)"
    assert (sasrec["y"], sasrec["yerr"]) == (0.0, 0.0) and sasrec["label"] == "2  sasrec (0.420, –)"


def test_tradeoff_points_tell_twenty_methods_apart():
    """The scientific report has 20+ methods: no two of the first 20 may share marker and color."""
    rows = [{"name": f"m{i}", "metrics": {"test": {"rec": {"hr@10": {"mean": 0.1, "std": 0.0}}}}} for i in range(20)]
    styles = [(p["marker"], p["color"]) for p in tradeoff_points(rows, "test")]
    assert len(styles) == 20 and len(set(styles)) == 20


def test_report_cli_writes_table_json_and_plot(tmp_path, capsys):
    paths = [_run(tmp_path, "a-s0", 0.40, 0.30, 0, train_seconds=600), _run(tmp_path, "a-s1", 0.44, 0.34, 1,
                                                                           train_seconds=660)]
    out = tmp_path / "rep"
    assert main(["report", *map(str, paths), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "| a | 2 | 0.4200 ± 0.0283 |" in text and "| 10.5 ± 0.7 |" in text
    data = json.loads((out / "report.json").read_text())
    assert data["methods"][0]["metrics"]["test"]["search"]["hr@10"]["mean"] == pytest.approx(0.32)
    assert (out / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"


def test_report_shows_the_whole_catalog_table_next_to_the_sampled_one(tmp_path):
    keys = ("recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20")
    paths = []
    for name, seed, value in (("bm25", None, 0.5), ("g-s0", 0, 0.2), ("g-s1", 1, 0.4)):
        run = _run(tmp_path, name, 0.1, 0.3, seed)
        raw = json.loads((run / "metrics.json").read_text())
        raw["full_ranking"] = {"test": {"search": {k: value for k in keys} | {"n": 7}}}
        (run / "metrics.json").write_text(json.dumps(raw))
        paths.append(run)
    plain = _run(tmp_path, "pop", 0.1, 0.2, None)  # no full_ranking block: "–" in the second table
    out = tmp_path / "rep"
    assert main(["report", *map(str, [*paths, plain]), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    sampled, whole = text.split("## Whole catalog")
    assert "| bm25 | 1 | 0.1000 |" in sampled and "recall@10" not in sampled
    assert "| search recall@5 | search recall@10 |" in whole
    assert "| bm25 | 1 | – | – | – | – | – | – | 0.5000 | 0.5000 |" in whole
    assert "| g | 2 | – | – | – | – | – | – | 0.3000 ± 0.1414 |" in whole
    assert "| pop | 1 | – | – | – | – | – | – | – | – |" in whole
    data = json.loads((out / "report.json").read_text())
    assert data["methods"][0]["full_ranking"]["test"]["search"]["recall@20"]["mean"] == pytest.approx(0.5)
    out2 = tmp_path / "rep2"
    assert main(["report", str(plain), "--out", str(out2)]) == 0
    assert "Whole catalog" not in (out2 / "report.md").read_text()  # no run measured it: one table


def test_a_hybrid_run_gives_rows_for_the_generative_model_alone_and_its_baselines(tmp_path):
    from gensar.report import read_runs

    def block(v, behaviors=("rec", "search")):
        return {b: {k: v for k in METRICS} | {"n": 3} for b in behaviors}

    run = tmp_path / "hyb"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({
        "method": "gensar", "ranker": "hybrid", "valid": block(0.5), "test": block(0.6),
        "generative": {"valid": block(0.2), "test": block(0.3)},
        "baselines": {"bm25": {"valid": block(0.4, ("search",)), "test": block(0.45, ("search",))},
                      "sasrec": {"valid": block(0.35, ("rec",)), "test": block(0.55, ("rec",))}}}))
    rows = read_runs(run)
    assert [r["name"] for r in rows] == ["hyb", "hyb (generative)", "hyb (BM25)", "hyb (SASRec)"]
    assert rows[0]["metrics"]["test"]["rec"]["hr@10"] == 0.6
    assert rows[1]["metrics"]["test"]["search"]["hr@10"] == 0.3
    assert rows[2]["metrics"]["test"] == {"search": block(0.45, ("search",))["search"]}
    assert rows[3]["metrics"]["valid"]["rec"]["hr@10"] == 0.35 and rows[3]["train_seconds"] is None
    assert [r["name"] for r in group_runs(rows)] == ["hyb", "hyb (generative)", "hyb (BM25)", "hyb (SASRec)"]


def test_report_puts_valid_and_test_side_by_side(tmp_path):
    def block(v):
        return {b: {k: v for k in METRICS} | {"n": 3} for b in ("rec", "search")}

    runs = []
    for name, seed, valid, test in (("m-s0", 0, 0.50, 0.40), ("m-s1", 1, 0.70, 0.60), ("test-only", None, None, 0.3)):
        run = tmp_path / name
        run.mkdir()
        raw = {"method": "gensar", "test": block(test)}
        if valid is not None:
            raw["valid"] = block(valid)
        (run / "metrics.json").write_text(json.dumps(raw))
        if seed is not None:
            (run / "pipeline.yaml").write_text(f"data: {{source: x}}\nmodel: {{train: {{seed: {seed}}}}}\n")
        runs.append(run)
    out = tmp_path / "rep"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    text = (out / "report.md").read_text().split("## Valid and test")[1]
    assert "| method | seeds | rec hr@10 valid | rec hr@10 test | rec ndcg@10 valid |" in text
    # mean ± sample std of the two seeds: valid 0.6 ± 0.1414, test 0.5 ± 0.1414, per column pair
    assert "| m | 2 | 0.6000 ± 0.1414 | 0.5000 ± 0.1414 | 0.6000 ± 0.1414 | 0.5000 ± 0.1414 |" in text
    assert "| test-only | 1 | – | 0.3000 | – | 0.3000 | – | 0.3000 | – | 0.3000 |" in text
    assert "Whole catalog:" not in text  # no run measured the whole catalog


def test_seeded_hybrid_runs_group_every_part_under_the_seedless_name(tmp_path):
    """Three seeds of a hybrid run: one row per part, each named after the run without its seed,
    also a part whose label holds parentheses of its own (``dense (MiniLM)``)."""
    from gensar.report import read_runs

    def block(v, behaviors=("search",)):
        return {b: {k: v for k in METRICS} | {"n": 3} for b in behaviors}

    paths = []
    for seed in (0, 1, 2):
        run = _run(tmp_path, f"hyb-s{seed}", 0.5, 0.6, seed)
        (run / "metrics.json").write_text(json.dumps({
            "method": "gensar", "ranker": "hybrid", "test": block(0.6 + seed / 100, ("rec", "search")),
            "generative": {"test": block(0.3, ("rec", "search"))},
            "baselines": {"dense": {"test": block(0.4)}, "bm25": {"test": block(0.45)}}}))
        paths.append(run)
    rows = group_runs([r for p in paths for r in read_runs(p)])
    assert [(r["name"], r["seeds"]) for r in rows] == [
        ("hyb", 3), ("hyb (generative)", 3), ("hyb (dense (MiniLM))", 3), ("hyb (BM25)", 3)]
    assert rows[0]["metrics"]["test"]["search"]["hr@10"]["mean"] == pytest.approx(0.61)
    assert rows[2]["metrics"]["test"]["search"]["hr@10"] == {"mean": pytest.approx(0.4), "std": 0.0, "n": 3}
