"""Semi-synthetic queries and search protocols (gensar.data.queries)."""

from __future__ import annotations

import numpy as np
import pytest

from gensar.data.queries import (
    STOP_WORDS,
    apply_search_protocol,
    build_item_queries,
    clean_words,
    common_word_prefix,
    title_query,
    words,
)
from gensar.data.schema import make_events, make_items
from gensar.errors import GensarError

ROOT = "Industrial & Scientific"


def test_words_split_on_punctuation_and_lowercase():
    assert words("Industrial & Scientific") == ["industrial", "scientific"]
    assert words("Wet-Dry Vacuum's 1/2-Inch, (PVC)") == ["wet", "dry", "vacuum", "s", "1", "2", "inch", "pvc"]
    assert words("snake_case") == ["snake", "case"]
    assert words("") == []


def test_clean_words_drops_stop_words_and_repeats_in_order():
    tokens = ["tools", "for", "the", "home", "and", "tools", "garden", "s"]
    assert clean_words(tokens) == ["tools", "home", "garden"]
    assert {"the", "and", "for", "of", "with", "don", "t"} <= STOP_WORDS
    assert not any("'" in w for w in STOP_WORDS)  # words() never yields apostrophes


def test_common_word_prefix():
    assert common_word_prefix([["a", "b", "c"], ["a", "b"], ["a", "x"]]) == ["a"]
    assert common_word_prefix([["a", "b"], ["a", "b", "c"]]) == ["a", "b"]
    assert common_word_prefix([["a"], ["b"]]) == []
    assert common_word_prefix([["a", "b"]]) == []  # one path: nothing is known to be a root
    assert common_word_prefix([]) == []


def test_item_queries_hand_written():
    items = make_items([
        # root given as its own category, rest of the path joined by spaces (amazon-scientific)
        {"item_id": "i1", "title": "Sanding Roll 80 grit",
         "categories": [ROOT, "Abrasive & Finishing Products Manual Sanding Products Sanding Rolls"]},
        # the whole path as one string: the root is a word prefix, not a list element
        {"item_id": "i2", "title": "Beaker", "categories": [f"{ROOT} Lab & Scientific Products Lab Beakers"]},
        # no categories: the title, cleaned
        {"item_id": "i3", "title": "The Men's Safety-Glasses, for the Shop!!", "categories": []},
        # only the root: nothing left after dropping it, so the title
        {"item_id": "i4", "title": "Gorilla Glue (8 oz)", "categories": [ROOT]},
        # nothing at all: no query
        {"item_id": "i5", "title": "", "categories": []},
    ])
    q = build_item_queries(items)
    assert q.dropped_prefix == ["industrial", "scientific"]
    assert q.queries == [
        "abrasive finishing products manual sanding rolls",
        "lab scientific products beakers",  # 'scientific' after the root is kept; 2nd 'lab' is a repeat
        "men safety glasses shop",
        "gorilla glue 8 oz",
        "",
    ]
    assert (q.from_title, q.missing) == (2, 1)


def test_no_root_dropped_without_a_shared_prefix_and_queries_capped():
    items = make_items([
        {"item_id": "a", "title": "x", "categories": ["Tools", "Power Saws"]},
        {"item_id": "b", "title": "x", "categories": ["Lab", "Scales"]},
        {"item_id": "c", "title": "Very Long Title With Many Many Words In It", "categories": []},
    ])
    q = build_item_queries(items, max_words=3)
    assert q.dropped_prefix == []
    assert q.queries == ["tools power saws", "lab scales", "long title many"]


def _rec_log(n_users: int = 40, n_events: int = 50, n_items: int = 6):
    rng = np.random.default_rng(1)
    rows = [{"user_id": f"u{u}", "timestamp": t, "items": [f"i{int(rng.integers(n_items))}"]}
            for u in range(n_users) for t in range(n_events)]
    return make_events(rows)


QUERY = {"i0": "saw", "i1": "drill", "i2": "glass", "i3": "scale", "i4": "tape"}  # i5: no query


def test_mixed_protocol_ratio_seed_and_unsearchable_items():
    events = _rec_log()
    out = apply_search_protocol(events, QUERY, "mixed", search_ratio=0.3, seed=0)
    # Same interactions, in the same order; only behavior/query change.
    assert out["items"].tolist() == events["items"].tolist()
    assert out["timestamp"].tolist() == events["timestamp"].tolist()
    search = out[out["behavior"] == "search"]
    assert (search["query"] == [QUERY[i[0]] for i in search["items"]]).all()
    assert (out.loc[out["behavior"] == "rec", "query"] == "").all()
    assert not any(i[0] == "i5" for i in search["items"])  # no query -> stays rec
    searchable = sum(i[0] != "i5" for i in events["items"])
    assert abs(len(search) / searchable - 0.3) < 0.04  # 2000 events: 3 sigma ~ 0.03
    again = apply_search_protocol(events, QUERY, "mixed", search_ratio=0.3, seed=0)
    assert again.equals(out)
    other = apply_search_protocol(events, QUERY, "mixed", search_ratio=0.3, seed=1)
    assert not other["behavior"].equals(out["behavior"])
    assert (apply_search_protocol(events, QUERY, "mixed", search_ratio=0.0)["behavior"] == "rec").all()
    all_search = apply_search_protocol(events, QUERY, "mixed", search_ratio=1.0)
    assert (all_search["behavior"] == "search").sum() == searchable


def test_duplicate_protocol_twins():
    events = make_events([
        {"user_id": "u", "timestamp": 5, "items": ["i0"]},
        {"user_id": "u", "timestamp": 9, "items": ["i5"]},  # no query: no twin
        {"user_id": "v", "timestamp": 1, "items": ["i2"]},
    ])
    out = apply_search_protocol(events, QUERY, "duplicate")
    got = [(r.event_id, r.user_id, r.timestamp, r.behavior, r.query, r.items)
           for r in out.itertuples(index=False)]
    assert got == [
        (0, "u", 5, "rec", "", ["i0"]),
        (1, "u", 5, "search", "saw", ["i0"]),
        (2, "u", 9, "rec", "", ["i5"]),
        (3, "v", 1, "rec", "", ["i2"]),
        (4, "v", 1, "search", "glass", ["i2"]),
    ]


def test_none_protocol_keeps_events_and_synthetic_protocols_refuse_real_search_logs():
    events = make_events([
        {"user_id": "u", "behavior": "rec", "timestamp": 1, "items": ["i0"]},
        {"user_id": "u", "timestamp": 2, "behavior": "search", "query": "red saw", "items": ["i0", "i1"]},
    ])
    assert apply_search_protocol(events, QUERY, "none").equals(events)
    with pytest.raises(GensarError, match="already has 1 search sessions"):
        apply_search_protocol(events, QUERY, "mixed")
    with pytest.raises(GensarError, match="unknown search protocol 'bogus'"):
        apply_search_protocol(events, QUERY, "bogus")


def _is_ordered_subset(query: str, content: list[str]) -> bool:
    it = iter(content)
    return all(w in it for w in query.split())  # consumes the iterator: order is checked


def test_title_query_is_a_seeded_ordered_subset_of_content_words():
    title = "The Stecraft Centrifuge FU-263 for the lab"
    content = ["stecraft", "centrifuge", "fu", "263", "lab"]  # stop words and punctuation gone
    draws = [title_query(title, np.random.default_rng(s)) for s in range(200)]
    assert all(_is_ordered_subset(q, content) for q in draws)
    assert {len(q.split()) for q in draws} == {2, 3, 4}  # k in TITLE_QUERY_WORDS
    assert len(set(draws)) > 10  # a real subset draw, not one fixed query
    assert draws == [title_query(title, np.random.default_rng(s)) for s in range(200)]  # seeded
    assert all(len(title_query(title, np.random.default_rng(s), max_words=1).split()) == 1 for s in range(20))
    assert title_query("the of and", np.random.default_rng(0)) == ""
    assert title_query("Centrifuge", np.random.default_rng(0)) == "centrifuge"


TITLES = {"i0": "Acme Cordless Saw X-100", "i1": "Bolt Drill Pro", "i2": "Beaker Glass 500ml",
          "i3": "Digital Balance", "i4": "Duct Roll", "i5": "The"}  # i5: no words, no query


@pytest.mark.parametrize("protocol", ["mixed", "duplicate"])
def test_query_sources_title_and_mixed(protocol):
    events = _rec_log()
    base = apply_search_protocol(events, QUERY, protocol, search_ratio=0.5, seed=3)
    same = apply_search_protocol(events, QUERY, protocol, 0.5, 3, "category", TITLES)
    assert same.equals(base)  # the default source is exactly the category queries of before
    title = apply_search_protocol(events, QUERY, protocol, 0.5, 3, "title", TITLES)
    # the same sessions search (the source draws have their own generator); only queries differ
    assert title["behavior"].tolist() == base["behavior"].tolist()
    search = title[title["behavior"] == "search"]
    content = {i: clean_words(words(t)) for i, t in TITLES.items()}
    assert all(_is_ordered_subset(q, content[its[0]]) for q, its in zip(search["query"], search["items"]))
    assert search["query"].nunique() > 5  # drawn per session, not one query per item
    assert apply_search_protocol(events, QUERY, protocol, 0.5, 3, "title", TITLES).equals(title)
    assert not apply_search_protocol(events, QUERY, protocol, 0.5, 4, "title", TITLES)["query"].equals(title["query"])
    mixed = apply_search_protocol(events, QUERY, protocol, 0.5, 3, "mixed", TITLES)
    msearch = mixed[mixed["behavior"] == "search"]
    from_category = (msearch["query"] == [QUERY[its[0]] for its in msearch["items"]]).to_numpy()
    # "saw" etc. are not title words, so a category query tells its source apart
    assert abs(from_category.mean() - 0.5) < 0.06
    assert all(_is_ordered_subset(q, content[its[0]])
               for q, its, cat in zip(msearch["query"], msearch["items"], from_category) if not cat)


def test_query_source_errors():
    events = _rec_log(2, 3)
    with pytest.raises(GensarError, match="unknown query source 'bogus'"):
        apply_search_protocol(events, QUERY, "mixed", query_source="bogus")
    with pytest.raises(GensarError, match="applies to semi-synthetic search only"):
        apply_search_protocol(events, QUERY, "none", query_source="title", item_title=TITLES)
