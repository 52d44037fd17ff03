"""Canonical files: round trips in every format, the CSV/JSONL conventions, located errors."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gensar.data.canonical import FORMATS, is_canonical, read_canonical
from gensar.data.canonical_writer import write_canonical
from gensar.data.schema import RawDataset, make_events, make_items
from gensar.errors import GensarError, InputError

ITEMS = [
    {"item_id": "a", "title": 'Saw, "fast"', "categories": ["Tools", "Power Tools", "Saws"],
     "description": "line one\nline two, with comma\r and a bare CR", "brand": "Bosch"},
    {"item_id": "b", "title": "Mikroskop für Labore — µ", "categories": ["Lab"], "description": "", "brand": ""},
    {"item_id": "c", "title": "", "categories": [], "description": "", "brand": "3M"},
]
EVENTS = [
    {"user_id": "u2", "timestamp": 5, "behavior": "rec", "query": "", "items": ["c"]},
    {"user_id": "u1", "timestamp": 2, "behavior": "search", "query": "power saw", "items": ["a", "b"]},
    {"user_id": "u1", "timestamp": 1, "behavior": "rec", "query": "", "items": ["b"]},
    {"user_id": "u1", "timestamp": 2, "behavior": "rec", "query": "", "items": ["a"]},  # tie: file order kept
]


def _write(root, name, content: str | bytes):
    root.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    (root / name).write_bytes(data)


def _jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


GOOD_ITEMS = _jsonl([{"item_id": "a"}, {"item_id": "b"}])


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_every_format(tmp_path, fmt):
    out = write_canonical(make_items(ITEMS), make_events(EVENTS), tmp_path / "d", fmt)
    assert sorted(p.name for p in out.iterdir()) == sorted([".gensar-run.json", f"events.{fmt}", f"items.{fmt}"])
    assert is_canonical(out)
    raw = read_canonical(out)
    assert raw.format == "canonical" and raw.source == str(out)
    pd.testing.assert_frame_equal(raw.items, make_items(ITEMS))
    pd.testing.assert_frame_equal(raw.events, make_events(EVENTS))
    # sorted by user then time; the tie at u1/t=2 keeps the input order (search before rec)
    assert raw.events[["user_id", "timestamp", "behavior"]].values.tolist() == [
        ["u1", 1, "rec"], ["u1", 2, "search"], ["u1", 2, "rec"], ["u2", 5, "rec"]]
    # writing a RawDataset gives the same bytes as writing its tables
    again = write_canonical(raw, None, tmp_path / "e", fmt)
    if fmt != "parquet":  # parquet embeds writer metadata; jsonl/csv (and gzip with mtime=0) are byte-stable
        for name in ("items", "events"):
            assert (again / f"{name}.{fmt}").read_bytes() == (out / f"{name}.{fmt}").read_bytes()


def test_csv_conventions(tmp_path):
    _write(tmp_path, "items.csv", "item_id,title,categories,price\n"
                                  "a,Saw,Tools > Power Tools > Saws,9.5\n"
                                  'b,"two\nlines",Lab,1\n')
    _write(tmp_path, "events.csv", "user_id,timestamp,behavior,query,items,item_id\n"
                                   "u1,10,,,,a\n"
                                   "u1,11,search,lab saw,a b,\n")
    raw = read_canonical(tmp_path)
    assert raw.items["categories"].tolist() == [["Tools", "Power Tools", "Saws"], ["Lab"]]
    assert raw.items["title"].tolist() == ["Saw", "two\nlines"]
    assert raw.events["items"].tolist() == [["a"], ["a", "b"]]
    assert raw.events["behavior"].tolist() == ["rec", "search"]  # empty behavior = rec
    assert raw.info["ignored_columns"] == {"items": ["price"], "events": []}


def test_jsonl_shorthands_and_gzip(tmp_path):
    _write(tmp_path, "items.jsonl.gz", gzip.compress(_jsonl([
        {"item_id": 7, "categories": "Tools > Saws"}, {"item_id": "b", "title": None}]).encode()))
    _write(tmp_path, "events.jsonl", "\n" + _jsonl([
        {"user_id": 1, "timestamp": 3.0, "item_id": 7},
        {"user_id": "1", "timestamp": "4", "behavior": "Search", "query": "saw", "items": ["7", "b"]}]))
    raw = read_canonical(tmp_path)
    assert raw.items["item_id"].tolist() == ["7", "b"]
    assert raw.items["categories"].tolist() == [["Tools", "Saws"], []]
    assert raw.events[["user_id", "timestamp", "behavior", "query"]].values.tolist() == [
        ["1", 3, "rec", ""], ["1", 4, "search", "saw"]]


# (file name, content, expected message); the items table is GOOD_ITEMS unless the case replaces it
ERRORS = [
    ("events.jsonl", '{"user_id": "u", "timestamp": 1, "item_id": "a"}\n\n{"user_id": "u", "timestamp": 2,\n',
     r"events\.jsonl:3: malformed JSON"),
    ("events.jsonl", '{"user_id": "u", "timestamp": 1, "item_id": "a"}\n["u", 2]\n',
     r"events\.jsonl:2: expected a JSON object"),
    ("events.csv", "user_id,items\nu,a\n", r"events\.csv:1: field 'timestamp': missing required column"),
    ("events.csv", "user_id,timestamp\nu,1\n", r"events\.csv:1: field 'items': missing required column"),
    ("events.jsonl", '{"user_id": "u", "timestamp": 1, "item_id": "a"}\n{"timestamp": 1, "item_id": "a"}\n',
     r"events\.jsonl:2: field 'user_id': missing required value"),
    ("items.jsonl", b'{"item_id": "a"}\n{"item_id": "b\xff"}\n', r"items\.jsonl:2: not UTF-8"),
    ("items.jsonl", "", r"items\.jsonl: file is empty"),
    ("events.csv", "user_id,timestamp,items\n", r"events\.csv:1: no rows after the header"),
    ("items.jsonl", '{"item_id": "a"}\n{"item_id": "b"}\n{"item_id": "a"}\n',
     r"items\.jsonl:3: field 'item_id': duplicate item id 'a' \(first at line 1\)"),
    ("items.csv", "item_id,title\na,x\nb,y\n a ,z\n",
     r"items\.csv:4: field 'item_id': duplicate item id 'a' \(first at line 2\)"),
    ("events.jsonl", ('{"user_id": "u", "timestamp": 1, "item_id": "a"}\n'
                      '{"user_id": "u", "timestamp": 2, "behavior": "search", "query": "q", "items": ["a", "zz"]}\n'),
     r"events\.jsonl:2: field 'items': unknown item 'zz'"),
    ("items.csv", 'item_id,title\na,"two\nlines"\nb,y\na,z\n',  # the quoted newline counts
     r"items\.csv:5: field 'item_id': duplicate item id 'a' \(first at line 2\)"),
    ("events.csv", 'user_id,timestamp,item_id\nu,1,a\n"u\nx",2,a\nu,3,nope\n',  # but not inside an id (issue 15)
     r"events\.csv:3: field 'user_id': a quoted value runs over a line end"),
    ("events.jsonl", '{"user_id": "u", "timestamp": 1, "behavior": "click", "item_id": "a"}\n',
     r"events\.jsonl:1: field 'behavior': behavior must be 'rec' or 'search', got 'click'"),
    ("events.csv", "user_id,timestamp,item_id\nu,1,a\nu,2020-01-01,a\n",
     r"events\.csv:3: field 'timestamp': timestamp must be an integer, got '2020-01-01'"),
    ("events.jsonl", '{"user_id": "u", "timestamp": 1.5, "item_id": "a"}\n',
     r"events\.jsonl:1: field 'timestamp': timestamp must be an integer, got 1\.5"),
    ("events.jsonl", '{"user_id": "u", "timestamp": 1, "behavior": "search", "item_id": "a"}\n',
     r"events\.jsonl:1: field 'query': a search event needs a non-empty query"),
    ("events.jsonl", '{"user_id": "u", "timestamp": 1, "query": "saw", "item_id": "a"}\n',
     r"events\.jsonl:1: field 'query': a rec event must not have a query"),
    ("events.jsonl", '{"user_id": "u", "timestamp": 1, "items": ["a", "b"]}\n',
     r"events\.jsonl:1: field 'items': a rec event has exactly one item, got 2"),
    ("events.jsonl", '{"user_id": "u", "timestamp": 1, "items": ["a"], "item_id": "a"}\n',
     r"events\.jsonl:1: field 'items': give either 'items' or 'item_id', not both"),
    ("events.jsonl", '{"user_id": "u", "timestamp": 1, "items": "a"}\n',
     r"events\.jsonl:1: field 'items': expected a list of item ids, got str"),
    ("events.jsonl", '{"user_id": "u", "timestamp": 1, "behavior": "search", "query": "q", "items": ["a", "a"]}\n',
     r"events\.jsonl:1: field 'items': item 'a' is listed twice"),
    ("events.csv", "user_id,timestamp,item_id\nu,1,a,extra\n", r"events\.csv:2: row has 4 fields, the header has 3"),
    ("items.jsonl", '{"item_id": "a", "categories": {"x": 1}}\n', r"items\.jsonl:1: field 'categories': expected"),
    ("events.jsonl.gz", b"not gzip at all", r"events\.jsonl\.gz: not a valid gzip file"),
]


@pytest.mark.parametrize(("name", "content", "message"), ERRORS, ids=[m for _, _, m in ERRORS])
def test_errors_name_file_line_and_field(tmp_path, name, content, message):
    if not name.startswith("items"):
        _write(tmp_path, "items.jsonl", GOOD_ITEMS)
    else:
        _write(tmp_path, "events.jsonl", '{"user_id": "u", "timestamp": 1, "item_id": "a"}\n')
    _write(tmp_path, name, content)
    with pytest.raises(InputError, match=message) as info:
        read_canonical(tmp_path)
    assert str(tmp_path / name) in str(info.value)
    assert "\n" not in str(info.value)


def test_parquet_errors_name_the_row(tmp_path):
    write_canonical(make_items(ITEMS), make_events(EVENTS), tmp_path / "d", "parquet")
    bad = pd.read_parquet(tmp_path / "d" / "events.parquet")
    bad.loc[2, "items"] = ["zz"]
    bad.to_parquet(tmp_path / "d" / "events.parquet", index=False)
    with pytest.raises(InputError, match=r"events\.parquet: field 'items': unknown item 'zz' .*\(row 3\)"):
        read_canonical(tmp_path / "d")
    (tmp_path / "d" / "items.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(InputError, match=r"items\.parquet: not a readable Parquet file"):
        read_canonical(tmp_path / "d")


def test_directory_level_errors(tmp_path):
    with pytest.raises(InputError, match="not a directory"):
        read_canonical(tmp_path / "absent")
    _write(tmp_path, "items.jsonl", GOOD_ITEMS)
    assert not is_canonical(tmp_path)
    with pytest.raises(InputError, match=r"no events table"):
        read_canonical(tmp_path)
    _write(tmp_path, "events.jsonl", '{"user_id": "u", "timestamp": 1, "item_id": "a"}\n')
    _write(tmp_path, "items.csv", "item_id\na\n")
    with pytest.raises(InputError, match=r"several items tables \(items\.jsonl, items\.csv\)"):
        read_canonical(tmp_path)
    assert not is_canonical(tmp_path / "items.jsonl")


def test_write_refuses_what_it_cannot_represent(tmp_path):
    items = make_items([{"item_id": "a b"}, {"item_id": "c"}])
    events = make_events([{"user_id": "u", "timestamp": 1, "items": ["a b"]}])
    with pytest.raises(InputError, match=r"field 'items': item id 'a b' contains whitespace"):
        write_canonical(items, events, tmp_path / "csv", "csv")
    assert not (tmp_path / "csv").exists()  # atomic: nothing half-written
    with pytest.raises(InputError, match=r"field 'categories': category 'x > y' cannot be written to CSV"):
        write_canonical(make_items([{"item_id": "c", "categories": ["x > y"]}]),
                        make_events([{"user_id": "u", "timestamp": 1, "items": ["c"]}]), tmp_path / "csv", "csv")
    out = write_canonical(items, events, tmp_path / "jsonl", "jsonl")  # JSONL holds both
    assert read_canonical(out).events["items"].tolist() == [["a b"]]
    with pytest.raises(GensarError, match="not empty"):
        write_canonical(items, events, out, "jsonl")
    write_canonical(RawDataset(items, events, "x", "x"), None, out, "parquet", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [".gensar-run.json", "events.parquet", "items.parquet"]
    with pytest.raises(GensarError, match="unknown canonical format 'tsv'"):
        write_canonical(items, events, tmp_path / "t", "tsv")


_ID = st.text(alphabet=st.characters(categories=["L", "N"]) | st.sampled_from("-_.:/"), min_size=1, max_size=6)
_TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20)  # any text but lone surrogates
_CATEGORY = _TEXT.map(lambda t: t.replace(">", "").strip()).filter(bool)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), fmt=st.sampled_from(["jsonl", "csv", "parquet"]))
def test_round_trip_any_text(tmp_path_factory, data, fmt):
    ids = data.draw(st.lists(_ID, min_size=1, max_size=5, unique=True))
    items = make_items([
        {"item_id": i, "title": data.draw(_TEXT), "description": data.draw(_TEXT), "brand": data.draw(_TEXT),
         "categories": data.draw(st.lists(_CATEGORY, max_size=3))} for i in ids])
    events = make_events([
        {"user_id": data.draw(_ID), "timestamp": data.draw(st.integers(-2**62, 2**62)), "behavior": "search",
         "query": data.draw(_TEXT.filter(str.strip).filter(lambda q: not set(q) & set("\x00\n\r"))),
         "items": data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=3, unique=True))}
        for _ in range(data.draw(st.integers(1, 4)))])
    out = write_canonical(items, events, tmp_path_factory.mktemp("rt") / "d", fmt)
    raw = read_canonical(out)
    pd.testing.assert_frame_equal(raw.items, items)
    pd.testing.assert_frame_equal(raw.events, events)
