"""k-core, leave-one-out splits, candidates, `gensar prepare` and `gensar stats`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gensar.cli import main
from gensar.data.candidates import BM25Config, build_candidates
from gensar.data.kcore import kcore
from gensar.data.prepare import PrepareConfig, prepare
from gensar.data.prepared import PreparedData
from gensar.data.queries import apply_search_protocol
from gensar.data.schema import RawDataset, make_events, make_items
from gensar.data.splits import leave_one_out
from gensar.data.twins import twin_mask
from gensar.data.stats import compute_stats, format_stats
from gensar.errors import ConfigError, GensarError

CATS = [["Shop", "Power Tools", "Saws"], ["Shop", "Power Tools", "Drills"], ["Shop", "Lab", "Glassware"],
        ["Shop", "Lab", "Scales"], ["Shop", "Tapes & Adhesives"]]


def random_raw(n_users: int = 50, n_items: int = 150, seed: int = 0) -> RawDataset:
    """A rec-only log: 3-12 interactions per user, Zipf-ish item popularity."""
    rng = np.random.default_rng(seed)
    items = make_items([{"item_id": f"i{i}", "title": f"{CATS[i % 5][-1]} model {i}",
                         "categories": CATS[i % 5], "brand": f"brand{i % 7}"} for i in range(n_items)])
    pop = 1.0 / np.arange(1, n_items + 1)
    pop /= pop.sum()
    rows = [{"user_id": f"u{u}", "timestamp": 10 * t, "items": [f"i{int(rng.choice(n_items, p=pop))}"]}
            for u in range(n_users) for t in range(int(rng.integers(3, 13)))]
    return RawDataset(items=items, events=make_events(rows), source="random", format="test")


def check_invariants(data: PreparedData, num_negatives: int = 99) -> None:
    ev, ex = data.events, data.examples
    ts = ev["timestamp"].to_numpy()
    user = ev["user_id"].to_numpy()
    # History: the user's own events, strictly earlier than the target, oldest first.
    for row in ex.itertuples(index=False):
        h = list(row.history)
        assert row.event_id not in h
        assert all(user[e] == row.user_id and ts[e] < ts[row.event_id] for e in h)
        assert h == sorted(h) and len(h) <= data.manifest["options"]["max_history"]
        assert row.target in ev["items"].iloc[row.event_id]
    # Valid/test events are never training targets; one valid and one test per user and behavior.
    evaluated = set(ex.loc[ex["split"] != "train", "event_id"])
    assert evaluated.isdisjoint(ex.loc[ex["split"] == "train", "event_id"])
    # ... and never inside a training example's history.
    assert all(evaluated.isdisjoint(h) for h in ex.loc[ex["split"] == "train", "history"])
    per_user = ex[ex["split"] != "train"].groupby(["user_id", "behavior", "split"]).size()
    assert (per_user == 1).all()
    # Candidates: one list per valid/test example, target first, distinct, never interacted.
    assert sorted(data.candidates["example_id"]) == sorted(ex.loc[ex["split"] != "train", "example_id"])
    seen = data.user_items()
    by_id = ex.set_index("example_id")
    for ex_id, cands in data.candidate_lists.items():
        row = by_id.loc[ex_id]
        assert cands[0] == row["target"]
        assert len(set(cands)) == len(cands) == 1 + num_negatives
        assert not set(cands[1:]) & seen[row["user_id"]]


# ---- k-core ---------------------------------------------------------------------------------


def test_kcore_hand_made_log():
    items = make_items([{"item_id": i} for i in "abcdez"])  # z: never interacted
    events = make_events([
        {"user_id": "u1", "behavior": "rec", "timestamp": 0, "items": ["a"]},
        {"user_id": "u1", "timestamp": 1, "behavior": "search", "query": "q", "items": ["b", "d"]},
        {"user_id": "u1", "behavior": "rec", "timestamp": 2, "items": ["c"]},
        {"user_id": "u2", "behavior": "rec", "timestamp": 0, "items": ["a"]},
        {"user_id": "u2", "behavior": "rec", "timestamp": 1, "items": ["b"]},
        {"user_id": "u3", "behavior": "rec", "timestamp": 0, "items": ["c"]},
        {"user_id": "u4", "behavior": "rec", "timestamp": 0, "items": ["a"]},
        {"user_id": "u4", "behavior": "rec", "timestamp": 1, "items": ["e"]},
    ])
    # Round 1 drops u3 (1 interaction), d and e (1 each); then u4 and c have 1 left: round 2.
    res = kcore(items, events, 2)
    assert res.rounds == 2
    assert res.before.as_dict() == {"users": 4, "items": 5, "interactions": 9}
    assert res.after.as_dict() == {"users": 2, "items": 2, "interactions": 4}
    assert res.items["item_id"].tolist() == ["a", "b"]
    got = [(r.event_id, r.user_id, r.behavior, r.query, r.items) for r in res.events.itertuples(index=False)]
    assert got == [(0, "u1", "rec", "", ["a"]), (1, "u1", "search", "q", ["b"]),  # session keeps b, loses d
                   (2, "u2", "rec", "", ["a"]), (3, "u2", "rec", "", ["b"])]
    off = kcore(items, events, 0)
    assert off.events is events and off.rounds == 0 and off.after == off.before


def test_kcore_result_is_a_k_core():
    raw = random_raw(n_users=80)
    res = kcore(raw.items, raw.events, 4)
    exploded = res.events.explode("items")
    assert exploded.groupby("user_id").size().min() >= 4
    assert exploded.groupby("items").size().min() >= 4
    assert set(exploded["items"]) == set(res.items["item_id"])
    assert 0 < res.after.interactions < res.before.interactions


# ---- splits ---------------------------------------------------------------------------------


def test_leave_one_out_hand_made():
    events = make_events([
        {"user_id": "u1", "behavior": "rec", "timestamp": 0, "items": ["a"]},
        {"user_id": "u1", "timestamp": 1, "behavior": "search", "query": "q1", "items": ["b", "c"]},
        {"user_id": "u1", "behavior": "rec", "timestamp": 2, "items": ["d"]},
        {"user_id": "u1", "timestamp": 3, "behavior": "search", "query": "q2", "items": ["e"]},
        {"user_id": "u1", "behavior": "rec", "timestamp": 4, "items": ["f"]},
        {"user_id": "u1", "timestamp": 5, "behavior": "search", "query": "q3", "items": ["g", "h"]},
        {"user_id": "u1", "behavior": "rec", "timestamp": 6, "items": ["x"]},
        {"user_id": "u2", "behavior": "rec", "timestamp": 0, "items": ["a"]},
        # same timestamp: neither is in the other's history
        {"user_id": "u2", "behavior": "rec", "timestamp": 0, "items": ["b"]},
    ])
    ex = leave_one_out(events, max_history=2, min_events=3)
    got = [(r.split, r.behavior, r.event_id, r.query, r.target, r.history)
           for r in ex.itertuples(index=False)]
    assert got == [
        ("train", "rec", 0, "", "a", []),
        ("train", "search", 1, "q1", "b", [0]),  # one train example per clicked item
        ("train", "search", 1, "q1", "c", [0]),
        ("train", "rec", 2, "", "d", [0, 1]),
        ("valid", "search", 3, "q2", "e", [1, 2]),
        ("valid", "rec", 4, "", "f", [2, 3]),
        ("test", "search", 5, "q3", "g", [3, 4]),  # valid/test: the first clicked item only
        ("test", "rec", 6, "", "x", [4, 5]),
        ("train", "rec", 7, "", "a", []),  # u2: 2 rec events < min_events -> train only
        ("train", "rec", 8, "", "b", []),
    ]
    assert ex["example_id"].tolist() == list(range(10))


def test_train_history_skips_held_out_events_of_the_other_behavior():
    rows = [{"user_id": "u", "behavior": b, "timestamp": t, "query": "q" if b == "search" else "",
             "items": [f"i{t}"]} for t, b in enumerate(["search", "search", "rec", "search", "rec", "rec", "rec"])]
    ex = leave_one_out(make_events(rows), max_history=3, min_events=3)
    by_event = {(r.event_id, r.split): list(r.history) for r in ex.itertuples(index=False)}
    # search: 0 train, 1 valid, 3 test; rec: 2 train, 4 train, 5 valid, 6 test.
    assert by_event[(4, "train")] == [0, 2]  # skips held-out searches 1 and 3
    assert by_event[(6, "test")] == [3, 4, 5]  # evaluation histories keep everything earlier


def test_duplicate_protocol_history_never_holds_the_twin():
    raw = random_raw()
    query = {i: "q " + i for i in raw.items["item_id"]}
    events = apply_search_protocol(raw.events, query, "duplicate")
    ex = leave_one_out(events, max_history=5)
    twin = {}
    for _, ids in events.groupby(["user_id", "timestamp"])["event_id"]:
        assert len(ids) == 2
        twin[ids.iloc[0]], twin[ids.iloc[1]] = ids.iloc[1], ids.iloc[0]
    assert not any(twin[e] in h or e in h for e, h in zip(ex["event_id"], ex["history"], strict=True))
    # The rec and search test examples of a user are twins: same target.
    test = ex[ex["split"] == "test"].pivot(index="user_id", columns="behavior", values="target")
    assert (test["rec"] == test["search"]).all()


# ---- candidates -----------------------------------------------------------------------------


def test_search_candidates_follow_bm25_and_skip_seen_items():
    titles = {"t": "red saw", "A": "red saw blade", "B": "saw horse", "C": "red paint", "F": "red ball toy",
              "D": "glass beaker", "E": "lab scale"}
    items = make_items([{"item_id": k, "title": v} for k, v in titles.items()])
    events = make_events([
        {"user_id": "u", "behavior": "rec", "timestamp": 0, "items": ["A"]},
        {"user_id": "u", "timestamp": 1, "behavior": "search", "query": "red saw", "items": ["t"]},
    ])
    examples = pd.DataFrame([{"example_id": 0, "user_id": "u", "split": "test", "behavior": "search",
                              "event_id": 1, "query": "red saw", "target": "t", "history": [0]}])
    # df(red)=4 > df(saw)=3, so 'saw horse' beats 'red paint', which beats the longer 'red ball toy'.
    table, stats = build_candidates(examples, events, items, num_negatives=3)
    assert table["candidates"].tolist() == [["t", "B", "C", "F"]]
    assert stats.search_random_fill == 0
    # Only 3 items match: the other 2 negatives are random non-matching items.
    table, stats = build_candidates(examples, events, items, num_negatives=5)
    cands = table["candidates"][0]
    assert cands[:4] == ["t", "B", "C", "F"] and set(cands[4:]) == {"D", "E"}
    assert stats.search_random_fill == 1 and stats.short_lists == 0
    # Catalog too small: all 5 unseen items, recorded as a short list.
    table, stats = build_candidates(examples, events, items, num_negatives=9)
    assert sorted(table["candidates"][0][1:]) == ["B", "C", "D", "E", "F"]
    assert (stats.short_lists, stats.min_negatives) == (1, 5)


def test_rec_candidates_uniform_over_unseen_items():
    raw = random_raw(n_users=20, n_items=30)
    ex = leave_one_out(raw.events)
    table, stats = build_candidates(ex, raw.events, raw.items, num_negatives=10, seed=3)
    seen = {}
    for u, its in zip(raw.events["user_id"], raw.events["items"], strict=True):
        seen.setdefault(u, set()).update(its)
    targets = ex.set_index("example_id")
    counts = pd.Series([c for cands in table["candidates"] for c in cands[1:]]).value_counts()
    for ex_id, cands in zip(table["example_id"], table["candidates"], strict=True):
        assert cands[0] == targets.loc[ex_id, "target"]
        assert len(set(cands[1:])) == 10 and not set(cands[1:]) & seen[targets.loc[ex_id, "user_id"]]
    assert counts.index.isin(raw.items["item_id"]).all() and len(counts) > 15  # not a fixed subset
    again, _ = build_candidates(ex, raw.events, raw.items, num_negatives=10, seed=3)
    other, _ = build_candidates(ex, raw.events, raw.items, num_negatives=10, seed=4)
    assert again.equals(table) and not other.equals(table)
    assert stats.lists == len(table) and stats.short_lists == 0


# ---- prepare --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["mixed", "duplicate"])
def test_prepare_invariants_and_determinism(protocol):
    raw = random_raw(n_users=60, n_items=300)
    cfg = PrepareConfig(search_protocol=protocol, seed=1)
    data = prepare(raw, cfg)
    check_invariants(data)
    m = data.manifest
    assert m["search_protocol"] == protocol and m["options"]["seed"] == 1 and m["gensar_version"]
    assert m["queries"]["dropped_prefix"] == "shop"
    assert set(data.events.loc[data.events["behavior"] == "search", "query"]) == {
        "power tools saws", "power tools drills", "lab glassware", "lab scales", "tapes adhesives"}
    assert m["counts"]["examples"] == compute_stats(data)["examples"]
    again = prepare(raw, cfg)
    for name in ("events", "examples", "candidates"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(data, name))
    assert again.manifest == m
    other = prepare(raw, PrepareConfig(search_protocol=protocol, seed=2))
    assert not other.candidates.equals(data.candidates)


def test_prepare_auto_protocol_keeps_a_real_search_log_and_kcore_is_recorded():
    raw = random_raw()
    n = len(raw.events)
    events = raw.events.copy()
    events.loc[::3, "behavior"] = "search"
    events.loc[::3, "query"] = "real query"
    data = prepare(RawDataset(raw.items, events, "s", "test"), PrepareConfig(kcore=3, num_negatives=20))
    assert data.manifest["search_protocol"] == "none"
    assert set(data.events["query"]) <= {"", "real query"}
    k = data.manifest["kcore"]
    assert k["k"] == 3 and k["before"]["interactions"] == n
    assert k["after"]["interactions"] == len(data.events) < n
    check_invariants(data, num_negatives=20)


def test_config_validation():
    with pytest.raises(ConfigError, match="'search_ratio': must be in"):
        PrepareConfig(search_ratio=1.5).validate()
    with pytest.raises(ConfigError, match="'bm25.b'"):
        PrepareConfig(bm25=BM25Config(b=2.0)).validate()


def test_stats_hand_counted(tiny_prepared):
    s = compute_stats(tiny_prepared)
    ev = tiny_prepared.events
    assert s["users"] == 30 and s["items"] == 40
    assert s["rec_interactions"] + s["search_sessions"] == len(ev) == s["interactions"]
    assert s["unique_queries"] == ev.loc[ev["behavior"] == "search", "query"].nunique() <= 4
    assert s["avg_sequence_length"] == pytest.approx(len(ev) / 30)
    assert sum(n for split in s["examples"].values() for n in split.values()) == len(tiny_prepared.examples)
    assert "avg_history_length" in format_stats(s)


# ---- CLI ------------------------------------------------------------------------------------


def test_cli_prepare_stats_round_trip_and_errors(tmp_path, capsys):
    from gensar.data.canonical_writer import write_canonical

    src = write_canonical(random_raw(), None, tmp_path / "src")
    cfg = tmp_path / "prep.yaml"
    cfg.write_text("seed: 5\nnum_negatives: 30\nbm25:\n  k1: 1.2\n")
    out = tmp_path / "prep"
    argv = ["prepare", str(src), "--out", str(out), "--config", str(cfg), "--seed", "7",
            "--search-protocol", "duplicate", "--set", "max_history=3"]
    assert main(argv) == 0
    data = PreparedData.load(out)
    opts = data.manifest["options"]
    assert (opts["seed"], opts["num_negatives"], opts["max_history"], opts["bm25"]["k1"]) == (7, 30, 3, 1.2)
    assert data.manifest["format"] == "canonical"
    check_invariants(data, num_negatives=30)
    capsys.readouterr()
    assert main(["stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats == json.loads(json.dumps(compute_stats(data)))
    assert stats["rec_interactions"] == stats["search_sessions"] == len(random_raw().events)

    # Errors: one line on stderr, exit 2, no output left behind.
    assert main(argv) == 2
    assert "not empty (use --overwrite)" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    bad = tmp_path / "bad"
    for args, message in [
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(src), "--kcore", "1000"], "removed every interaction"),
        ([str(src), "--set", "bogus=1"], "unknown config key 'bogus'"),
        ([str(src), "--search-ratio", "2"], "'search_ratio': must be in [0, 1]"),
        ([str(out)], "is a prepared data directory"),
    ]:
        assert main(["prepare", *args, "--out", str(bad)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
        assert not bad.exists()


# ---- real data ------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_prepare_scientific_duplicate(scientific_dir):
    from gensar.data.loaders import load_dataset

    raw = load_dataset(scientific_dir)
    # The UniSRec release is already 5-core: 5-core removes nothing, 6-core unravels most of it.
    assert kcore(raw.items, raw.events, 5).rounds == 0
    six = kcore(raw.items, raw.events, 6)
    assert six.after.as_dict() == {"users": 519, "items": 273, "interactions": 3988}
    data = prepare(raw, PrepareConfig(search_protocol="duplicate"))
    s = compute_stats(data)
    assert (s["users"], s["items"]) == (8442, 4385)
    assert s["rec_interactions"] == s["search_sessions"] == 59427  # every purchase in both logs
    # Every user has >= 5 purchases: one valid and one test example per user and behavior.
    assert s["examples"] == {"train": {"rec": 59427 - 2 * 8442, "search": 59427 - 2 * 8442},
                             "valid": {"rec": 8442, "search": 8442}, "test": {"rec": 8442, "search": 8442}}
    q = data.manifest["queries"]
    assert q["dropped_prefix"] == "industrial scientific" and q["items_without_query"] == 0
    assert s["unique_queries"] == q["distinct_item_queries"] == 890
    assert not data.events["query"].str.startswith("industrial scientific").any()
    c = data.manifest["candidates"]
    assert (c["lists"], c["short_lists"], c["min_negatives"]) == (4 * 8442, 0, 99)


def test_query_source_title_from_the_cli_gives_specific_seeded_queries(tmp_path):
    from gensar.data.canonical_writer import write_canonical
    from gensar.data.queries import clean_words, words

    src = write_canonical(random_raw(), None, tmp_path / "src")
    runs = {}
    for name, flags in {"category": [], "title": ["--query-source", "title"],
                        "title2": ["--query-source", "title"], "mixed": ["--query-source", "mixed"]}.items():
        assert main(["prepare", str(src), "--out", str(tmp_path / name), "--seed", "2", *flags]) == 0
        runs[name] = PreparedData.load(tmp_path / name)
    cat, title = runs["category"], runs["title"]
    assert title.manifest["options"]["query_source"] == "title"
    assert cat.manifest["options"]["query_source"] == "category"
    assert title.events["behavior"].tolist() == cat.events["behavior"].tolist()  # same sessions search
    titles = dict(zip(title.items["item_id"], title.items["title"], strict=True))
    search = title.events[title.events["behavior"] == "search"]
    for query, clicked in zip(search["query"], search["items"], strict=True):
        content = iter(clean_words(words(titles[clicked[0]])))
        assert query and all(w in content for w in query.split())
    # titles name the model number, categories never do: the title queries are the specific ones
    assert search["query"].str.contains(r"\d").mean() > 0.5
    assert not cat.events["query"].str.contains(r"\d").any()
    pd.testing.assert_frame_equal(runs["title2"].events, title.events)  # seeded
    check_invariants(title)
    mixed = runs["mixed"].events
    is_search = (mixed["behavior"] == "search").to_numpy()
    from_title = (mixed["query"] != cat.events["query"]).to_numpy()[is_search]  # a category query is the item's
    assert 0.35 < from_title.mean() < 0.65


def test_loaded_data_reads_candidate_lists_on_first_use_only(tiny_prepared, tmp_path):
    """The candidate lists, the largest table, load when first read: the same table as written;
    a grown catalog (``with_items``) keeps them unread; a missing file is still refused at load."""
    out = tiny_prepared.save(tmp_path / "data")
    data = PreparedData.load(out)
    assert "candidates" not in data.__dict__ and type(data.__dict__["_candidates"]).__name__ == "_CandidatesFile"
    grown = data.with_items(data.items.iloc[:5])
    assert type(grown.__dict__["_candidates"]).__name__ == "_CandidatesFile"
    pd.testing.assert_frame_equal(data.candidates, tiny_prepared.candidates)
    assert isinstance(data.candidates["candidates"].iloc[0], list)
    assert isinstance(data.__dict__["_candidates"], pd.DataFrame)  # read once, kept
    pd.testing.assert_frame_equal(grown.candidates, tiny_prepared.candidates)
    # the read happens at first use: a file removed or rewritten after load is refused then, never
    # mixed with the tables read before it
    unread = PreparedData.load(out)
    (out / "candidates.parquet").unlink()
    assert len(unread.events) == len(tiny_prepared.events)  # the other tables were read at load
    with pytest.raises(GensarError, match=r"candidates\.parquet: missing \(the prepared data changed"):
        unread.candidates
    with pytest.raises(GensarError, match="candidates.parquet: missing"):
        PreparedData.load(out)
    tiny_prepared.candidates.to_parquet(out / "candidates.parquet", index=False)
    stale = PreparedData.load(out)
    tiny_prepared.candidates.iloc[:3].to_parquet(out / "candidates.parquet", index=False)
    with pytest.raises(GensarError, match="changed after the prepared data was loaded"):
        stale.candidates


# ---- search twins (gensar.data.twins) ---------------------------------------------------------


def test_twin_mask_marks_only_the_same_click_logged_in_the_other_behavior():
    rows = [("u", "rec", 0, ["a"]), ("u", "search", 0, ["a"]),  # twin
            ("u", "search", 5, ["a"]),  # the same item later: a real repeat
            ("u", "rec", 6, ["b"]), ("u", "rec", 6, ["b"]),  # same behavior: not a twin
            ("u", "search", 7, ["c", "d"]), ("u", "rec", 7, ["c"]),  # other items
            ("v", "search", 7, ["c", "d"])]  # another user's first event
    events = make_events([{"user_id": u, "behavior": b, "timestamp": t, "items": i,
                           "query": "q" if b == "search" else ""} for u, b, t, i in rows])
    assert twin_mask(events).tolist() == [False, True, False, False, False, False, False, False]


def test_item_sequence_models_read_each_interaction_once_under_the_duplicate_protocol():
    from gensar.baselines.scorer import requests_for
    from gensar.embed.sasrec_protocols import gensar_protocol, unified_sequences

    raw = random_raw()
    dup = prepare(raw, PrepareConfig(search_protocol="duplicate"))
    assert len(dup.twin_event_ids) == int((dup.events["behavior"] == "search").sum()) > 0
    index = dup.item_index
    # every search session is a twin: each user's sequence is the raw log, once
    raw_seqs = {u: [index[i] for items in g["items"] for i in items] for u, g in raw.events.groupby("user_id")}
    assert unified_sequences(dup) == raw_seqs
    p = gensar_protocol(dup)
    held = dup.held_out_event_ids
    rec_train = dup.events[(dup.events["behavior"] == "rec") & ~dup.events["event_id"].isin(held)]
    assert sum(len(s) for s in p.train_seqs) == sum(len(i) for i in rec_train["items"])
    rec_valid = dup.split("valid", "rec")
    ev = dup.events
    for ex, history, request in zip(rec_valid.itertuples(), p.valid.histories, requests_for(dup, rec_valid),
                                    strict=True):
        earlier = ev[(ev["user_id"] == ex.user_id) & (ev["behavior"] == "rec")
                     & (ev["timestamp"] < ev.loc[ex.event_id, "timestamp"])]
        assert list(request.history) == history == [index[i] for items in earlier["items"] for i in items]
    # a mixed log has no twins: nothing is skipped
    assert prepare(raw, PrepareConfig(search_protocol="mixed")).twin_event_ids == frozenset()
