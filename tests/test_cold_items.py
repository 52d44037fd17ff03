"""Cold-start evaluation (`gensar prepare --cold-items R`): cold items stay out of training, get
identifiers after it, and every evaluator reports their targets apart from the warm ones."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from test_prepare import check_invariants, random_raw

from gensar.baselines.scorer import Request, requests_for
from gensar.cli import main
from gensar.config import load_config, to_dict, to_yaml
from gensar.data.prepare import PrepareConfig, prepare
from gensar.data.prepared import COLD_ITEMS_FILE, PreparedData
from gensar.embed.sasrec_protocols import gensar_protocol
from gensar.eval.groups import GROUPS, group_key
from gensar.ids.assign import check_unique_prefix_free
from gensar.ids.item_ids import ID_KINDS, IdMaps
from gensar.model.samples import build_samples
from gensar.model.task_config import TaskConfig
from gensar.pipeline import PipelineConfig, builtin_config, run_pipeline

RATIO = 0.1


@pytest.fixture(scope="module")
def cold_pair() -> tuple[PreparedData, PreparedData]:
    """The same log prepared without and with cold items."""
    raw = random_raw(n_users=60, n_items=120)
    cfg = PrepareConfig(num_negatives=30, search_protocol="mixed")
    return prepare(raw, cfg), prepare(raw, dataclasses.replace(cfg, cold_items=RATIO))


# ---- the data ------------------------------------------------------------------------------------
def test_cold_events_are_out_of_training_and_of_every_history(cold_pair):
    warm0, data = cold_pair
    cold = set(data.cold_items)
    assert len(cold) == round(RATIO * len(data.items)) and data.manifest["cold_items"]["items"] == len(cold)
    assert data.items["item_id"].tolist()[-len(cold):] == list(data.cold_items)  # the last rows
    check_invariants(data, num_negatives=30)
    cold_events = {int(e) for e, items in zip(data.events["event_id"], data.events["items"], strict=True)
                   if cold & set(items)}
    assert cold_events and cold_events == data.cold_event_ids <= data.held_out_event_ids
    ex = data.examples
    train = ex[ex["split"] == "train"]
    assert not cold_events & set(train["event_id"]) and not cold & set(train["target"])
    assert all(cold_events.isdisjoint(h) for h in ex["history"])  # train, valid and test histories
    cold_rows = {data.item_index[i] for i in cold}
    assert all(cold_rows.isdisjoint(r.history) for r in requests_for(data, ex[ex["split"] != "train"]))
    # the valid/test examples (and their candidate lists) are those of the same log without cold items
    key = ["user_id", "split", "behavior", "event_id", "target"]
    evals = [d.examples[d.examples["split"] != "train"] for d in (warm0, data)]
    assert evals[0][key].reset_index(drop=True).equals(evals[1][key].reset_index(drop=True))
    assert ([warm0.candidate_lists[i] for i in evals[0]["example_id"]]
            == [data.candidate_lists[i] for i in evals[1]["example_id"]])
    cold_targets = evals[1]["target"].isin(cold)
    assert 0 < cold_targets.sum() < len(cold_targets)


def test_training_view_holds_no_cold_item(cold_pair):
    _, data = cold_pair
    cold = set(data.cold_items)
    view = data.training_view()
    assert len(view.items) == data.trained_items == len(data.items) - len(cold)
    assert not cold & set(view.items["item_id"]) and not cold & set(view.examples["target"])
    assert all(not cold & set(c) for c in view.candidates["candidates"])
    # what the T5 and SASRec train on
    samples = build_samples(view, TaskConfig(), seed=0)
    assert not cold & {s.item for pool in samples.values() for s in pool}
    assert all(view.cold_event_ids.isdisjoint(s.history) for pool in samples.values() for s in pool)
    proto = gensar_protocol(view)
    assert max(max(s) for s in proto.train_seqs) < len(view.items)
    assert len(data.split("valid", "rec")) > len(proto.valid) > 0  # the cold valid targets are left out


def test_without_cold_items_nothing_changes(cold_pair, tmp_path):
    warm0, data = cold_pair
    assert warm0.cold_items == () and "cold_items" not in warm0.manifest
    assert "cold_items" not in warm0.manifest["options"] and data.manifest["options"]["cold_items"] == RATIO
    assert warm0.training_view() is warm0
    assert not (warm0.save(tmp_path / "w") / COLD_ITEMS_FILE).exists()
    assert PreparedData.load(data.save(tmp_path / "c")).cold_items == data.cold_items
    assert "cold_items" not in to_yaml(PipelineConfig()) and "cold_items" not in to_dict(PrepareConfig())
    cfg = load_config(PipelineConfig, None, [f"data.prepare.cold_items={RATIO}"])
    assert load_config(PipelineConfig, None, []) != cfg
    assert "cold_items: 0.1" in to_yaml(cfg)


@pytest.mark.parametrize("value", ["1.0", "-0.1", "1.5"])
def test_bad_fractions_exit_2_naming_the_key(value, tmp_path, capsys):
    for argv in (["prepare", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--cold-items", value],
                 ["pipeline", "--config", str(builtin_config("tiny")), "--out", str(tmp_path / "run"),
                  "--set", f"data.prepare.cold_items={value}"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "cold_items" in err and "must be in [0, 1)" in err and err.count("\n") == 1, err
        assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


# ---- a tiny run ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cold_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cold") / "run"
    cfg = load_config(PipelineConfig, builtin_config("tiny"), [f"data.prepare.cold_items={RATIO}"])
    run_pipeline(cfg, out)
    return out


def test_cold_items_get_identifiers_only_after_training(cold_run):
    data = PreparedData.load(cold_run / "data")
    cold = list(data.cold_items)
    assert list(json.loads((cold_run / "stages.json").read_text())) == [
        "data", "ids", "model", "cold", "hybrid", "evaluate"]
    trained = IdMaps.load(cold_run / "model" / "item_ids.json")
    assert trained.item_ids == data.training_view().items["item_id"].tolist()  # the ID stage skipped them
    assert IdMaps.load(cold_run / "ids") == trained
    added = IdMaps.load(cold_run / "cold")
    assert added.item_ids == cold
    vocabulary = set(trained.tokens())
    assert set(added.tokens()) <= vocabulary  # only tokens the model was trained with
    from gensar.model.trained import load_run
    _, model = load_run(cold_run)
    for kind in ID_KINDS:
        every = model.ids.of(kind)
        assert {i: every[i] for i in trained.item_ids} == trained.of(kind)  # trained identifiers unchanged
        assert list(every) == data.items["item_id"].tolist()
        assert check_unique_prefix_free([list(t) for t in every.values()]) is None


def test_metrics_report_cold_and_warm_targets_adding_up(cold_run):
    metrics = json.loads((cold_run / "metrics.json").read_text())
    blocks = {"hybrid": metrics, "generative": metrics["generative"],
              **{name: b for name, b in metrics["baselines"].items()}}
    checked = 0
    for name, block in blocks.items():
        full = block["full_ranking"]
        for per_split in (block["valid"], block["test"], full["valid"], full["test"]):
            for behavior in ("rec", "search"):
                if behavior not in per_split:
                    continue
                whole = per_split[behavior]
                parts = [per_split[group_key(behavior, g)] for g in GROUPS]
                assert sum(p["n"] for p in parts) == whole["n"], (name, behavior)
                assert all(p["n"] > 0 for p in parts)
                assert all(set(whole) - {"seconds"} == set(p) for p in parts), (name, behavior)
                checked += 1
    # hybrid, generative, popularity: both behaviors; BM25, dense, match-popularity: search; SASRec, content: rec
    assert checked == 4 * (2 + 2 + 2 + 1 + 1 + 1 + 1 + 1)
    # a retriever that never saw a cold item ranks it below every item it did see
    sasrec, popularity = metrics["baselines"]["sasrec"], metrics["baselines"]["popularity"]
    assert sasrec["test"]["rec_cold"]["hr@10"] == sasrec["full_ranking"]["test"]["rec_cold"]["recall@20"] == 0.0
    assert popularity["full_ranking"]["test"]["rec_cold"]["recall@20"] == 0.0


def test_the_served_run_holds_the_cold_items(cold_run, tmp_path):
    from gensar.serve.schemas import SearchRequest
    from gensar.serve.service import ServeConfig, Service

    data = PreparedData.load(cold_run / "data")
    service = Service.open(cold_run, ServeConfig(), writable=False, items_log=tmp_path / "items.jsonl",
                           events_log=tmp_path / "events.jsonl")
    try:
        assert service.catalog.prepared == data.trained_items and service.catalog.size == len(data.items)
        titles = data.items.set_index("item_id").loc[list(data.cold_items), "title"].tolist()
        answers = service.search([SearchRequest(query=t, k=3) for t in titles])
        assert [a.items[0].item_id for a in answers] == list(data.cold_items)  # each for its own title
    finally:
        service.close()


def test_recommendation_candidates_hold_cold_items_marked_new(cold_run, tmp_path):
    """Content proposes a cold item to a user who clicked one like it; the scorers trained without it
    (the generative model, SASRec) give it the mean of its peers (the trained candidates that neither
    the beam nor SASRec proposed), and ``new`` marks it."""
    from gensar.serve.engine import HistoryEvent
    from gensar.serve.service import ServeConfig, Service

    data = PreparedData.load(cold_run / "data")
    service = Service.open(cold_run, ServeConfig(), writable=False, items_log=tmp_path / "items.jsonl",
                           events_log=tmp_path / "events.jsonl")
    try:
        engine = service.engine
        ranker = engine.ranker.with_fusions({})  # the config's scorers: sasrec, content, popularity
        assert ranker.trained_items == data.trained_items
        cold = data.cold_items[0]
        row = service.index[cold]
        inputs = engine.generative.render("rec", [[HistoryEvent("rec", "", (cold,))]], [""])
        cands = ranker.candidates("rec", [Request("", (row,))], inputs)
        names = ranker.feature_names("rec")
        assert "content" in names and "content" in cands.sources
        col = list(cands.items[0]).index(row)  # its own text is the profile: content's first
        assert cands.source_ranks[0, col, cands.sources.index("content")] == 0
        feats = cands.features[0]
        trained = cands.valid[0] & (cands.items[0] < data.trained_items)
        new = feats[:, names.index("new")]
        assert new[col] == 1.0 and not new[trained].any() and new[cands.valid[0]].sum() >= 1
        by_model = (cands.source_ranks[0][:, [s.startswith("beam") or s == "sasrec" for s in cands.sources]]
                    >= 0).any(axis=1)
        peers = trained & ~by_model
        assert peers.any() and (trained & by_model).any()
        for name in ("generative", "sasrec"):
            assert feats[col, names.index(name)] == pytest.approx(feats[peers, names.index(name)].mean())
    finally:
        service.close()
