"""The synthetic world: determinism, invariants of the story, the two signals, and `gensar synth`."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from gensar.cli import main
from gensar.config import from_dict
from gensar.data.canonical import read_canonical
from gensar.data.schema import validate
from gensar.data.synth import QUERY_NOISE, ROOT, SynthConfig, generate_world
from gensar.errors import ConfigError

SMALL = SynthConfig(n_users=80, n_items=200, seed=5)


@pytest.fixture(scope="module")
def small_world():
    return generate_world(SMALL, progress=False)


@pytest.fixture(scope="module")
def default_world():
    return generate_world(SynthConfig(), progress=False)


def test_deterministic_per_seed(small_world):
    again = generate_world(SMALL, progress=False)
    pd.testing.assert_frame_equal(again.items, small_world.items)
    pd.testing.assert_frame_equal(again.events, small_world.events)
    assert again.info == small_world.info
    other = generate_world(dataclasses.replace(SMALL, seed=6), progress=False)
    assert other.events["items"].tolist() != small_world.events["items"].tolist()


def test_world_invariants(small_world):
    items, events, cfg = small_world.items, small_world.events, SMALL
    validate(items, events)  # unique ids, known items, non-empty search queries
    assert len(items) == cfg.n_items and events["user_id"].nunique() == cfg.n_users
    assert all(len(c) == 3 and c[0] == ROOT for c in items["categories"])
    for user, ev in events.groupby("user_id"):
        assert cfg.min_events <= len(ev) <= cfg.max_events
        assert np.all(np.diff(ev["timestamp"].to_numpy()) > 0)  # distinct, increasing times
        clicked = [i for its in ev["items"] for i in its]
        assert len(clicked) == len(set(clicked))  # never the same item twice
    sizes = events["items"].map(len)
    assert (sizes[events["behavior"] == "rec"] == 1).all()
    assert sizes[events["behavior"] == "search"].isin([1, 2]).all()
    assert abs((events["behavior"] == "search").mean() - cfg.search_ratio) < 0.05


def test_queries_come_from_the_clicked_category(small_world):
    cats = dict(zip(small_world.items["item_id"], small_world.items["categories"], strict=True))
    search = small_world.events[small_world.events["behavior"] == "search"]
    for query, clicked in zip(search["query"], search["items"], strict=True):
        path_words = {w for part in cats[clicked[0]][1:] for w in part.lower().split()}
        words = query.split()
        assert set(words) <= path_words | set(QUERY_NOISE), (query, cats[clicked[0]])
        assert set(words) & path_words  # at least one category word survives the dropping
        assert len({tuple(cats[i]) for i in clicked}) == 1  # a second click stays in the same leaf


def test_groups_are_hidden_from_text(default_world):
    """Each leaf (all an item's text reveals) mixes several co-purchase groups."""
    leaf = np.asarray(default_world.info["item_leaf"])
    group = np.asarray(default_world.info["item_group"])
    groups_per_leaf = [len(set(group[leaf == x])) for x in np.unique(leaf)]
    assert min(groups_per_leaf) >= 2 and np.mean(groups_per_leaf) >= 3
    leaves_per_group = [len(set(leaf[group == g])) for g in np.unique(group)]
    assert min(leaves_per_group) == SynthConfig().leaves_per_group  # groups span categories


def _hit_rates(raw, k: int = 10) -> dict[str, float]:
    """HR@k of three next-rec-item scorers, each user's last rec event held out, full ranking."""
    index = {item: i for i, item in enumerate(raw.items["item_id"])}
    leaves = {path: j for j, path in enumerate(sorted({tuple(c) for c in raw.items["categories"]}))}
    item_leaf = np.array([leaves[tuple(c)] for c in raw.items["categories"]])  # (N,)
    n = len(index)
    histories, targets, train = [], [], []
    for _, ev in raw.events.groupby("user_id", sort=True):
        rec_rows = np.flatnonzero(ev["behavior"].to_numpy() == "rec")
        last = int(rec_rows[-1]) if len(rec_rows) else 0
        seq = [index[i] for its in ev["items"].iloc[:last] for i in its]  # clicks before the held-out one
        train.append(seq)
        if last > 0:
            histories.append(seq)
            targets.append(index[ev["items"].iloc[last][0]])
    counts = np.zeros(n)  # (N,) training clicks per item
    cooc = np.zeros((n, n))  # (N, N) symmetric counts of clicks at most 3 apart in a user's sequence
    for seq in train:
        np.add.at(counts, seq, 1)
        for d in (1, 2, 3):
            np.add.at(cooc, (seq[:-d], seq[d:]), 1)
    cooc = cooc + cooc.T
    hits = {"category": 0, "cooccurrence": 0, "combined": 0}
    for hist, target in zip(histories, targets, strict=True):
        taste = np.bincount(item_leaf[hist], minlength=len(leaves)) / len(hist)  # (L,) share of clicks per leaf
        recent = sum(0.5**r * cooc[i] for r, i in enumerate(reversed(hist[-3:])))  # (N,)
        scores = {
            "category": taste[item_leaf] * (counts + 1),
            "cooccurrence": recent + 1e-3 * counts,  # popularity only breaks ties
            "combined": (recent + 0.1) * (taste[item_leaf] + 0.02),
        }
        for name, s in scores.items():
            s = s.astype(float)
            s[hist] = -np.inf  # items are never clicked twice
            hits[name] += int(target in np.argpartition(-s, k)[:k])
    return {name: h / len(targets) for name, h in hits.items()}


def test_both_signals_are_needed(default_world):
    hr = _hit_rates(default_world)
    # measured (seed 0): category 0.17, co-occurrence 0.20, combined 0.34
    assert hr["combined"] >= 1.3 * max(hr["category"], hr["cooccurrence"])
    assert hr["combined"] >= max(hr["category"], hr["cooccurrence"]) + 0.06
    assert min(hr["category"], hr["cooccurrence"]) >= 0.1  # each alone is far above chance (10/800)


def test_config_is_strict():
    with pytest.raises(ConfigError, match="unknown config key 'n_user'"):
        from_dict(SynthConfig, {"n_user": 3})
    with pytest.raises(ConfigError, match="'group_prob': must be a probability"):
        from_dict(SynthConfig, {"group_prob": 1.5})
    with pytest.raises(ConfigError, match="'n_items': must be >= n_groups \\* leaves_per_group"):
        from_dict(SynthConfig, {"n_items": 20})
    with pytest.raises(ConfigError, match="'n_departments': must be in 1..12"):
        from_dict(SynthConfig, {"n_departments": 13})


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "world"
    cfg_file = tmp_path / "synth.yaml"
    cfg_file.write_text("n_groups: 8\nsearch_ratio: 0.5\nseed: 1\n")
    argv = ["synth", "--out", str(out), "--users", "40", "--items", "150", "--config", str(cfg_file),
            "--set", "max_events=12", "--seed", "2"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: 150 items, 40 users, ")
    assert sorted(p.name for p in out.iterdir()) == [".gensar-run.json", "events.jsonl", "items.jsonl", "world.json"]
    expected = generate_world(SynthConfig(n_users=40, n_items=150, n_groups=8, search_ratio=0.5, max_events=12,
                                          seed=2), progress=False)  # flags beat --config
    raw = read_canonical(out)
    pd.testing.assert_frame_equal(raw.items, expected.items)
    pd.testing.assert_frame_equal(raw.events, expected.events)
    truth = json.loads((out / "world.json").read_text())
    assert truth["config"]["seed"] == 2 and len(truth["item_group"]) == 150

    before = (out / "events.jsonl").read_bytes()
    assert main(["synth", "--out", str(out), "--users", "30"]) == 2
    assert "not empty (use --overwrite)" in capsys.readouterr().err
    assert main(["synth", "--out", str(out), "--set", "n_users=0"]) == 2
    assert "config key 'n_users': must be in 1..10000000" in capsys.readouterr().err
    assert (out / "events.jsonl").read_bytes() == before  # failed runs leave the output alone
    assert main(["synth", "--out", str(out), "--users", "30", "--items", "150", "--overwrite"]) == 0
    assert read_canonical(out).events["user_id"].nunique() == 30


@pytest.mark.parametrize("source", ["title", "mixed"])
def test_query_source_redraws_only_the_queries(small_world, source):
    from gensar.data.queries import clean_words, words

    raw = generate_world(dataclasses.replace(SMALL, query_source=source), progress=False)
    pd.testing.assert_frame_equal(raw.items, small_world.items)  # the same world...
    base, ev = small_world.events, raw.events
    assert ev.drop(columns="query").equals(base.drop(columns="query"))
    assert (ev.loc[ev["behavior"] == "rec", "query"] == "").all()
    titles = dict(zip(raw.items["item_id"], raw.items["title"], strict=True))
    search = ev["behavior"] == "search"
    changed = (ev["query"] != base["query"])[search].to_numpy()
    for query, clicked, new in zip(ev["query"][search], ev["items"][search], changed, strict=True):
        if new:  # ...with queries drawn from the first clicked item's title words, in title order
            content = iter(clean_words(words(titles[clicked[0]])))
            assert query and all(w in content for w in query.split())
    share = changed.mean()
    assert share > 0.95 if source == "title" else 0.35 < share < 0.65
    again = generate_world(dataclasses.replace(SMALL, query_source=source), progress=False)
    assert again.events.equals(ev)  # seeded
    with pytest.raises(ConfigError, match="query_source"):
        from_dict(SynthConfig, {"query_source": "bogus"})
