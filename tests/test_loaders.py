"""Dataset loaders: tiny hand-written fixtures per format, exact tables, detection, errors."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from gensar.data.loaders import detect_format, load_dataset
from gensar.data.loaders.amazon import strip_html
from gensar.data.loaders.kuaisar import token_words
from gensar.data.loaders.recbole import parse_category_cell, split_category_paths, split_item_texts
from gensar.data.schema import EVENT_COLUMNS, ITEM_COLUMNS, RawDataset
from gensar.errors import GensarError, InputError


def write(path: Path, text: str | bytes) -> Path:
    """Write ``text`` (UTF-8 unless bytes), gzip-compressed when the name ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode("utf-8") if isinstance(text, str) else text))
    elif isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def items_of(raw: RawDataset) -> list[tuple]:
    assert tuple(raw.items.columns) == ITEM_COLUMNS
    return [(r.item_id, r.title, list(r.categories), r.description, r.brand) for r in raw.items.itertuples()]


def events_of(raw: RawDataset) -> list[tuple]:
    assert tuple(raw.events.columns) == EVENT_COLUMNS
    assert raw.events["event_id"].tolist() == list(range(len(raw.events)))
    return [(r.user_id, r.timestamp, r.behavior, r.query, list(r.items)) for r in raw.events.itertuples()]


def raises_at(match_parts: list[str], fn, *args) -> InputError:
    """Run ``fn``; it must raise InputError whose message contains every part."""
    with pytest.raises(InputError) as info:
        fn(*args)
    for part in match_parts:
        assert part in str(info.value), (part, str(info.value))
    return info.value


# ---- RecBole: interaction variant + .item ----------------------------------------------------

PLAIN_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "u1\ti2\t5\t20\n"
    "u1\ti1\t4\t10\n"
    "u2\ti1\t1\t5.4\n"
    "u2\ti3\t3\t5\n"
)
PLAIN_ITEM = (
    "item_id:token\ttitle:token_seq\tcategories:token_seq\tbrand:token\n"
    "i1\tDrill X\t['Tools', 'Power Tools']\tVoltix\n"
    "i2\tSaw\tTools|Saws\t\n"
    "i3\tGlass\t\tLab\n"
    "i4\tUnused\tTools\tX\n"
)


@pytest.fixture
def recbole_plain(tmp_path: Path) -> Path:
    write(tmp_path / "toy" / "toy.inter", PLAIN_INTER)
    write(tmp_path / "toy" / "toy.item", PLAIN_ITEM)
    return tmp_path / "toy"


def test_recbole_interaction_variant_exact(recbole_plain: Path) -> None:
    raw = load_dataset(recbole_plain, "recbole")
    assert raw.format == "recbole"
    assert items_of(raw) == [
        ("i1", "Drill X", ["Tools", "Power Tools"], "", "Voltix"),
        ("i2", "Saw", ["Tools", "Saws"], "", ""),
        ("i3", "Glass", [], "", "Lab"),
    ]
    # u2: 5.0 and 5.4 both become 5; the float order (i3 before i1) survives the cast
    assert events_of(raw) == [
        ("u1", 10, "rec", "", ["i1"]),
        ("u1", 20, "rec", "", ["i2"]),
        ("u2", 5, "rec", "", ["i3"]),
        ("u2", 5, "rec", "", ["i1"]),
    ]
    assert raw.info["items_without_interactions"] == 1  # i4
    assert raw.info["variant"] == "interaction"
    assert (raw.info["users"], raw.info["items"], raw.info["interactions"]) == (2, 3, 4)


def test_recbole_without_timestamp_or_item_file_keeps_file_order(tmp_path: Path) -> None:
    write(tmp_path / "d" / "x.inter", "item_id:token\tuser_id:token\nb\tu\na\tu\nb\tv\n")
    raw = load_dataset(tmp_path / "d" / "x.inter")  # a .inter path also works
    assert events_of(raw) == [
        ("u", 0, "rec", "", ["b"]),
        ("u", 1, "rec", "", ["a"]),
        ("v", 0, "rec", "", ["b"]),
    ]
    assert items_of(raw) == [("b", "", [], "", ""), ("a", "", [], "", "")]


# ---- RecBole: sequence variant + index maps + .text ------------------------------------------

# alice's sequence is 0..6 (7 items), bob's is 7 2 0 5; histories are cut to L = 3 items,
# so alice's test row alone (history 3 4 5, next 6) would give only 4 of her 7 items.
SEQ_TRAIN = (
    "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    "0\t1 2 3\t4\n"  # cut: alice's full history here is 0 1 2 3
    "0\t0 1 2\t3\n"
    "0\t0 1\t2\n"
    "0\t0\t1\n"
    "1\t7\t2\n"
)
SEQ_VALID = "user_id:token\titem_id_list:token_seq\titem_id:token\n0\t2 3 4\t5\n1\t7 2\t0\n"
SEQ_TEST = "user_id:token\titem_id_list:token_seq\titem_id:token\n0\t3 4 5\t6\n1\t7 2 0\t5\n"
ITEM2INDEX = "".join(f"P{i}\t{i}\n" for i in range(8))
USER2INDEX = "alice\t0\nbob\t1\n"
TEXT = (
    "item_id:token\ttext:token_seq\n"
    "P0\tDrill X. Shop Power Tools Drills. Voltix. \n"
    "P1\tSaw Blade. Shop Power Tools Saws. Cutco. \n"
    "P2\tMr. Heater Big. Shop Heating. Mr. Heater. \n"
    "P3\tBeaker 50 ml. Shop Lab Glassware. . \n"
    "P4\tTape. . J.V. Converting. \n"
    "P5\tPlain title only\n"
    "P6\tGlue. Shop Adhesives. Gorilla. \n"
    "P7\tGloves. Shop Safety. Ansell. \n"
)


def write_sequence_dataset(root: Path, *, text: str = TEXT, train: str = SEQ_TRAIN) -> Path:
    write(root / "Toy.train.inter", train)
    write(root / "Toy.valid.inter", SEQ_VALID)
    write(root / "Toy.test.inter", SEQ_TEST)
    write(root / "Toy.item2index", ITEM2INDEX)
    write(root / "Toy.user2index", USER2INDEX)
    write(root / "Toy.text", text)
    return root


def test_recbole_sequence_variant_rebuilds_cut_histories(tmp_path: Path) -> None:
    raw = load_dataset(write_sequence_dataset(tmp_path / "seq"), "recbole")
    assert events_of(raw) == (
        [("alice", t, "rec", "", [f"P{t}"]) for t in range(7)]
        + [("bob", t, "rec", "", [p]) for t, p in enumerate(["P7", "P2", "P0", "P5"])]
    )
    assert raw.info["max_history_in_files"] == 3
    assert raw.info["interactions"] == 11
    assert raw.info["category_root"] == "Shop"
    # items follow the item2index order; text parsed into title / [root, rest of path] / brand
    assert items_of(raw) == [
        ("P0", "Drill X", ["Shop", "Power Tools Drills"], "", "Voltix"),
        ("P1", "Saw Blade", ["Shop", "Power Tools Saws"], "", "Cutco"),
        ("P2", "Mr. Heater Big", ["Shop", "Heating"], "", "Mr. Heater"),
        ("P3", "Beaker 50 ml", ["Shop", "Lab Glassware"], "", ""),
        ("P4", "Tape", [], "", "J.V. Converting"),
        ("P5", "Plain title only", [], "", ""),
        ("P6", "Glue", ["Shop", "Adhesives"], "", "Gorilla"),
        ("P7", "Gloves", ["Shop", "Safety"], "", "Ansell"),
    ]


def test_recbole_text_ids_given_as_indices_are_mapped(tmp_path: Path) -> None:
    text = TEXT.replace("\nP", "\n")  # "0\tDrill X. ..." instead of "P0\t..."
    raw = load_dataset(write_sequence_dataset(tmp_path / "seq", text=text), "recbole")
    assert raw.items["item_id"].tolist() == [f"P{i}" for i in range(8)]


def test_split_item_texts_and_category_root() -> None:
    parsed = split_item_texts(["A. R x. B. ", "C. R y. D. ", "Mr. E. R x. Mr. F. ", "G"])
    assert parsed == [("A", "R x", "B"), ("C", "R y", "D"), ("Mr. E", "R x", "Mr. F"), ("G", "", "")]
    cats, root = split_category_paths(["R x z", "R y", "", "R"])
    assert root == "R"
    assert cats == [["R", "x z"], ["R", "y"], [], ["R"]]
    # one distinct path: no root can be told apart
    assert split_category_paths(["R x", "R x"]) == ([["R x"], ["R x"]], "")


def test_parse_category_cell() -> None:
    assert parse_category_cell("[['A', 'B'], ['C']]", "categories") == ["A", "B"]
    assert parse_category_cell("A | B", "categories") == ["A", "B"]
    assert parse_category_cell("Action Comedy", "class") == ["Action", "Comedy"]
    assert parse_category_cell("Power Tools", "categories") == ["Power Tools"]
    assert parse_category_cell("", "categories") == []


# ---- Amazon JSON lines ------------------------------------------------------------------------

REVIEWS = (
    "\n".join(
        json.dumps(r)
        for r in [
            {"reviewerID": "U1", "asin": "A1", "unixReviewTime": 200, "overall": 5.0},
            {"reviewerID": "U1", "asin": "A2", "unixReviewTime": 100},
            {"reviewerID": "U2", "asin": "A3", "unixReviewTime": 150},  # A3 has no metadata
            {"reviewerID": "U2", "asin": "A1", "unixReviewTime": 150},
        ]
    )
    + "\n"
)
META_2014 = (  # Python dict literals, as in the 2014 dumps
    "{'asin': 'A1', 'title': 'Drill <b>Pro</b> &amp; Case', "
    "'categories': [['Tools', 'Power Tools'], ['Sale']], "
    "'description': '<p>Strong</p>drill', 'brand': 'Voltix'}\n"
    "{'asin': 'A9', 'title': 'never reviewed'}\n"
    "{'asin': 'A2', 'title': 'Saw', 'categories': [['Tools']], 'price': 3.5}\n"
)
META_2018 = (
    "\n".join(
        json.dumps(r)
        for r in [
            {
                "asin": "A1",
                "title": "Drill <b>Pro</b> &amp; Case",
                "category": ["Tools", "Power Tools"],
                "description": ["<p>Strong</p>", "drill"],
                "brand": "Voltix",
                "main_cat": "Tools",
            },
            {"asin": "A2", "title": "Saw", "category": ["Tools"], "description": [], "brand": ""},
            {"asin": "A2", "title": "Saw", "category": ["Tools"], "description": [], "brand": ""},  # repeat
        ]
    )
    + "\n"
)
AMAZON_EVENTS = [
    ("U1", 100, "rec", "", ["A2"]),
    ("U1", 200, "rec", "", ["A1"]),
    ("U2", 150, "rec", "", ["A1"]),
]


@pytest.mark.parametrize("gz", [False, True])
def test_amazon_2014(tmp_path: Path, gz: bool) -> None:
    ext = ".json.gz" if gz else ".json"
    write(tmp_path / f"reviews_Tools_5{ext}", REVIEWS)
    write(tmp_path / f"meta_Tools{ext}", META_2014)
    raw = load_dataset(tmp_path, "amazon")
    assert items_of(raw) == [
        ("A1", "Drill Pro & Case", ["Tools", "Power Tools"], "Strong drill", "Voltix"),
        ("A2", "Saw", ["Tools"], "", ""),
    ]
    assert events_of(raw) == AMAZON_EVENTS
    assert raw.info["interactions_without_metadata"] == 1
    assert raw.info["items_without_metadata"] == 1


@pytest.mark.parametrize("gz", [False, True])
def test_amazon_2018(tmp_path: Path, gz: bool) -> None:
    ext = ".json.gz" if gz else ".jsonl"
    write(tmp_path / f"Tools_5{ext}", REVIEWS)
    write(tmp_path / f"meta_Tools{ext}", META_2018)
    raw = load_dataset(tmp_path)
    assert raw.format == "amazon"
    assert items_of(raw) == [
        ("A1", "Drill Pro & Case", ["Tools", "Power Tools"], "Strong drill", "Voltix"),
        ("A2", "Saw", ["Tools"], "", ""),
    ]
    assert events_of(raw) == AMAZON_EVENTS
    assert raw.info["repeated_metadata_lines"] == 1


def test_strip_html() -> None:
    assert strip_html("<div class='x'>A&nbsp;<i>b</i></div>\n c &lt;3") == "A b c <3"


# ---- KuaiSAR ----------------------------------------------------------------------------------

REC_CSV = (
    "user_id,item_id,playing_time,timestamp,click\n"
    "1,10,500.0,1.684742e+12,1\n"
    "1,11,20.0,1684742000500,0\n"
    "2,12,100.0,1684742001000.0,1\n"
)
SRC_CSV = (
    "user_id,search_session_id,search_session_timestamp,keyword,search_source,item_id,click_cnt,item_type\n"
    '1,7,1684742000100,"[20, 34]",USER_INPUT,11,1,VIDEO\n'
    '1,7,1684742000100,"[20, 34]",USER_INPUT,99,1,LIVE\n'
    '1,7,1684742000100,"[20, 34]",USER_INPUT,10,0,VIDEO\n'
    '1,7,1684742000100,"[20, 34]",USER_INPUT,12,2,IMAGE_ATLAS\n'
    "2,8,1684742000200,[5],USER_INPUT,10,0,VIDEO\n"
)
ITEM_CSV = (
    "item_id,caption,author_id,first_level_category_name_en,second_level_category_name_en,"
    "third_level_category_name_en,fourth_level_category_name_en\n"
    '10,"[1, 2]",3,Funny,Funny joke,empty,empty\n'
    "11,[3],3,Food,empty,empty,empty\n"
    "12,[],4,Pets,Cats,Kittens,empty\n"
    "13,[9],4,X,empty,empty,empty\n"
)


@pytest.fixture
def kuaisar_dir(tmp_path: Path) -> Path:
    root = tmp_path / "kuaisar"
    write(root / "rec_inter.csv", REC_CSV)
    write(root / "src_inter.csv", SRC_CSV)
    write(root / "item_features.csv", ITEM_CSV)
    return root


def test_kuaisar_exact(kuaisar_dir: Path) -> None:
    raw = load_dataset(kuaisar_dir, "kuaisar")
    assert items_of(raw) == [
        ("10", "w1 w2", ["Funny", "Funny joke"], "", ""),
        ("11", "w3", ["Food"], "", ""),
        ("12", "", ["Pets", "Cats", "Kittens"], "", ""),
    ]
    assert events_of(raw) == [
        ("1", 1684742000000, "rec", "", ["10"]),
        ("1", 1684742000100, "search", "w20 w34", ["11", "12"]),  # LIVE click and unclicked 10 left out
        ("2", 1684742001000, "rec", "", ["12"]),
    ]
    info = raw.info
    assert (info["rec_rows"], info["rec_clicks"]) == (3, 2)
    assert (info["search_sessions"], info["search_sessions_without_click"]) == (2, 1)
    assert info["search_clicks_other_item_types"] == 1
    assert info["items_without_interactions"] == 0  # item 13 is never read into memory


def test_token_words() -> None:
    assert token_words("[20, 34, 3]", Path("f"), 1, "keyword") == ["w20", "w34", "w3"]
    assert token_words("[]", Path("f"), 1, "keyword") == []
    raises_at(["f:4", "field 'keyword'"], token_words, "20 34", Path("f"), 4, "keyword")


# ---- auto-detection ---------------------------------------------------------------------------


def test_detect_each_format(tmp_path: Path, recbole_plain: Path, kuaisar_dir: Path) -> None:
    write_sequence_dataset(tmp_path / "seq")
    write(tmp_path / "amz" / "Tools.json.gz", REVIEWS)
    write(tmp_path / "amz" / "meta_Tools.json.gz", META_2018)
    write(tmp_path / "can" / "items.jsonl", json.dumps({"item_id": "i1", "title": "Drill"}) + "\n")
    write(
        tmp_path / "can" / "events.jsonl",
        json.dumps({"user_id": "u1", "timestamp": 1, "item_id": "i1"}) + "\n",
    )
    assert detect_format(recbole_plain) == "recbole"
    assert detect_format(tmp_path / "seq") == "recbole"
    assert detect_format(tmp_path / "seq" / "Toy") == "recbole"  # DIR/NAME prefix
    assert detect_format(tmp_path / "seq" / "Toy.test.inter") == "recbole"
    assert detect_format(tmp_path / "amz") == "amazon"
    assert detect_format(kuaisar_dir) == "kuaisar"
    assert detect_format(tmp_path / "can") == "canonical"
    assert load_dataset(tmp_path / "can").items["item_id"].tolist() == ["i1"]


def test_detect_nothing_lists_what_was_looked_for(tmp_path: Path) -> None:
    write(tmp_path / "empty" / "notes.txt", "hello\n")
    err = raises_at([str(tmp_path / "empty"), "cannot detect"], detect_format, tmp_path / "empty")
    for looked in ("items.* and events.*", "NAME.inter", "meta_*.json", "item_features.csv"):
        assert looked in str(err)
    raises_at(["nope", "does not exist"], detect_format, tmp_path / "nope")


def test_detect_near_miss_gives_the_reason(tmp_path: Path) -> None:
    write(tmp_path / "a.json", REVIEWS)
    write(tmp_path / "b.json", REVIEWS)
    write(tmp_path / "meta_x.json", META_2018)
    raises_at(["cannot detect", "several reviews files (a.json, b.json)"], detect_format, tmp_path)


def test_unknown_format_name(recbole_plain: Path) -> None:
    with pytest.raises(GensarError, match="unknown dataset format 'movielens'"):
        load_dataset(recbole_plain, "movielens")  # type: ignore[arg-type]


# ---- errors: each names the file, the 1-based line and/or the field ---------------------------


def test_recbole_errors(tmp_path: Path) -> None:
    d = tmp_path / "r"
    inter, item = d / "toy.inter", d / "toy.item"
    write(item, PLAIN_ITEM)
    write(inter, "user_id:token\ttimestamp:float\nu1\t3\n")
    raises_at(["toy.inter:1", "field 'item_id'", "missing required column"], load_dataset, d, "recbole")
    write(inter, PLAIN_INTER + "u3\ti9\t1\t7\n")
    raises_at(["toy.inter:6", "field 'item_id'", "unknown item 'i9'"], load_dataset, d, "recbole")
    write(inter, PLAIN_INTER + "u3\ti1\t1\n")
    raises_at(["toy.inter:6", "expected 4 tab-separated fields, got 3"], load_dataset, d, "recbole")
    write(inter, PLAIN_INTER.replace("\t20\n", "\tsoon\n"))
    raises_at(["toy.inter:2", "field 'timestamp'", "'soon'"], load_dataset, d, "recbole")
    write(inter, "user_id\titem_id\nu1\ti1\n")
    raises_at(["toy.inter:1", "not 'name:type'"], load_dataset, d, "recbole")
    write(inter, "")
    raises_at(["toy.inter", "empty file"], load_dataset, d, "recbole")
    write(inter, "\n\n")
    raises_at(["toy.inter", "empty file"], load_dataset, d, "recbole")
    write(inter, "user_id:token\titem_id:token\n")
    raises_at(["toy.inter:1", "no rows after the header"], load_dataset, d, "recbole")
    write(inter, PLAIN_INTER.encode() + b"u3\ti\xff1\t1\t7\n")
    raises_at(["toy.inter:6", "undecodable bytes"], load_dataset, d, "recbole")
    write(inter, PLAIN_INTER)
    write(item, PLAIN_ITEM + "i2\tSaw again\tTools\tY\n")
    raises_at(
        ["toy.item:6", "field 'item_id'", "duplicate item id 'i2' (first on line 3)"],
        load_dataset,
        d,
        "recbole",
    )


def test_recbole_sequence_errors(tmp_path: Path) -> None:
    d = write_sequence_dataset(tmp_path / "s")
    write(d / "Toy.test.inter", SEQ_TEST.replace("7 2 0\t5", "7 2 0\t8"))
    raises_at(
        ["Toy.test.inter:3", "field 'item_id'", "index '8' is not in item2index"], load_dataset, d, "recbole"
    )
    write(d / "Toy.test.inter", SEQ_TEST)
    write(d / "Toy.text", TEXT.replace("P7\tGloves. Shop Safety. Ansell. \n", ""))
    raises_at(
        ["Toy.train.inter:6", "field 'item_id_list'", "unknown item 'P7' (not in Toy.text)"],
        load_dataset,
        d,
        "recbole",
    )
    write_sequence_dataset(d, train=SEQ_TRAIN.replace("0\t0 1\t2", "0\t0 1\t5"))
    raises_at(["Toy.", "history of user 'alice' disagrees"], load_dataset, d, "recbole")
    write_sequence_dataset(d)
    write(d / "Toy.valid.inter", "user_id:token\titem_id:token\n0\t1\n")
    raises_at([str(d / "Toy"), "mixes the interaction and the sequence variant"], load_dataset, d, "recbole")
    write_sequence_dataset(d)
    write(d / "Toy.item2index", ITEM2INDEX + "P3\t9\n")
    raises_at(["Toy.item2index:9", "duplicate id 'P3' (first on line 4)"], load_dataset, d, "recbole")


def test_recbole_directory_with_two_datasets(tmp_path: Path) -> None:
    write(tmp_path / "a.inter", PLAIN_INTER)
    write(tmp_path / "b.inter", PLAIN_INTER)
    raises_at([str(tmp_path), "several RecBole datasets here (a, b)"], load_dataset, tmp_path, "recbole")


def test_amazon_errors(tmp_path: Path) -> None:
    reviews, meta = tmp_path / "Tools.json", tmp_path / "meta_Tools.json"
    write(meta, META_2018)
    write(reviews, REVIEWS + "{not json\n")
    raises_at(["Tools.json:5", "malformed line"], load_dataset, tmp_path, "amazon")
    write(reviews, REVIEWS + '{"reviewerID": "U3", "unixReviewTime": 1}\n')
    raises_at(["Tools.json:5", "field 'asin'", "missing required field"], load_dataset, tmp_path, "amazon")
    write(reviews, REVIEWS + '{"reviewerID": "U3", "asin": "A1", "unixReviewTime": "May 1"}\n')
    raises_at(["Tools.json:5", "field 'unixReviewTime'"], load_dataset, tmp_path, "amazon")
    write(reviews, REVIEWS + "[1, 2]\n")
    raises_at(["Tools.json:5", "expected an object"], load_dataset, tmp_path, "amazon")
    write(reviews, REVIEWS)
    write(meta, META_2018 + json.dumps({"asin": "A1", "title": "Other drill"}) + "\n")
    raises_at(
        ["meta_Tools.json:4", "field 'asin'", "duplicate item id 'A1'", "first on line 1"],
        load_dataset,
        tmp_path,
        "amazon",
    )
    write(meta, b'{"asin": "A1", "title": "Dr\xc3ll"}\n')
    raises_at(["meta_Tools.json:1", "undecodable"], load_dataset, tmp_path, "amazon")
    write(meta, json.dumps({"asin": "Z9", "title": "x"}) + "\n")
    raises_at(
        ["Tools.json", "no reviewed item has metadata in meta_Tools.json"], load_dataset, tmp_path, "amazon"
    )
    write(meta, "")
    raises_at(["meta_Tools.json", "empty file"], load_dataset, tmp_path, "amazon")
    meta.unlink()
    raises_at([str(tmp_path), "no Amazon metadata file"], load_dataset, tmp_path, "amazon")


def test_amazon_truncated_gzip(tmp_path: Path) -> None:
    write(tmp_path / "meta_Tools.json", META_2018)
    data = gzip.compress((REVIEWS * 200).encode())
    (tmp_path / "Tools.json.gz").write_bytes(data[: len(data) // 2])
    raises_at(["Tools.json.gz", "corrupt or truncated gzip"], load_dataset, tmp_path, "amazon")


def test_kuaisar_errors(kuaisar_dir: Path) -> None:
    rec, src, item = (
        kuaisar_dir / "rec_inter.csv",
        kuaisar_dir / "src_inter.csv",
        kuaisar_dir / "item_features.csv",
    )
    write(rec, REC_CSV.replace(",click\n", ",clicked\n"))
    raises_at(["rec_inter.csv:1", "field 'click'", "missing required column"], load_dataset, kuaisar_dir)
    write(rec, REC_CSV + "3,55,1.0,1684742002000,1\n")
    raises_at(["rec_inter.csv:5", "field 'item_id'", "unknown item '55'"], load_dataset, kuaisar_dir)
    write(rec, REC_CSV + "3,10,1.0,yesterday,1\n")
    raises_at(["rec_inter.csv:5", "field 'timestamp'"], load_dataset, kuaisar_dir)
    write(rec, REC_CSV + "3,10,1684742002000,1\n")
    raises_at(["rec_inter.csv:5", "expected 5 comma-separated fields, got 4"], load_dataset, kuaisar_dir)
    write(rec, REC_CSV)
    write(src, SRC_CSV + "3,9,1684742000300,20 34,USER_INPUT,10,1,VIDEO\n")
    raises_at(["src_inter.csv:7", "field 'keyword'"], load_dataset, kuaisar_dir)
    write(src, SRC_CSV)
    write(item, ITEM_CSV + '12,"[4]",5,Pets,empty,empty,empty\n')
    raises_at(
        ["item_features.csv:6", "field 'item_id'", "duplicate item id '12' (first on line 4)"],
        load_dataset,
        kuaisar_dir,
    )
    write(item, "")
    raises_at(["item_features.csv", "empty file"], load_dataset, kuaisar_dir)


def test_cli_reports_loader_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gensar.cli import main

    write(tmp_path / "d" / "toy.inter", PLAIN_INTER + "u3\ti1\n")
    assert main(["prepare", str(tmp_path / "d"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "toy.inter:6" in err and "expected 4 tab-separated fields" in err
    assert not (tmp_path / "out").exists()


# ---- the real data ----------------------------------------------------------------------------


def test_scientific_counts(scientific_dir: Path) -> None:
    start = time.perf_counter()
    raw = load_dataset(scientific_dir)
    seconds = time.perf_counter() - start
    assert raw.format == "recbole"
    assert raw.events["user_id"].nunique() == 8442
    assert len(raw.items) == 4385
    assert len(raw.events) == 59427
    assert raw.info["max_history_in_files"] == 50
    # the first user's sequence is test row 1: history 0..12, next 13 (indices -> ASINs)
    asin = [
        line.split("\t")[0] for line in (scientific_dir / "Scientific.item2index").read_text().splitlines()
    ]
    first = raw.events[raw.events["user_id"] == "ABW8NXS7SV55K"]
    assert [i[0] for i in first["items"]] == asin[:14]
    assert first["timestamp"].tolist() == list(range(14))
    item = raw.items.set_index("item_id").loc["B0000223SI"]
    assert item.title == "PORTER-CABLE 740000801 4 1/2-Inch x 10yd 80 Grit Adhesive-Backed Sanding Roll"
    assert list(item.categories) == [
        "Industrial & Scientific",
        "Abrasive & Finishing Products Manual Sanding Products Sanding Rolls",
    ]
    assert item.brand == "PORTER-CABLE"
    print(f"\nScientific loaded in {seconds:.2f} s")
