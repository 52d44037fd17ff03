"""SASRec: masking, padding, learning a toy pattern, protocols, metrics, checkpoint and CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import make_tiny_prepared

from gensar.cli import main
from gensar.config import load_config
from gensar.embed.collaborative import collaborative_embeddings
from gensar.embed.sasrec import SASRec, SASRecConfig
from gensar.embed.sasrec_checkpoint import load_sasrec
from gensar.embed.sasrec_eval import (
    evaluate,
    pad_histories,
    popularity_metrics,
    sampled_metrics,
    sasrec_scores,
    target_ranks,
)
from gensar.embed.sasrec_protocols import EvalSet, gensar_protocol, whole_sequence_split
from gensar.embed.sasrec_train import train_sasrec, training_windows
from gensar.errors import ConfigError

METRIC_KEYS = {"hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10"}


def _model(n_items: int = 30, **kw) -> SASRec:
    torch.manual_seed(0)
    model = SASRec(n_items, SASRecConfig(hidden=16, heads=2, max_len=10, **kw))
    return model.eval()


# ---- the model -------------------------------------------------------------------------------
def test_output_at_t_ignores_later_items():
    model = _model()
    seq = torch.tensor([[3, 7, 1, 9, 4, 12]])
    changed = seq.clone()
    changed[0, 3:] = torch.tensor([20, 21, 22])
    with torch.no_grad():
        a, b = model(seq), model(changed)  # [1, 6, D]
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])  # later positions do see the change


def test_left_padding_changes_nothing():
    model = _model()
    seq = torch.tensor([[5, 2, 8, 8]])
    padded = torch.tensor([[0, 0, 0, 5, 2, 8, 8]])
    with torch.no_grad():
        torch.testing.assert_close(model(seq), model(padded)[:, 3:])
        cand = torch.tensor([[1, 4, 7]])
        torch.testing.assert_close(model.score(seq, cand), model.score(padded, cand))


def test_padding_row_is_zero_and_outputs_are_tied():
    model = _model(n_items=5)
    assert torch.count_nonzero(model.item_emb.weight[0]) == 0
    h = torch.randn(2, 16)
    torch.testing.assert_close(model.item_logits(h), h @ model.item_embeddings().T)  # [2, 5]
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 11, dtype=torch.long))


@pytest.mark.parametrize("loss", ["full_ce", "sampled_ce", "bce"])
def test_learns_a_deterministic_successor_pattern(loss):
    # item k is always followed by k+1 (mod n): after training, the successor ranks first
    n = 20
    rng = np.random.default_rng(0)
    seqs = [[(s + j) % n for j in range(int(rng.integers(4, 9)))] for s in rng.integers(0, n, size=120)]
    proto = whole_sequence_split(seqs, n, negatives=5, seed=0)
    cfg = SASRecConfig(hidden=32, heads=2, layers=1, dropout=0.1, max_len=8, loss=loss, negatives=6,
                       lr=0.01, weight_decay=0.0, batch_size=32, epochs=30, patience=30)
    trained = train_sasrec(proto.train_seqs, n, cfg, valid=proto.valid, progress=False)
    assert trained.log[-1]["loss"] < 0.5 * trained.log[0]["loss"]
    assert evaluate(trained.model, proto.test)["hr@1"] >= 0.95


def test_best_weights_are_restored():
    data = make_tiny_prepared()
    proto = gensar_protocol(data)
    cfg = SASRecConfig(hidden=16, heads=2, layers=1, max_len=10, lr=0.01, epochs=8, patience=2, batch_size=16)
    trained = train_sasrec(proto.train_seqs, len(data.items), cfg, valid=proto.valid, progress=False)
    ndcgs = [row["valid_ndcg@10"] for row in trained.log]
    assert trained.best_valid_ndcg10 == max(ndcgs) and trained.best_epoch == 1 + int(np.argmax(ndcgs))
    assert evaluate(trained.model, proto.valid)["ndcg@10"] == pytest.approx(trained.best_valid_ndcg10)
    if len(trained.log) < cfg.epochs:  # stopped early: exactly `patience` evaluations without gain
        assert len(trained.log) == trained.best_epoch + cfg.patience


def test_checkpoint_round_trip(tmp_path):
    seqs = [[0, 1, 2, 3], [2, 3, 4], [4, 0, 1]]
    cfg = SASRecConfig(hidden=8, heads=1, layers=1, max_len=4, epochs=2)
    trained = train_sasrec(seqs, 5, cfg, progress=False)
    trained.save(tmp_path / "model.pt")
    loaded = load_sasrec(tmp_path / "model.pt")
    assert loaded.config == cfg and loaded.best_epoch == 2
    ev = EvalSet([[0, 1], [3]], np.array([[2, 3, 4], [4, 0, 1]]))
    np.testing.assert_array_equal(target_ranks(_scores(trained.model, ev)), target_ranks(_scores(loaded.model, ev)))
    torch.testing.assert_close(trained.model.item_embeddings(), loaded.model.item_embeddings())


def _scores(model: SASRec, ev: EvalSet) -> np.ndarray:
    return sasrec_scores(model, ev.histories, ev.candidates)


# ---- metrics ---------------------------------------------------------------------------------
def test_metrics_on_hand_computed_ranks():
    m = sampled_metrics(np.array([0, 1, 4, 10]))
    assert m["hr@1"] == 0.25 and m["hr@5"] == 0.75 and m["hr@10"] == 0.75
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 4)
    assert m["ndcg@10"] == pytest.approx(m["ndcg@5"])
    assert set(m) == METRIC_KEYS


def test_ties_count_against_the_target():
    scores = np.array([[0.5, 0.9, 0.1, 0.5], [2.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(target_ranks(scores), [2, 0, 3])
    assert sampled_metrics(target_ranks(np.zeros((5, 101))))["hr@10"] == 0.0  # constant model: no credit


def test_popularity_ranks_by_training_counts():
    train = [[0, 0, 1], [0, 2]]  # counts: item0 = 3, item1 = 1, item2 = 1, item3 = 0
    ev = EvalSet([[], [], []], np.array([[0, 1, 3], [1, 0, 3], [2, 1, 3]]))
    m = popularity_metrics(train, 4, ev)  # ranks 0, 1, 1 (tie with item1 counts against item2)
    assert m["hr@1"] == pytest.approx(1 / 3) and m["ndcg@5"] == pytest.approx((1 + 2 / math.log2(3)) / 3)


# ---- sequences and protocols -------------------------------------------------------------------
def test_long_sequences_become_windows_covering_each_target_once():
    w = training_windows([list(range(7)), [5], [8, 9]], max_len=3)
    np.testing.assert_array_equal(w, [[4, 5, 6, 7], [1, 2, 3, 4], [0, 0, 9, 10]])
    targets = sorted(int(t) - 1 for row in w for t, prev in zip(row[1:], row[:-1], strict=True) if prev > 0)
    assert targets == [1, 2, 3, 4, 5, 6, 9]


def test_pad_histories_keeps_newest_items():
    np.testing.assert_array_equal(pad_histories([[1, 2, 3, 4], [7], []], max_len=3), [[3, 4, 5], [0, 0, 8], [0, 0, 0]])


def test_leave_one_out_split_and_negatives():
    seqs = [[0, 1, 2, 3], [4, 5], [6, 7, 8]]
    p = whole_sequence_split(seqs, n_items=20, negatives=5, seed=3)
    assert p.train_seqs == [[0, 1], [4, 5], [6]]
    assert p.valid.histories == [[0, 1], [6]] and p.test.histories == [[0, 1, 2], [6, 7]]
    assert p.valid.candidates[:, 0].tolist() == [2, 7] and p.test.candidates[:, 0].tolist() == [3, 8]
    for cands, seq in zip([*p.valid.candidates, *p.test.candidates], [seqs[0], seqs[2]] * 2, strict=True):
        assert len(set(cands[1:].tolist())) == 5 and not set(cands[1:].tolist()) & set(seq)
    again = whole_sequence_split(seqs, n_items=20, negatives=5, seed=3)
    np.testing.assert_array_equal(p.test.candidates, again.test.candidates)
    with pytest.raises(ConfigError, match="eval_negatives"):
        whole_sequence_split(seqs, n_items=8, negatives=5, seed=0)


def test_gensar_protocol_uses_training_events_only(tiny_prepared):
    data = tiny_prepared
    p = gensar_protocol(data)
    held = data.held_out_event_ids
    train_items = sum(len(items) for e, items in zip(data.events["event_id"], data.events["items"], strict=True) if e not in held)
    assert sum(len(s) for s in p.train_seqs) == train_items
    valid = data.split("valid", "rec")
    assert len(p.valid) == len(valid) and len(p.test) == len(data.split("test", "rec"))
    index = data.item_index
    for hist, cands, ex in zip(p.valid.histories, p.valid.candidates, valid.itertuples(), strict=True):
        assert cands[0] == index[ex.target]
        ev = data.events[(data.events["user_id"] == ex.user_id)]
        before = ev[ev["timestamp"] < data.events.loc[ex.event_id, "timestamp"]]
        assert hist == [index[i] for items in before["items"] for i in items]


def test_collaborative_embeddings_shape_and_determinism(tiny_prepared):
    cfg = SASRecConfig(hidden=16, heads=2, layers=1, max_len=10, epochs=3, patience=3)
    a = collaborative_embeddings(tiny_prepared, cfg, progress=False)
    b = collaborative_embeddings(tiny_prepared, cfg, progress=False)
    assert a.shape == (len(tiny_prepared.items), 16) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


# ---- config and CLI --------------------------------------------------------------------------
def test_bad_config_values_name_the_key():
    with pytest.raises(ConfigError, match="'dropout'"):
        load_config(SASRecConfig, overrides=["dropout=1.5"])
    with pytest.raises(ConfigError, match="'heads'"):
        load_config(SASRecConfig, overrides=["hidden=64", "heads=3"])
    with pytest.raises(ConfigError, match="'loss'"):
        load_config(SASRecConfig, overrides=["loss=softmax"])
    with pytest.raises(ConfigError, match="'hiden'"):
        load_config(SASRecConfig, overrides=["hiden=32"])


@pytest.fixture
def tiny_dir(tmp_path):
    return make_tiny_prepared().save(tmp_path / "prepared")


TINY = ["--set", "hidden=16", "--set", "layers=1", "--set", "max_len=10", "--set", "epochs=3", "--quiet"]


@pytest.mark.parametrize("protocol", ["gensar", "sasrec"])
def test_cli_writes_metrics_checkpoint_and_config(tiny_dir, tmp_path, protocol):
    out = tmp_path / f"run-{protocol}"
    args = ["sasrec", str(tiny_dir), "--out", str(out), "--protocol", protocol, *TINY, "--set", "eval_negatives=10"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] == protocol
    assert set(metrics["valid"]) == METRIC_KEYS and set(metrics["test"]) == METRIC_KEYS
    assert set(metrics["popularity"]) == {"valid", "test"}
    assert 1 <= metrics["best_epoch"] <= 3 and metrics["train_seconds"] > 0
    assert metrics["config"]["hidden"] == 16 and metrics["n_test"] > 0
    assert all(0.0 <= v <= 1.0 for v in metrics["test"].values())
    loaded = load_sasrec(out / "model.pt")
    assert loaded.config.hidden == 16 and loaded.model.n_items == 40
    assert "hidden: 16" in (out / "config.yaml").read_text()
    assert sorted(p.name for p in out.iterdir()) == [".gensar-run.json", "config.yaml", "log.json", "metrics.json", "model.pt"]


def test_cli_bad_config_exits_2_without_output(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sasrec", str(tiny_dir), "--out", str(out), "--set", "dropout=1.5"]) == 2
    err = capsys.readouterr().err
    assert "'dropout'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_refuses_non_empty_output_and_missing_data(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["sasrec", str(tiny_dir), "--out", str(out), *TINY]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["sasrec", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r2"), *TINY]) == 2
    assert "manifest.json" in capsys.readouterr().err
