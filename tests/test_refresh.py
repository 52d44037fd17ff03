"""Daily refresh (`gensar pipeline --refresh-from RUN0`): newer data keeps every identifier, new items
get theirs, the model starts from RUN0's weights, and bad refreshes are refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from gensar.cli import main
from gensar.config import load_config
from gensar.data.prepared import PreparedData
from gensar.data.schema import make_events, make_items
from gensar.data.time_cut import first_events
from gensar.ids.assign import check_unique_prefix_free
from gensar.ids.item_ids import ID_KINDS, IdMaps
from gensar.model.backbone import BackboneConfig, build_backbone, load_model
from gensar.model.tokenizer import TokenizerConfig, build_tokenizer
from gensar.model.warm_start import warm_start
from gensar.pipeline import PipelineConfig, builtin_config, run_pipeline
from gensar.refresh import RefreshConfig, replay_of

TINY = builtin_config("tiny")
TINY_RUN = load_config(PipelineConfig, TINY)
REPLAY = 0.5  # the refresh below draws half of what RUN0 trained on each epoch


# ---- the older part of a log ----------------------------------------------------------------------
def test_first_events_keeps_each_users_first_fraction_and_the_items_they_name():
    items = make_items([{"item_id": i, "title": f"item {i}"} for i in ("a", "b", "c", "d")])
    rows = ([{"user_id": "u", "timestamp": t, "items": [i]} for t, i in enumerate("abcd")]  # 4 events
            + [{"user_id": "v", "timestamp": t, "items": [i]} for t, i in enumerate("ab")])  # 2 events
    events = make_events(rows)
    kept, catalog = first_events(events, items, 0.6)
    # u: ceil(0.6 * 4) = 3 events (a, b, c), v: ceil(0.6 * 2) = 2 (a, b); d is named by no kept event
    assert [(u, list(i)) for u, i in zip(kept["user_id"], kept["items"], strict=True)] == [
        ("u", ["a"]), ("u", ["b"]), ("u", ["c"]), ("v", ["a"]), ("v", ["b"])]
    assert kept["event_id"].tolist() == [0, 1, 2, 3, 4]
    assert catalog["item_id"].tolist() == ["a", "b", "c"]
    same = first_events(events, items, 1.0)
    assert same[0] is events and same[1] is items


def test_history_fraction_is_validated():
    with pytest.raises(Exception, match="history_fraction"):
        load_config(PipelineConfig, TINY, ["data.prepare.history_fraction=0"])


# ---- warm start -----------------------------------------------------------------------------------
def test_warm_start_carries_each_tokens_row_by_its_string(tmp_path):
    from gensar.model.backbone import save_model

    cfg = BackboneConfig(preset="tiny")
    old_tok = build_tokenizer(["red lamp"], ["<rec>", "<s_a_1>"], TokenizerConfig())
    torch.manual_seed(0)
    old = build_backbone(cfg, old_tok)
    save_model(old, old_tok, tmp_path)
    new_tok = build_tokenizer(["red lamp", "zebra"], ["<rec>", "<s_a_1>", "<s_a_2>"], TokenizerConfig())
    torch.manual_seed(1)
    new = build_backbone(cfg, new_tok)
    fresh = new.get_input_embeddings().weight.detach().clone()
    report = warm_start(new, new_tok, tmp_path)
    old_rows, new_rows = old_tok.get_vocab(), new_tok.get_vocab()
    carried = [t for t in new_rows if t in old_rows]
    assert report == {"carried_tokens": len(carried), "new_tokens": len(new_rows) - len(carried)}
    assert report["new_tokens"] >= 2  # <s_a_2> and zebra's piece(s)
    emb, old_emb = new.get_input_embeddings().weight, old.get_input_embeddings().weight
    for token in ("<rec>", "<s_a_1>", "red", "lamp", "</s>"):
        assert torch.equal(emb[new_rows[token]], old_emb[old_rows[token]])
    assert torch.equal(emb[new_rows["<s_a_2>"]], fresh[new_rows["<s_a_2>"]])  # never seen: left as built
    assert torch.equal(new.lm_head.weight, emb)  # tied
    key = "encoder.block.0.layer.0.SelfAttention.q.weight"
    assert torch.equal(new.state_dict()[key], old.state_dict()[key])


def test_warm_start_refuses_another_shape(tmp_path):
    from gensar.errors import GensarError
    from gensar.model.backbone import save_model

    tok = build_tokenizer(["red lamp"], ["<rec>"], TokenizerConfig())
    save_model(build_backbone(BackboneConfig(preset="tiny"), tok), tok, tmp_path)
    bigger = build_backbone(BackboneConfig(preset="cpu"), tok)
    with pytest.raises(GensarError, match="model.backbone must be the previous run's"):
        warm_start(bigger, tok, tmp_path)


def test_previous_state_follows_what_the_refresh_reads(tmp_path):
    """RUN0's data, ID and model stages and its items log change the digest; its hybrid and
    evaluation stages (refitted, rerun) do not, so the refresh is not retrained for them."""
    from gensar.refresh import previous_state
    from gensar.serve.items_log import ITEMS_LOG_NAME

    stages = {"data": "a", "ids": "b", "model": "c", "hybrid": "d", "evaluate": "e"}
    (tmp_path / "stages.json").write_text(json.dumps(stages), encoding="utf-8")
    first = previous_state(tmp_path)
    (tmp_path / "stages.json").write_text(json.dumps(stages | {"hybrid": "x", "evaluate": "y"}), encoding="utf-8")
    assert previous_state(tmp_path) == first
    for key in ("data", "ids", "model"):
        (tmp_path / "stages.json").write_text(json.dumps(stages | {key: "z"}), encoding="utf-8")
        assert previous_state(tmp_path) != first, key
    (tmp_path / "stages.json").write_text(json.dumps(stages), encoding="utf-8")
    (tmp_path / ITEMS_LOG_NAME).write_text('{"item_id": "n1"}\n', encoding="utf-8")
    assert previous_state(tmp_path) != first


# ---- the pipeline ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def refreshed(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny run on each user's first 60% of events, refreshed with the whole log."""
    root = tmp_path_factory.mktemp("refresh")
    before, after = root / "before", root / "after"
    run_pipeline(load_config(PipelineConfig, TINY, ["data.prepare.history_fraction=0.6"]), before)
    assert main(["pipeline", "--refresh-from", str(before), "--data", "synthetic", "--out", str(after),
                 "--set", "data.prepare.history_fraction=1", "--set", f"refresh.replay={REPLAY}"]) == 0
    return before, after


def test_replay_knows_the_previous_runs_training_targets_and_items(refreshed):
    before, after = refreshed
    old, new = PreparedData.load(before / "data"), PreparedData.load(after / "data")
    replay = replay_of(before, after / "data", RefreshConfig(replay=REPLAY))
    # by hand: an example of the new data is known when its target event came before the user's
    # time cut and was not one RUN0 held out (its valid and test targets, per behavior)
    stamp = new.events["timestamp"].to_numpy()
    cut = old.events.groupby("user_id")["timestamp"].max()
    held = old.examples[old.examples["split"] != "train"]
    held = set(zip(held["user_id"], old.events["timestamp"].to_numpy()[held["event_id"].to_numpy()], held["behavior"]))
    train = new.split("train")
    expect = {x for x, u, t, b in zip(train["example_id"], train["user_id"], stamp[train["event_id"].to_numpy()],
                                      train["behavior"], strict=True)
              if t <= cut.get(u, -1) and (u, t, b) not in held}
    assert replay.examples == frozenset(expect) and 0 < len(expect) < len(train)
    assert replay.items == frozenset(old.items["item_id"]) and len(new.items) > len(old.items)
    state = json.loads((after / "model" / "train_state.json").read_text(encoding="utf-8"))
    n_known = sum(1 for x in train.loc[train["behavior"] == "rec", "example_id"] if x in replay.examples)
    n_rec = int((train["behavior"] == "rec").sum())
    weight = TINY_RUN.model.tasks.rec
    assert state["task_counts"]["rec"] == round(weight * (n_rec - n_known)) + round(weight * REPLAY * n_known)
    assert state["replay"]["examples_share"] == REPLAY and state["replay"]["items_share"] == 1 and state["replay"]["examples"] == len(expect)


def test_refresh_keeps_every_identifier_and_gives_new_items_theirs(refreshed):
    before, after = refreshed
    old, new = IdMaps.load(before / "model" / "item_ids.json"), IdMaps.load(after / "model" / "item_ids.json")
    old_json = json.loads((before / "model" / "item_ids.json").read_text(encoding="utf-8"))
    new_json = json.loads((after / "model" / "item_ids.json").read_text(encoding="utf-8"))
    added = [i for i in new.item_ids if i not in old.semantic]
    assert added and set(old.item_ids) <= set(new.item_ids)
    assert all(new_json[i] == old_json[i] for i in old.item_ids)  # byte-identical
    for kind in ID_KINDS:
        assert check_unique_prefix_free([list(t) for t in new.of(kind).values()]) is None
    data_items = pd.read_parquet(after / "data" / "items.parquet")["item_id"].tolist()
    assert new.item_ids == data_items  # every item of the newer data, in its order
    report = json.loads((after / "ids" / "ids_report.json").read_text(encoding="utf-8"))
    assert (report["kept"], report["added"], report["dropped"]) == (len(old.item_ids), len(added), 0)
    # the RQ-VAE is carried over, not retrained
    assert (after / "ids" / "rqvae.pt").read_bytes() == (before / "ids" / "rqvae.pt").read_bytes()


def test_refresh_starts_from_the_previous_model_and_trains_a_third(refreshed):
    before, after = refreshed
    state = json.loads((after / "model" / "train_state.json").read_text(encoding="utf-8"))
    assert state["init_from"]["model"] == str(before / "model")
    assert state["init_from"]["carried_tokens"] > 0
    assert state["epochs_run"] == 1  # tiny trains 2 epochs: a third, rounded down, at least 1
    _, tokenizer = load_model(after / "model")
    vocab = tokenizer.get_vocab()
    assert all(t in vocab for t in IdMaps.load(after / "model" / "item_ids.json").tokens())
    metrics = json.loads((after / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"]["rec"]["n"] > 0 and metrics["full_ranking"]["test"]["search"]["n"] > 0


def test_refresh_is_cached_and_refuses_what_it_cannot_carry(refreshed, tmp_path, capsys):
    before, after = refreshed
    capsys.readouterr()
    assert main(["pipeline", "--refresh-from", str(before), "--data", "synthetic", "--out", str(after),
                 "--set", "data.prepare.history_fraction=1", "--set", f"refresh.replay={REPLAY}"]) == 0
    assert capsys.readouterr().out.count("up to date, skipped") == 5
    # another ID config: the identifiers could not be the previous run's
    assert main(["pipeline", "--refresh-from", str(before), "--data", "synthetic", "--out", str(tmp_path / "x"),
                 "--set", "ids.rqvae.codebook_size=16"]) == 2
    assert "ids: differs from" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    # not a run; the run itself as the output
    assert main(["pipeline", "--refresh-from", str(tmp_path), "--data", "synthetic", "--out", str(tmp_path / "y")]) == 2
    assert "--refresh-from names a pipeline run directory" in capsys.readouterr().err
    assert main(["pipeline", "--refresh-from", str(before), "--data", "synthetic", "--out", str(before)]) == 2
    assert "--refresh-from" in capsys.readouterr().err
    assert main(["pipeline", "--refresh-from", str(before), "--out", str(tmp_path / "z")]) == 2
    assert "needs --data" in capsys.readouterr().err
