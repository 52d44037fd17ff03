"""A living catalog on the tiny trained run: items added without retraining (CLI and POST /items)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import live_server
from fastapi.testclient import TestClient

from gensar.baselines.scorer import Request
from gensar.cli import main
from gensar.config import load_config
from gensar.data.prepared import PreparedData
from gensar.errors import InputError
from gensar.ids.assign import check_unique_prefix_free
from gensar.ids.cold_start import ColdStartConfig
from gensar.ids.extend import IdExtender, level_codes
from gensar.ids.item_ids import ID_KINDS, IdMaps
from gensar.ids.new_ids import IdIndex
from gensar.pipeline import PipelineConfig, builtin_config, run_pipeline
from gensar.serve.access import AccessConfig
from gensar.serve.app import create_app
from gensar.serve.items_log import ITEMS_LOG_NAME
from gensar.serve.service import ServeConfig, Service

KEY = "items-key-0123456789"
NEW = [
    {"item_id": "N1", "title": "Zorbex Quantum Drill ZX-9000", "categories": ["Shop", "Power Tools", "Drills"],
     "brand": "Zorbex", "description": "A cordless drill nobody has bought yet."},
    {"item_id": "N2", "title": "Lumina Glass Beaker Set", "categories": ["Shop", "Lab", "Glassware"],
     "brand": "Lumina"},
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("living") / "run"
    run_pipeline(load_config(PipelineConfig, builtin_config("tiny")), out)
    return out


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A private copy of the trained run (tests write its items log)."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def _tree(root: Path) -> dict[str, bytes | None]:
    return {p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes()) for p in root.rglob("*")}


def _write(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def _twins(run: Path, n: int) -> list[dict]:
    """New items with the text of trained items: their own codes mostly collide with taken IDs."""
    data = PreparedData.load(run / "data")
    return [{"item_id": f"T{i}", "title": r.title, "categories": list(r.categories), "brand": r.brand,
             "description": r.description} for i, r in enumerate(data.items.head(n).itertuples())]


def _one_line_error(capsys, argv: list[str], expect: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and expect in err, err


# ---- identifiers ---------------------------------------------------------------------------------
def test_added_items_keep_ids_unique_prefix_free_and_old_ones_byte_identical(run, tmp_path, capsys):
    items = _twins(run, 30) + NEW
    before = _tree(run)
    trained_ids = IdMaps.load(run / "model" / "item_ids.json")
    # the case that matters: some new items' own codes are identifiers already taken
    ext = IdExtender.from_dir(run / "ids", len(trained_ids.semantic), frozenset(trained_ids.tokens()),
                              ColdStartConfig())
    from gensar.data.schema import make_items

    frame = make_items(items)
    codes = level_codes(ext.model, *ext.embed(frame, PreparedData.load(run / "data").items))
    collided = {kind: sum(IdIndex(4, trained_ids.of(kind).values()).body_taken(
        tuple(f"<{n}_{c}>" for n, c in zip(codes[kind].names, row, strict=True))) for row in codes[kind].codes)
        for kind in ID_KINDS}
    assert collided["semantic"] + collided["collaborative"] >= 3, collided

    assert main(["add-items", str(run), str(_write(tmp_path / "new.jsonl", items))]) == 0
    capsys.readouterr()
    after = _tree(run)
    assert set(after) - set(before) == {ITEMS_LOG_NAME}  # nothing else written ...
    assert all(after[p] == b for p, b in before.items())  # ... or changed: item_ids.json byte-identical

    service = Service.open(run, ServeConfig(engine="fake"), writable=False)
    ids = service.catalog.ids
    assert len(ids.semantic) == len(trained_ids.semantic) + len(items)
    vocabulary = set(trained_ids.tokens())
    for kind in ID_KINDS:
        table = ids.of(kind)
        assert all(table[i] == t for i, t in trained_ids.of(kind).items())  # old identifiers unchanged
        assert check_unique_prefix_free([list(t) for t in table.values()]) is None
        assert all(set(table[i["item_id"]]) <= vocabulary for i in items)  # tokens the model knows
    assert service.item("N1").title == NEW[0]["title"] and service.item("T0").index == len(trained_ids.semantic)


def test_bad_items_exit_2_naming_file_line_field_and_change_nothing(run, tmp_path, capsys):
    cases = [
        ("unknown.jsonl", [NEW[0], {**NEW[1], "price": 3}], "unknown.jsonl:2: field 'price': unknown field"),
        ("twice.jsonl", [NEW[0], NEW[1], NEW[0]], "twice.jsonl:3: field 'item_id': duplicate item id 'N1'"),
        ("trained.jsonl", [NEW[0], {"item_id": "I007", "title": "x"}], "trained.jsonl:2: field 'item_id': item 'I007' "
                                                                      "is already in the catalog"),
    ]
    before = _tree(run)
    for name, items, expect in cases:
        _one_line_error(capsys, ["add-items", str(run), str(_write(tmp_path / name, items))], expect)
        assert _tree(run) == before  # not even an empty items log
    assert main(["add-items", str(run), str(_write(tmp_path / "ok.jsonl", NEW))]) == 0
    capsys.readouterr()
    logged = (run / ITEMS_LOG_NAME).read_bytes()
    _one_line_error(capsys, ["add-items", str(run), str(_write(tmp_path / "again.jsonl", [NEW[1]]))],
                    "again.jsonl:1: field 'item_id': item 'N2' is already in the catalog")
    assert (run / ITEMS_LOG_NAME).read_bytes() == logged


def test_add_items_refuses_while_a_server_holds_the_log(run, tmp_path, capsys):
    server = Service.open(run, ServeConfig(engine="fake"))
    try:
        _one_line_error(capsys, ["add-items", str(run), str(_write(tmp_path / "new.jsonl", NEW))],
                        "items log is in use by another gensar process")
    finally:
        server.close()
    assert (run / ITEMS_LOG_NAME).read_bytes() == b""
    assert main(["add-items", str(run), str(tmp_path / "new.jsonl")]) == 0


def test_a_log_that_does_not_fit_the_run_is_refused_naming_its_line(run):
    taken = IdMaps.load(run / "model" / "item_ids.json")
    clash = {**NEW[0], "description": "", "semantic": list(taken.semantic["I003"]),
             "collaborative": list(taken.collaborative["I003"])}
    (run / ITEMS_LOG_NAME).write_text(json.dumps({"seq": 1, "items": [clash]}) + "\n")
    with pytest.raises(InputError, match=rf"{ITEMS_LOG_NAME}:1: field 'items\[0\].semantic'"):
        Service.open(run, ServeConfig(engine="fake"), writable=False)


# ---- serving -------------------------------------------------------------------------------------
def test_post_items_is_a_write_then_served_at_once_and_after_a_restart(run):
    access = AccessConfig(api_key=KEY)
    auth = {"Authorization": f"Bearer {KEY}"}
    service = Service.open(run, ServeConfig(max_wait_ms=0))
    assert service.engine.name == "hybrid"
    n = len(service.item_ids)
    with live_server(service, access) as where, httpx.Client(base_url=f"http://{where}", timeout=60) as http:
        refused = [
            (401, http.post("/items", json={"items": NEW})),
            (422, http.post("/items", json={"items": [{**NEW[0], "colour": "red"}]}, headers=auth)),
            (422, http.post("/items", json={"items": [NEW[0], NEW[0]]}, headers=auth)),
            (422, http.post("/items", json={"items": [NEW[1], {"item_id": "I001"}]}, headers=auth)),
            (422, http.post("/items", json={"items": []}, headers=auth)),
        ]
        for status, r in refused:
            assert r.status_code == status, r.text
        assert refused[3][1].json()["detail"][0]["loc"] == ["body", "items", 1, "item_id"]
        assert (run / ITEMS_LOG_NAME).read_bytes() == b"" and http.get("/health").json()["items"] == n

        ok = http.post("/items", json={"items": NEW}, headers=auth)
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["seq"] == 1 and body["catalog_items"] == n + 2
        assert [i["item_id"] for i in body["items"]] == ["N1", "N2"] and body["items"][0]["index"] == n
        assert http.get("/items/N1").json()["title"] == NEW[0]["title"]
        top = http.post("/search", json={"query": NEW[0]["title"], "k": 5}).json()["items"]
        assert top[0]["item_id"] == "N1"
        assert http.post("/events", json={"user_id": "u-new", "behavior": "rec", "items": ["N2"]},
                         headers=auth).status_code == 200
        rec = http.post("/recommend", json={"user_id": "u-new", "k": 10})  # a new item in the history
        assert rec.status_code == 200 and rec.json()["history_length"] == 1
    service.close()

    restarted = Service.open(run, ServeConfig(max_wait_ms=0))
    with live_server(restarted, access) as where, httpx.Client(base_url=f"http://{where}", timeout=60) as http:
        assert http.get("/items/N2").json()["brand"] == "Lumina"
        top = http.post("/search", json={"query": NEW[1]["title"], "k": 5}).json()["items"]
        assert top[0]["item_id"] == "N2"
        history = http.get("/users/u-new/history").json()
        assert history["events"][0]["items"] == [{"item_id": "N2", "title": NEW[1]["title"]}]
        assert http.get("/health").json()["items"] == n + 2
        again = http.post("/items", json={"items": [NEW[0]]}, headers=auth)
        assert again.status_code == 422 and "already in the catalog" in again.json()["error"]
    restarted.close()


def test_hybrid_ranks_a_new_item_for_its_title_and_marks_it_new(run, tmp_path, capsys):
    assert main(["add-items", str(run), str(_write(tmp_path / "new.jsonl", NEW))]) == 0
    capsys.readouterr()
    assert main(["search", str(run), "--query", NEW[1]["title"], "--k", "3", "--json"]) == 0  # replays the log
    assert json.loads(capsys.readouterr().out)["items"][0]["item_id"] == "N2"
    service = Service.open(run, ServeConfig(), writable=False)
    engine, row = service.engine, service.index["N1"]
    assert engine.search([NEW[0]["title"]], [[]], k=10)[0][0].index == row  # its own title: first
    # A query that is not the title: the item enters through the text retrievers (BM25 proposes it).
    # The model never trained on it: its generative feature is the mean of its peers' (the trained
    # candidates that only text retrievers proposed: no evidence either way, not the low
    # likelihood of an identifier it never saw), and the ``new`` feature marks it.
    query = "zorbex quantum"
    inputs = engine.generative.render("search", [[]], [query])
    cands = engine.ranker.candidates("search", [Request(query, ())], inputs)
    names = engine.ranker.feature_names("search")
    column = list(cands.items[0]).index(row)
    assert not cands.pinned[0, column]
    assert row in engine.ranker.scorers["bm25"].scores([Request(query, ())])[0].argsort()[-1:]
    assert len(engine.ranker.generative.codes["search"]) == len(service.item_ids)
    # dense search and content recommendation share one text-embedding matrix, grown once
    dense, content = engine.ranker.scorers["dense"], engine.ranker.scorers["content"]
    assert dense.embeddings is content.embeddings and len(dense.items) == len(service.item_ids)
    trained = cands.valid[0] & (cands.items[0] < engine.ranker.trained_items)
    assert trained.sum() >= 1 and engine.ranker.trained_items == len(PreparedData.load(run / "data").items)
    gen, new = cands.features[0, :, names.index("generative")], cands.features[0, :, names.index("new")]
    by_model = (cands.source_ranks[0][:, [s.startswith("beam") for s in cands.sources]] >= 0).any(axis=1)
    peers = trained & ~by_model
    assert peers.sum() >= 1 and by_model[trained].any()  # the beam proposed some, the text retrievers others
    assert gen[column] == pytest.approx(gen[peers].mean())
    assert gen[peers].mean() < gen[trained & by_model].mean()  # the beam's candidates score higher
    assert new[column] == 1.0 and not new[trained].any()
    exact = engine.ranker.generative.score("search", inputs, cands.items[:, [column]])
    assert np.isfinite(exact).all() and exact[0, 0] < 0  # the exact score still exists: a log-probability


def test_post_items_on_a_run_without_identifiers_is_a_409(service):
    with TestClient(create_app(service, AccessConfig())) as client:
        r = client.post("/items", json={"items": NEW})
        assert r.status_code == 409 and "identifiers" in r.json()["error"]
        assert client.get("/items/N1").status_code == 404
