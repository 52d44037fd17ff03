"""HTTP API, micro-batching, FakeEngine scores and the recommend/search CLI (all with the FakeEngine)."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time

import httpx
import pytest
from conftest import make_tiny_prepared
from fastapi.testclient import TestClient

from gensar.cli import main
from gensar.data.schema import make_events, make_items
from gensar.errors import GensarError
from gensar.serve.app import create_app
from gensar.serve.engine import HistoryEvent
from gensar.serve.fake import FakeEngine
from gensar.serve.service import ServeConfig, Service


@pytest.fixture
def client(service):
    with TestClient(create_app(service)) as c:
        yield c


# ---- FakeEngine against its documented formulas -------------------------------------------------------
def _three_items() -> FakeEngine:
    items = make_items([
        {"item_id": "a", "title": "red drill", "categories": ["Tools", "Drills"]},
        {"item_id": "b", "title": "blue saw", "categories": ["Tools", "Saws"]},
        {"item_id": "c", "title": "glass beaker", "categories": ["Lab", "Glassware"]},
    ])
    events = make_events([
        {"user_id": "u1", "timestamp": 0, "behavior": "rec", "query": "", "items": ["a"]},
        {"user_id": "u2", "timestamp": 0, "behavior": "search", "query": "saw", "items": ["b"]},
        {"user_id": "u2", "timestamp": 1, "behavior": "rec", "query": "", "items": ["b"]},
    ])
    return FakeEngine(items, events)


def test_fake_engine_scores_match_the_formulas():
    eng = _three_items()
    pop_a = math.log1p(1) / math.log1p(2)  # a: 1 event, b: 2 (the maximum), c: 0
    # History [rec a]: profile = {red, drill, tools, drills}: 1. Affinity a = 4, b = 1 (tools), c = 0.
    (rec,) = eng.recommend([[HistoryEvent("rec", "", ("a",))]], k=3)
    assert [r.index for r in rec] == [0, 1, 2]
    assert [r.score for r in rec] == pytest.approx([4 + 0.01 * pop_a, 1 + 0.01, 0.0])
    # Older events weigh half as much: [rec c, rec a] -> c's 4 words at 0.5.
    (rec,) = eng.recommend([[HistoryEvent("rec", "", ("c",)), HistoryEvent("rec", "", ("a",))]], k=3)
    assert [r.index for r in rec] == [0, 2, 1]
    assert [r.score for r in rec] == pytest.approx([4 + 0.01 * pop_a, 2.0, 1 + 0.01])
    # Ad-hoc search: only items sharing a query word; "saw" matches b alone.
    (hits,) = eng.search(["Saw!"], [()], k=3)
    assert [(r.index, r.score) for r in hits] == [(1, pytest.approx(1 + 0.01))]
    # Personal term: 0.1 * affinity / (1 + max affinity); "tools" matches a and b.
    (hits,) = eng.search(["tools"], [[HistoryEvent("rec", "", ("a",))]], k=3)
    assert [r.index for r in hits] == [0, 1]
    assert [r.score for r in hits] == pytest.approx([1 + 0.1 * 4 / 5 + 0.01 * pop_a, 1 + 0.1 * 1 / 5 + 0.01])
    assert eng.search(["microscope"], [()], k=3) == [[]]
    (sug,) = eng.suggest_queries([()], k=5)
    assert sug == [("saw", pytest.approx(0.01))]


def test_fake_engine_is_batched_and_deterministic():
    eng = _three_items()
    hs = [[HistoryEvent("rec", "", ("a",))], [], [HistoryEvent("search", "glass", ("c",))]]
    together = eng.recommend(hs, k=2)
    assert together == [eng.recommend([h], k=2)[0] for h in hs]
    assert [r.index for r in together[1]] == [1, 0]  # empty history: popularity, b then a


# ---- endpoints --------------------------------------------------------------------------------------
def test_recommend_search_suggest_and_item(client, service):
    r = client.post("/recommend", json={"user_id": "u3", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == "u3" and body["known_user"] and body["history_length"] == service.histories.length("u3")
    assert len(body["items"]) == 5
    for it in body["items"]:
        assert it["title"] == service.titles[service.index[it["item_id"]]]
    assert [it["score"] for it in body["items"]] == sorted((it["score"] for it in body["items"]), reverse=True)

    r = client.post("/search", json={"query": "lab scales", "k": 4})
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] is None and not body["known_user"] and len(body["items"]) == 4
    assert all("scales" in it["title"] or "glassware" in it["title"] for it in body["items"])
    personal = client.post("/search", json={"query": "lab scales", "k": 4, "user_id": "u3"}).json()
    assert personal["known_user"] and personal["history_length"] > 0

    r = client.post("/suggest-query", json={"user_id": "u3", "k": 3})
    assert r.status_code == 200
    queries = [q["query"] for q in r.json()["queries"]]
    assert 1 <= len(queries) <= 3 and set(queries) <= set(service.data.events["query"])

    r = client.get("/items/i7")
    assert r.status_code == 200
    assert r.json() == {"item_id": "i7", "index": 7, "title": "item 7 scales", "categories": ["Lab", "Scales"],
                        "brand": "brand1", "description": ""}


def test_unknown_user_is_served_from_an_empty_history(client, service):
    body = client.post("/recommend", json={"user_id": "nobody", "k": 3}).json()
    assert not body["known_user"] and body["history_length"] == 0
    expected = service.engine.recommend([()], 3)[0]  # popularity order
    assert [it["item_id"] for it in body["items"]] == [service.item_ids[r.index] for r in expected]
    assert client.get("/users/nobody/history").json()["events"] == []


def test_event_changes_the_next_answer_without_retraining(client, service, run_dir):
    before = client.post("/recommend", json={"user_id": "newcomer", "k": 40}).json()
    assert before["history_length"] == 0
    ack = client.post("/events", json={"user_id": "newcomer", "behavior": "rec", "items": ["i2"], "timestamp": 5})
    assert ack.status_code == 200, ack.text
    assert ack.json() == {"user_id": "newcomer", "seq": 1, "history_length": 1}
    after = client.post("/recommend", json={"user_id": "newcomer", "k": 40}).json()
    assert after["known_user"] and after["history_length"] == 1
    # The clicked item's words now count: i2 ("item 2 glassware", Lab > Glassware) is the best match.
    assert after["items"][0]["item_id"] == "i2" and before["items"] != after["items"]
    ack = client.post("/events", json={"user_id": "newcomer", "behavior": "search", "query": "lab glassware",
                                       "items": ["i6", "i10"]})
    assert ack.json()["seq"] == 2
    hist = client.get("/users/newcomer/history").json()
    assert [(e["behavior"], e["query"], [i["item_id"] for i in e["items"]]) for e in hist["events"]] == [
        ("rec", "", ["i2"]), ("search", "lab glassware", ["i6", "i10"])]
    assert hist["events"][0]["timestamp"] == 5 and hist["events"][1]["timestamp"] > 1_600_000_000
    lines = (run_dir / "live_events.jsonl").read_text().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [1, 2]
    assert client.get("/health").json()["live_events"] == 2


def test_engine_sees_the_newest_events_up_to_the_trained_history_length(client, service, run_dir):
    assert service.max_history == 5  # the prepared manifest's options.max_history
    assert len(service.histories.get("u3")) > 5
    body = client.post("/recommend", json={"user_id": "u3", "k": 5}).json()
    (expected,) = service.engine.recommend([service.histories.get("u3")[-5:]], 5)
    assert [it["item_id"] for it in body["items"]] == [service.item_ids[r.index] for r in expected]
    assert body["history_length"] == len(service.histories.get("u3"))  # the whole history is reported
    other = Service.open(run_dir, ServeConfig(engine="fake", max_history=2), writable=False)
    assert other.max_history == 2


def test_users_listing_and_health(client):
    r = client.get("/users", params={"prefix": "u1", "limit": 3}).json()
    assert r["users"] == ["u1", "u10", "u11"] and r["total"] == 11  # u1, u10..u19
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["engine"] == "fake" and h["items"] == 40 and h["users"] == 30
    assert set(h["batching"]) == {"recommend", "search", "suggest-query"}


def test_openapi_and_page_are_served(client):
    spec = client.get("/openapi.json").json()
    assert {"/recommend", "/search", "/suggest-query", "/events", "/items/{item_id}", "/health"} <= set(spec["paths"])
    assert spec["paths"]["/recommend"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"}
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="query"' in page.text and "/recommend" in page.text


# ---- bad input: a 4xx with a JSON error body, never a 500 ------------------------------------------------
LONG = "x" * 501
BAD = [
    ("/recommend", {"user_id": "u1", "k": 0}, 422, "body.k: Input should be greater than or equal to 1"),
    ("/recommend", {"user_id": "u1", "k": 101}, 422, "body.k: Input should be less than or equal to 100"),
    ("/recommend", {"user_id": "u1", "k": "10"}, 422, "body.k: Input should be a valid integer"),
    ("/recommend", {"user_id": "u1", "k": True}, 422, "body.k: Input should be a valid integer"),
    ("/recommend", {"user_id": "u1", "k": 2.5}, 422, "body.k: Input should be a valid integer"),
    ("/recommend", {"k": 3}, 422, "body.user_id: Field required"),
    ("/recommend", {"user_id": 7}, 422, "body.user_id: Input should be a valid string"),
    ("/recommend", {"user_id": "u1", "extra": 1}, 422, "body.extra: Extra inputs are not permitted"),
    ("/recommend", [1, 2], 422, "body"),
    ("/search", {"query": ""}, 422, "body.query: String should have at least 1 character"),
    ("/search", {"query": "   "}, 422, "body.query: Value error, must not be blank"),
    ("/search", {"query": LONG}, 422, "body.query: String should have at most 500 characters"),
    ("/search", {"query": "saw", "user_id": ""}, 422, "body.user_id"),
    ("/suggest-query", {"user_id": "u1", "k": -1}, 422, "body.k"),
    ("/events", {"user_id": "u1", "behavior": "rec", "items": ["nope"]}, 422, "unknown item 'nope'"),
    ("/events", {"user_id": "u1", "behavior": "rec", "items": ["i1", "i2"]}, 422, "exactly one clicked item"),
    ("/events", {"user_id": "u1", "behavior": "rec", "query": "x", "items": ["i1"]}, 422, "a rec event has no query"),
    ("/events", {"user_id": "u1", "behavior": "search", "items": ["i1"]}, 422, "needs a non-empty query"),
    ("/events", {"user_id": "u1", "behavior": "search", "query": "q", "items": []}, 422, "body.items"),
    ("/events", {"user_id": "u1", "behavior": "buy", "items": ["i1"]}, 422, "body.behavior"),
    ("/events", {"user_id": "u1", "behavior": "rec", "items": ["i1"], "timestamp": -1}, 422, "body.timestamp"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD)
def test_bad_requests_get_a_json_error(client, path, body, status, message):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    err = r.json()
    assert message in err["error"]
    assert "\n" not in err["error"]
    assert client.get("/health").json()["live_events"] == 0  # nothing was recorded


@pytest.mark.parametrize(("raw", "status", "message"), [
    (b'{"user_id": "u1", "k": ', 400, "request body is not valid JSON"),
    (b"not json at all", 400, "request body is not valid JSON"),
    (b'{"user_id": "\\ud800"}', 422, "body.user_id: Input should be a valid string"),
    (b"", 422, "body: Field required"),
])
def test_malformed_bodies(client, raw, status, message):
    r = client.post("/recommend", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_unknown_item_path_and_method(client):
    r = client.get("/items/nope")
    assert r.status_code == 404 and r.json() == {"error": "unknown item 'nope'", "detail": []}
    assert client.get("/nowhere").json()["error"] == "Not Found"
    r = client.get("/recommend")
    assert r.status_code == 405 and r.json()["error"] == "Method Not Allowed"
    r = client.get("/users", params={"limit": 0})
    assert r.status_code == 422 and "query.limit" in r.json()["error"]


# ---- micro-batching -----------------------------------------------------------------------------------
class _RecordingEngine:
    """Wraps the FakeEngine; blocks each call until released, and records batch sizes."""

    def __init__(self, inner: FakeEngine, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.name, self.num_items = "recording", inner.num_items
        self.sizes: list[int] = []
        self.threads: set[str] = set()

    def recommend(self, histories, k):
        self.sizes.append(len(histories))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        return self.inner.recommend(histories, k)

    def search(self, queries, histories, k):
        return self.inner.search(queries, histories, k)

    def suggest_queries(self, histories, k):
        return self.inner.suggest_queries(histories, k)


def test_concurrent_requests_are_decoded_together(run_dir):
    data = Service.open(run_dir, ServeConfig(engine="fake"), writable=False).data
    fake = FakeEngine(data.items, data.events)
    engine = _RecordingEngine(fake, delay=0.05)
    service = Service(data, engine, ServeConfig(engine="fake", max_batch=8, max_wait_ms=5))
    app = create_app(service)
    users = [f"u{i % 30}" for i in range(40)]
    ks = [1 + i % 7 for i in range(40)]

    async def fire():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*[c.post("/recommend", json={"user_id": u, "k": k})
                                          for u, k in zip(users, ks, strict=True)])

    answers = asyncio.run(fire())
    assert all(a.status_code == 200 for a in answers)
    assert sum(engine.sizes) == 40 and max(engine.sizes) == 8 and len(engine.sizes) <= 8
    assert engine.threads == {"gensar-engine_0"}  # one worker thread, never the event loop
    for a, u, k in zip(answers, users, ks, strict=True):  # batching (and mixed k) changes no answer
        alone = fake.recommend([service.histories.get(u, last=service.max_history)], k)[0]
        assert [it["item_id"] for it in a.json()["items"]] == [data.items["item_id"][r.index] for r in alone]
    stats = asyncio.run(_health(app))["batching"]["recommend"]
    assert stats == {"batches": len(engine.sizes), "requests": 40, "largest": 8}


async def _health(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        return (await c.get("/health")).json()


def test_an_engine_failure_is_a_500_json_for_its_batch_only(run_dir):
    data = Service.open(run_dir, ServeConfig(engine="fake"), writable=False).data

    class Broken(FakeEngine):
        def recommend(self, histories, k):
            raise RuntimeError("boom")

    service = Service(data, Broken(data.items, data.events), ServeConfig(engine="fake"))
    with TestClient(create_app(service), raise_server_exceptions=False) as c:
        r = c.post("/recommend", json={"user_id": "u1"})
        assert r.status_code == 500 and r.json()["error"] == "internal error (RuntimeError); see the server log"
        assert c.post("/search", json={"query": "saws"}).status_code == 200  # the server lives on


# ---- CLI ----------------------------------------------------------------------------------------------
def test_cli_recommend_and_search(run_dir, capsys):
    assert main(["recommend", str(run_dir), "--engine", "fake", "--user", "u3", "--k", "3", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["user_id"] == "u3" and len(body["items"]) == 3
    assert main(["search", str(run_dir), "--engine", "fake", "--query", "lab scales", "--k", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "search 'lab scales'" and len(out) == 3 and "scales" in out[1]
    assert main(["search", str(run_dir), "--engine", "fake", "--query", " ", "--k", "2"]) == 2
    assert "field 'query': Value error, must not be blank" in capsys.readouterr().err
    assert main(["recommend", str(run_dir), "--engine", "fake", "--user", "u3", "--k", "0"]) == 2
    assert main(["recommend", str(run_dir), "--engine", "fake", "--user", "\udcff"]) == 2  # undecodable argv byte
    assert "field 'user_id': Input should be a valid string" in capsys.readouterr().err
    assert main(["recommend", str(run_dir / "missing"), "--engine", "fake", "--user", "u3"]) == 2
    assert "run directory not found" in capsys.readouterr().err


def test_cli_batch_mode_matches_the_api_and_is_atomic(run_dir, client, tmp_path, capsys):
    reqs = tmp_path / "requests.jsonl"
    lines = [{"query": "lab scales", "k": 3}, {"query": "saws", "user_id": "u2", "k": 2},
             {"query": "drills", "user_id": "nobody"}]
    reqs.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    out = tmp_path / "answers.jsonl"
    assert main(["search", str(run_dir), "--engine", "fake", "--batch", str(reqs), "--out", str(out), "--quiet"]) == 0
    answers = [json.loads(x) for x in out.read_text().splitlines()]
    assert answers == [client.post("/search", json=x).json() for x in lines]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user_id": "u1"}\n{"user_id": "u2", "k": 500}\n')
    out2 = tmp_path / "answers2.jsonl"
    assert main(["recommend", str(run_dir), "--engine", "fake", "--batch", str(bad), "--out", str(out2)]) == 2
    assert f"{bad}:2: field 'k': Input should be less than or equal to 100" in capsys.readouterr().err
    assert not out2.exists()
    bad.write_text('{"user_id": "u1"\n')
    assert main(["recommend", str(run_dir), "--engine", "fake", "--batch", str(bad), "--out", str(out2)]) == 2
    assert f"{bad}:1: invalid JSON" in capsys.readouterr().err
    bad.write_bytes(b'{"user_id": "u1"}\n{"user_id": "\xff"}\n')
    assert main(["recommend", str(run_dir), "--engine", "fake", "--batch", str(bad), "--out", str(out2)]) == 2
    assert f"{bad}:2: not UTF-8" in capsys.readouterr().err
    assert main(["recommend", str(run_dir), "--engine", "fake", "--batch", str(bad)]) == 2
    assert "--batch needs --out" in capsys.readouterr().err
    assert main(["recommend", str(run_dir), "--engine", "fake"]) == 2
    assert "exactly one of --user or --batch" in capsys.readouterr().err


# ---- GenerativeEngine with a tiny untrained model -----------------------------------------------------
def _tiny_generative(data, beam_size: int):
    import torch

    from gensar.model.backbone import BackboneConfig, build_backbone
    from gensar.ids.item_ids import IdMaps
    from gensar.model.prompts import MARKER_TOKENS, tokenizer_corpus
    from gensar.model.task_config import TaskConfig
    from gensar.model.tokenizer import TokenizerConfig, build_tokenizer
    from gensar.serve.generative import GenerativeEngine

    n = len(data.items)
    # Semantic IDs of two lengths (items 0-3 carry a disambiguation token), collaborative IDs of three.
    sem = {f"i{i}": (f"<s_a_{i % 4}>", f"<sem_a_{i // 4}>") + (("<sem_x_0>",) if i < 4 else ()) for i in range(n)}
    col = {f"i{i}": (f"<s_a_{i % 4}>", f"<col_a_{i // 8}>", f"<col_x_{(i // 4) % 2}>") for i in range(n)}
    ids = IdMaps(sem, col)
    ids.check()
    tok = build_tokenizer(tokenizer_corpus(data, "compact"), list(MARKER_TOKENS) + ids.tokens(),
                          TokenizerConfig(vocab_size=300, min_frequency=1))
    torch.manual_seed(0)
    model = build_backbone(BackboneConfig(preset="tiny", dropout=0.0), tok)
    return GenerativeEngine(model, tok, ids, data, TaskConfig(), max_input_len=48, beam_size=beam_size), ids, tok


def _teacher_forced(engine, input_ids, prefix: int, ids_tokens: list[list[int]]) -> list[float]:
    """log p(identifier | input, prefix) of every candidate, by plain teacher forcing (no cache, no beam)."""
    import torch

    scores = []
    with torch.no_grad():
        for toks in ids_tokens:
            dec = torch.tensor([[engine.model.config.decoder_start_token_id, prefix, *toks]])
            logits = engine.model(input_ids=input_ids, attention_mask=input_ids != engine.pad,
                                  decoder_input_ids=dec).logits[0]  # [T, V]
            logp = torch.log_softmax(logits.float(), -1)
            scores.append(sum(float(logp[1 + j, t]) for j, t in enumerate(toks)))
    return scores


def test_generative_engine_renders_like_training_and_decodes_exactly():
    from gensar.ids.item_ids import COLLABORATIVE, SEMANTIC
    from gensar.model.encoder import SampleEncoder
    from gensar.model.prompts import REC_TOKEN, SEARCH_TOKEN
    from gensar.model.samples import Sample
    from gensar.model.task_config import TaskConfig

    data = make_tiny_prepared()
    engine, ids, tok = _tiny_generative(data, beam_size=40)  # beam >= catalog: nothing is pruned
    enc = SampleEncoder(tok, ids, data, TaskConfig(), 48)
    hist = Service(data, FakeEngine(data.items, data.events), ServeConfig(engine="fake")).histories
    user_events = data.events.index[data.events["user_id"] == "u4"].tolist()
    history = hist.get("u4")
    # Inputs from live-style histories equal the training encoder's inputs from event ids.
    got = engine.render("rec", [history], [""])[0].tolist()
    assert got == enc.input(Sample(task="rec", history=tuple(user_events)))
    got = engine.render("search", [history], ["lab scales"])[0].tolist()
    assert got == enc.input(Sample(task="search", query="lab scales", history=tuple(user_events)))
    # Search without a history is the ad-hoc search task.
    got = engine.render("search", [()], ["lab scales"])[0].tolist()
    assert got == enc.input(Sample(task="adhoc", query="lab scales"))

    # With a beam as wide as the catalog, the ranking is the exact teacher-forced ranking.
    (rec,) = engine.recommend([history], k=40)
    inputs = engine.render("rec", [history], [""])
    exact = _teacher_forced(engine, inputs, tok.convert_tokens_to_ids(REC_TOKEN),
                            [enc.item_id(COLLABORATIVE, f"i{i}") for i in range(40)])
    assert sorted(r.index for r in rec) == list(range(40))
    for r in rec:
        assert r.score == pytest.approx(exact[r.index], abs=1e-4)
    assert [r.score for r in rec] == sorted((r.score for r in rec), reverse=True)

    (hits,) = engine.search(["lab scales"], [()], k=40)
    inputs = engine.render("search", [()], ["lab scales"])
    exact = _teacher_forced(engine, inputs, tok.convert_tokens_to_ids(SEARCH_TOKEN),
                            [enc.item_id(SEMANTIC, f"i{i}") for i in range(40)])
    assert sorted(r.index for r in hits) == list(range(40))  # IDs of length 2 and 3 both come out
    for r in hits:
        assert r.score == pytest.approx(exact[r.index], abs=1e-4)


def test_generative_engine_batches_and_suggests_known_queries():
    data = make_tiny_prepared()
    engine, _, _ = _tiny_generative(data, beam_size=6)
    hist = Service(data, FakeEngine(data.items, data.events), ServeConfig(engine="fake")).histories
    histories = [hist.get("u1"), (), hist.get("u7", last=2)]
    together = engine.recommend(histories, k=4)
    for h, answer in zip(histories, together, strict=True):
        (alone,) = engine.recommend([h], k=4)
        assert [r.index for r in answer] == [r.index for r in alone]
        assert [r.score for r in answer] == pytest.approx([r.score for r in alone], abs=1e-4)
        assert len({r.index for r in answer}) == 4
    known = set(data.events.loc[data.events["behavior"] == "search", "query"])
    suggestions = engine.suggest_queries(histories, k=3)
    assert all(1 <= len(s) <= 3 and {q.text for q in s} <= known for s in suggestions)
    assert all(math.isfinite(q.score) and q.score < 0 for s in suggestions for q in s)
    assert engine.recommend([], k=3) == [] and engine.search([], [], k=3) == []
    (wide,) = engine.recommend([()], k=20)  # k above the beam size widens the beam
    assert len({r.index for r in wide}) == 20


def test_generative_run_dir_serves_over_http(tmp_path):
    from gensar.config import to_dict
    from gensar.model.backbone import save_model
    from gensar.model.train_config import ModelRunConfig, TrainConfig
    from gensar.model.trained import MODEL_CONFIG_NAME

    data = make_tiny_prepared()
    engine, ids, tok = _tiny_generative(data, beam_size=10)
    run = tmp_path / "run"
    data.save(run / "data")
    (run / "model").mkdir()
    save_model(engine.model, tok, run / "model")
    ids.save(run / "model" / "item_ids.json")
    (run / "model" / MODEL_CONFIG_NAME).write_text(json.dumps(
        {"config": to_dict(ModelRunConfig(train=TrainConfig(max_input_len=48)))}))
    service = Service.open(run, ServeConfig(engine="generative", beam_size=10))
    try:
        with TestClient(create_app(service)) as c:
            body = c.post("/recommend", json={"user_id": "u2", "k": 5}).json()
            (direct,) = engine.recommend([service.histories.get("u2", last=service.max_history)], k=5)
            assert [it["item_id"] for it in body["items"]] == [f"i{r.index}" for r in direct]
            assert c.post("/search", json={"query": "tools drills", "k": 3}).json()["items"][0]["title"]
            assert c.get("/health").json()["engine"] == "generative"
    finally:
        service.close()
    (run / "model" / MODEL_CONFIG_NAME).unlink()
    with pytest.raises(GensarError, match="gensar_model.json: missing"):
        Service.open(run, ServeConfig(engine="generative"))
