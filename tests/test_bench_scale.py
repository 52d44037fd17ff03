"""benchmarks/bench_scale.py: its sizes, its world and its refusals (the runs themselves are benchmarks)."""

from __future__ import annotations

import argparse
import importlib.util
import json

import pytest
from conftest import REPO

from gensar.data.canonical import read_canonical


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_scale", REPO / "benchmarks" / "bench_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sizes_by_name_and_by_count(bench):
    assert bench.parse_size("1.7m") == ("1.7m", 1_700_000, 63_000)
    assert bench.parse_size("20k:2k") == ("20k-2k", 20_000, 2_000)
    assert bench.parse_size("5000:250") == ("5000-250", 5_000, 250)
    for bad in ("huge", "20k", "1k:100", "1k:900", "1.2.3k:1k"):
        with pytest.raises(argparse.ArgumentTypeError, match="size"):
            bench.parse_size(bad)


def test_slope_of_a_power_law(bench):
    assert bench.slope([1e4, 1e5, 1e6], [2.0, 20.0, 200.0]) == pytest.approx(1.0)
    assert bench.slope([1e4, 1e5], [1.0, 100.0]) == pytest.approx(2.0)
    assert bench.slope([1e4], [1.0]) is None


def test_world_sizes_users_and_preferences(bench, tmp_path):
    info = bench.build_world(3_000, 400, seed=3, out=tmp_path / "world")
    raw = read_canonical(tmp_path / "world")
    events, items = raw.events, raw.items
    assert len(items) == info["items"] == 400
    assert len(events) == info["events"] and abs(info["events"] - 3_000) < 3_000 * 0.1
    per_user = events.groupby("user_id").size()
    assert per_user.between(*bench.EVENTS_PER_USER).all() and len(per_user) == info["users"]
    assert (events["behavior"] == "rec").all() and (events["items"].map(len) == 1).all()
    known = set(items["item_id"])
    assert all(x[0] in known for x in events["items"])
    # users click mostly in two leaf categories: their top two leaves hold >= PREFERRED_PROB of clicks
    leaf_of = dict(zip(items["item_id"], items["categories"].map(tuple), strict=True))
    leaves = events.assign(leaf=[leaf_of[x[0]] for x in events["items"]])
    top2 = leaves.groupby("user_id")["leaf"].agg(lambda s: s.value_counts().iloc[:2].sum() / len(s))
    assert top2.mean() >= bench.PREFERRED_PROB
    again = bench.build_world(3_000, 400, seed=3, out=tmp_path / "again")
    assert again == info
    assert (tmp_path / "world" / "events.parquet").read_bytes() == (tmp_path / "again" / "events.parquet").read_bytes()


def test_refuses_an_out_it_did_not_write(bench, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert bench.main(["--sizes", "10k:1k", "--out", str(out)]) == 2
    assert "not written by bench_scale" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_results_table_growth_columns(bench):
    def size(events, seconds, mib):
        return {"events": events, "items": 1, "stages": {"prepare": {"rc": 0, "wall_s": seconds, "peak_rss_mib": mib}}}

    result = {"sizes": {"b": size(100_000, 40.0, 300.0), "a": size(10_000, 4.0, 100.0)}}
    rows = bench.table(result).splitlines()
    assert rows[0].startswith("| stage | a s / MiB | b s / MiB |")
    prepare = next(r for r in rows if r.startswith("| prepare"))
    assert prepare == "| prepare | 4.0 / 100 | 40.0 / 300 | 10.0 | 3.0 | 1.00 |"
    assert next(r for r in rows if r.startswith("| train")).endswith("| - | - | - |")
    result["sizes"]["b"]["stages"]["prepare"]["rc"] = 1  # a failed stage shows no figure and no growth
    prepare = next(r for r in bench.table(result).splitlines() if r.startswith("| prepare"))
    assert prepare == "| prepare | 4.0 / 100 | - | - | - | - |"


def test_refuses_to_mix_runs_of_other_options(bench, tmp_path, capsys):
    out = tmp_path / "scale"
    out.mkdir()
    (out / bench.MARKER).write_text("{}")
    (out / "results.json").write_text(json.dumps({"options": {"seed": 1}, "sizes": {}}))
    before = (out / "results.json").read_bytes()
    assert bench.main(["--sizes", "10k:1k", "--out", str(out)]) == 2
    assert "other options" in capsys.readouterr().err
    assert (out / "results.json").read_bytes() == before and not (out / "10k-1k").exists()


def test_refuses_a_file_as_out(bench, tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("mine")
    assert bench.main(["--sizes", "10k:1k", "--out", str(target)]) == 2
    assert "not a directory" in capsys.readouterr().err and target.read_text() == "mine"


def test_until_runs_only_the_stages_up_to_it(bench, tmp_path, capsys):
    out = tmp_path / "scale"
    assert bench.main(["--sizes", "2k:200", "--until", "prepare", "--out", str(out)]) == 0
    stages = json.loads((out / "results.json").read_text())["sizes"]["2k-200"]["stages"]
    assert list(stages) == ["world", "prepare"] and all(s["rc"] == 0 for s in stages.values())
    assert stages["prepare"]["prepared"]["events"] > 0
    assert not (out / "2k-200" / "semantic.log").exists()
    assert "| prepare | " in capsys.readouterr().out
