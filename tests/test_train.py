"""Backbone, scoring and the training loop: learning, exact resume after SIGKILL, errors."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, make_tiny_prepared
from test_tasks import tiny_id_maps, write_tiny_ids

from gensar.cli import main
from gensar.config import from_dict, load_config
from gensar.errors import ConfigError
from gensar.model.backbone import BackboneConfig, build_backbone, load_pretrained_backbone, save_model
from gensar.model.scoring import behavior_metrics, candidate_log_likelihoods, pad_batch, rank_examples
from gensar.model.encoder import SampleEncoder
from gensar.model.prompts import MARKER_TOKENS, tokenizer_corpus
from gensar.model.samples import Sample, TaskMix, build_samples
from gensar.model.task_config import TaskConfig
from gensar.model.tokenizer import TokenizerConfig, build_tokenizer
from gensar.model.batching import EncodedSamples, bucket_key, collate, length_bucketed
from gensar.model.checkpoint import atomic_torch_save
from gensar.model.train import train, trained_behaviors
from gensar.model.train_config import ModelRunConfig

TINY = REPO / "configs" / "model-tiny.yaml"
TIMING_KEYS = {"train_seconds", "samples_per_s", "eval_seconds"}


@pytest.fixture(scope="module")
def tiny():
    data = make_tiny_prepared()
    ids = tiny_id_maps()
    tok = build_tokenizer(
        tokenizer_corpus(data, "compact"), list(MARKER_TOKENS) + ids.tokens(), TokenizerConfig()
    )
    return data, ids, tok


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    make_tiny_prepared().save(root / "data")
    write_tiny_ids(root / "ids")
    return root


# ---- backbone -----------------------------------------------------------------------------------------
def test_backbone_presets_and_overrides():
    cfg = from_dict(BackboneConfig, {"preset": "cpu", "num_layers": 2})
    s = cfg.shape()
    assert (s.d_model, s.num_layers, s.num_decoder_layers, s.num_heads, s.d_ff) == (128, 2, 4, 4, 512)
    t5 = cfg.t5_config(vocab_size=1000, pad_token_id=0, eos_token_id=1)
    assert (t5.d_model, t5.num_layers, t5.num_decoder_layers, t5.decoder_start_token_id) == (128, 2, 4, 0)
    with pytest.raises(ConfigError, match="'backbone.d_model': must be >= 1"):
        from_dict(BackboneConfig, {"d_model": 0})
    with pytest.raises(ConfigError, match="backbone.pretrained"):
        from_dict(BackboneConfig, {"pretrained": "/nonexistent/t5"})


def test_pretrained_backbone_grows_embeddings(tiny, tmp_path):
    tok = tiny[2]
    torch.manual_seed(0)
    model = build_backbone(BackboneConfig(preset="tiny"), tok)
    save_model(model, tok, tmp_path)
    grown, tok2 = load_pretrained_backbone(
        BackboneConfig(preset="tiny", pretrained=str(tmp_path)), ["<rec>", "<new_a_1>", "<new_a_2>"]
    )
    old = model.get_input_embeddings().weight
    new = grown.get_input_embeddings().weight
    assert len(tok2) == len(tok) + 2 and new.shape == (len(tok) + 2, old.shape[1])
    assert torch.equal(new[: len(tok)], old)  # trained rows are kept
    assert tok2.convert_tokens_to_ids("<new_a_2>") == len(tok) + 1


# ---- scoring ------------------------------------------------------------------------------------------
def test_ranking_metrics_by_hand():
    m = behavior_metrics({"rec": np.array([0, 9]), "search": np.array([10])}, ks=(1, 10))
    assert (m["rec_hr@10"], m["search_hr@10"], m["hr@10"]) == (1.0, 0.0, 0.5)
    assert (m["rec_hr@1"], m["hr@1"]) == (0.5, 0.25)
    assert m["rec_ndcg@10"] == pytest.approx((1 + 1 / math.log2(11)) / 2)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(11)) / 4)
    assert (m["rec_examples"], m["search_examples"]) == (2, 1)
    only_rec = behavior_metrics({"rec": np.array([3]), "search": np.zeros(0)}, ks=(5,))
    assert only_rec["hr@5"] == 1.0 and "search_hr@5" not in only_rec


def test_candidate_scores_equal_the_models_own_loss(tiny):
    data, ids, tok = tiny
    torch.manual_seed(0)
    model = build_backbone(BackboneConfig(preset="tiny", dropout=0.0), tok).eval()
    enc = SampleEncoder(tok, ids, data, TaskConfig(), max_input_len=128)
    ex = data.split("valid", "search").iloc[0]
    cands = data.candidate_lists[int(ex.example_id)][:6]
    sample = Sample(task="search", item=ex.target, query=ex.query, history=tuple(ex.history))
    inputs = torch.tensor([enc.input(sample)])
    targets = [enc.item_target("search", c) for c in cands]
    assert len({len(t) for t in targets}) == 2  # identifiers of two lengths compete
    labels = pad_batch(targets, -100)[None]  # [1, C, T]
    got = candidate_log_likelihoods(model, inputs, torch.ones_like(inputs), labels)[0]
    for score, target in zip(got, targets, strict=True):
        with torch.no_grad():
            loss = model(input_ids=inputs, labels=torch.tensor([target])).loss  # mean over tokens
        assert score.item() == pytest.approx(-loss.item() * len(target), rel=1e-4)
    ranks = rank_examples(model, enc, [sample], [cands], batch_examples=1)
    # ranking scores the identifier without </s> (what constrained beam search scores)
    id_only = candidate_log_likelihoods(model, inputs, torch.ones_like(inputs),
                                        pad_batch([t[:-1] for t in targets], -100)[None])[0]
    assert ranks.tolist() == [int((id_only[1:] > id_only[0]).sum() + (id_only[1:] == id_only[0]).sum())]
    # candidates that score alike rank the target last (pessimistic ties), in any batch grouping
    same = [ex.target] * 6
    assert rank_examples(model, enc, [sample] * 3, [same] * 3, batch_examples=2).tolist() == [5, 5, 5]


# ---- learning -----------------------------------------------------------------------------------------
def test_tiny_model_loss_decreases(tiny):
    data, ids, tok = tiny
    torch.manual_seed(0)
    model = build_backbone(BackboneConfig(preset="tiny", dropout=0.0), tok)
    cfg = TaskConfig()
    mix = TaskMix.build(build_samples(data, cfg, 0), cfg)
    enc = SampleEncoder(tok, ids, data, cfg, max_input_len=128)
    encoded = EncodedSamples((enc.input(s), enc.target(s)) for s in mix.samples)
    batch = collate(encoded, mix.epoch_plan(0, 0)[:32], tok.pad_token_id, torch.device("cpu"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_pooled_batches_by_hand():
    # The one length bucketing both loops use (T5 plan, SASRec windows): sort within pools, cut.
    from gensar.train_utils import pooled_batches

    lengths = np.array([9, 1, 8, 2, 7])  # sample -> length
    got = pooled_batches(np.array([0, 1, 2, 3, 4]), lengths, batch=2, pool=2)
    assert [b.tolist() for b in got] == [[1, 3], [2, 0], [4]]  # pool [0..3] by length, then [4]


def test_length_bucketing_is_a_permutation_with_less_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 60, size=1000)
    plan = rng.permutation(np.repeat(np.arange(1000), 2))[:1990]  # samples may repeat in a plan
    out = length_bucketed(plan, lengths, batch=16, buckets=10, rng=np.random.default_rng(1))
    assert sorted(out.tolist()) == sorted(plan.tolist())

    def padded(p):
        return sum(len(b) * lengths[b].max() for b in np.split(p, np.arange(16, len(p), 16)))

    assert padded(out) < 0.75 * padded(plan)
    assert np.array_equal(length_bucketed(plan, lengths, 16, 1, np.random.default_rng(1)), plan)
    again = length_bucketed(plan, lengths, 16, 10, np.random.default_rng(1))
    assert np.array_equal(out, again)
    # every full batch comes from one sorted bucket: its lengths are sorted
    for b in out[: len(out) // 16 * 16].reshape(-1, 16):
        assert np.all(np.diff(lengths[b]) >= 0)


def test_bucket_key_groups_by_target_class_then_input_length():
    def pair(n_in, n_out):
        return np.zeros(n_in, dtype=np.int64), np.zeros(n_out, dtype=np.int64)

    # ID targets (6 tokens) behind histories, text targets (40) behind short inputs
    encoded = EncodedSamples([pair(90, 6), pair(8, 40), pair(60, 6), pair(6, 41), pair(30, 12)])
    key = bucket_key(encoded)
    assert np.argsort(key, kind="stable").tolist() == [2, 0, 4, 3, 1]
    assert key.tolist() == [90, 3 * 91 + 8, 60, 3 * 91 + 6, 1 * 91 + 30]

    # on a 50/50 mix of the two shapes, batches keep every target position real
    rng = np.random.default_rng(0)
    mix = [pair(int(rng.integers(20, 100)), 6) if k % 2 else pair(int(rng.integers(4, 9)), 40) for k in range(640)]
    plan = rng.permutation(640)

    def padded_targets(p):
        return sum(len(b) * max(len(mix[i][1]) for i in b) for b in p.reshape(-1, 32))

    by_sum = np.array([len(x) + len(y) for x, y in mix])
    by_key = length_bucketed(plan, bucket_key(EncodedSamples(mix)), 32, 20, np.random.default_rng(1))
    real = sum(len(y) for _, y in mix)
    assert padded_targets(by_key) == real
    assert padded_targets(length_bucketed(plan, by_sum, 32, 20, np.random.default_rng(1))) > 1.1 * real


def test_trained_behaviors_count_next_item_and_adhoc_logged():
    assert trained_behaviors(TaskConfig()) == ("rec", "search")
    assert trained_behaviors(TaskConfig(rec=0.0)) == ("search",)
    assert trained_behaviors(TaskConfig(rec=0.0, next_item=1.0)) == ("rec", "search")
    assert trained_behaviors(TaskConfig(rec=0.0, next_item=1.0, search=0.0)) == ("rec",)
    assert trained_behaviors(TaskConfig(rec=1.0, search=0.0)) == ("rec",)
    assert trained_behaviors(TaskConfig(rec=0.0, search=0.0, adhoc_logged=1.0)) == ("search",)


def test_early_stopping_and_output_layout(dirs, tmp_path):
    cfg = load_config(
        ModelRunConfig,
        TINY,
        ["train.lr=1.0e-12", "train.patience=1", "train.epochs=5", "train.progress=false"],
    )
    res = train(dirs / "data", dirs / "ids", tmp_path / "model", cfg)
    # with a learning rate of ~0 the metric never improves after epoch 1: stop after epoch 2
    assert res.stopped_early and res.best_epoch == 1 and len(res.history) == 2
    out = tmp_path / "model"
    assert not (tmp_path / "model.ckpt").exists()
    state = json.loads((out / "train_state.json").read_text())
    assert state["best_epoch"] == 1 and state["epochs_run"] == 2 and state["stopped_early"]
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    assert state["history"][0]["hr@10"] == state["best_metric"]["value"]
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    model = T5ForConditionalGeneration.from_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    assert model.get_input_embeddings().num_embeddings == len(tok)
    assert tok.convert_ids_to_tokens(tok("<t_rec> <rec> <s_a_1>").input_ids) == [
        "<t_rec>",
        "<rec>",
        "<s_a_1>",
        "</s>",
    ]
    ids = tiny_id_maps()
    assert json.loads((out / "item_ids.json").read_text())["i3"] == {
        "semantic": list(ids.semantic["i3"]),
        "collaborative": list(ids.collaborative["i3"]),
    }


def test_steps_per_epoch_caps_each_epoch(dirs, tmp_path):
    cfg = load_config(
        ModelRunConfig,
        TINY,
        ["train.steps_per_epoch=2", "train.batch_size=2", "train.epochs=2", "train.patience=0",
         "train.progress=false"],
    )
    res = train(dirs / "data", dirs / "ids", tmp_path / "model", cfg)
    state = json.loads((tmp_path / "model" / "train_state.json").read_text())
    assert state["epoch_size"] > 4  # the cap, not the data, ends each epoch
    assert [h["samples"] for h in res.history] == [4, 4]
    assert state["steps_per_epoch"] == 2 and state["global_steps"] == 4


def test_steps_per_epoch_must_not_be_negative():
    with pytest.raises(ConfigError, match="train.steps_per_epoch"):
        load_config(ModelRunConfig, TINY, ["train.steps_per_epoch=-1"])


# ---- checkpoints and resume ---------------------------------------------------------------------------
def _train_cmd(dirs: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gensar.cli",
        "train",
        str(dirs / "data"),
        "--ids",
        str(dirs / "ids"),
        "--out",
        str(out),
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "GENSAR_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_sigkill_then_resume_equals_uninterrupted_run(dirs, tmp_path):
    from safetensors.torch import load_file

    opts = [
        "--config",
        str(TINY),
        "--set",
        "train.epochs=4",
        "--set",
        "train.batch_size=8",
        "--set",
        "train.checkpoint_every=5",
        "--set",
        "train.progress=false",
    ]
    a, b = tmp_path / "a", tmp_path / "b"
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    run_a = subprocess.Popen(_train_cmd(dirs, a, *opts), env=_env(), **pipes)
    run_b = subprocess.Popen(_train_cmd(dirs, b, *opts), env=_env(), **pipes)
    ckpt = tmp_path / "b.ckpt" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and run_b.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(run_b.pid, signal.SIGKILL)
    run_b.wait()
    assert run_b.returncode == -signal.SIGKILL, run_b.stderr.read().decode()[-2000:]
    assert not b.exists()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)  # complete despite the kill
    assert 0 < state["progress"]["step_in_epoch"] and state["progress"]["epoch"] < 4  # killed mid-epoch

    # resume takes the config from the interrupted run; a different one is refused
    assert (
        main(
            [
                "train",
                str(dirs / "data"),
                "--ids",
                str(dirs / "ids"),
                "--out",
                str(b),
                "--resume",
                "--config",
                str(TINY),
            ]
        )
        == 2
    )
    resumed = subprocess.run(
        _train_cmd(dirs, b, "--resume"), env=_env(), capture_output=True, text=True, check=False
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert run_a.wait() == 0, run_a.stderr.read().decode()[-2000:]

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ha = json.loads((a / "train_state.json").read_text())["history"]
    hb = json.loads((b / "train_state.json").read_text())["history"]
    assert len(ha) == 4
    assert [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in ha] == [
        {k: v for k, v in h.items() if k not in TIMING_KEYS} for h in hb
    ]
    assert not (tmp_path / "b.ckpt").exists()


def test_resume_before_first_checkpoint_starts_over(dirs, tmp_path):
    """A run killed before its first checkpoint resumes from step 0 with its saved config."""
    from safetensors.torch import load_file

    from gensar.config import to_dict
    from gensar.data.prepared import PreparedData
    from gensar.io import atomic_write_json
    from gensar.ids.item_ids import IdMaps
    from gensar.model.train_start import run_fingerprint

    cfg = load_config(ModelRunConfig, TINY, ["train.epochs=1", "train.progress=false"])
    train(dirs / "data", dirs / "ids", tmp_path / "fresh", cfg)
    work = tmp_path / "killed.ckpt"
    work.mkdir()
    fp = run_fingerprint(PreparedData.load(dirs / "data"), IdMaps.load(dirs / "ids"))
    atomic_write_json(work / "run_config.json", {"config": to_dict(cfg), "fingerprint": fp})
    train(dirs / "data", dirs / "ids", tmp_path / "killed", None, resume=True)
    a = load_file(tmp_path / "fresh" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_atomic_checkpoint_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_torch_save({"step": 1}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_torch_save({"step": 2, "x": torch.zeros(1000), "bad": Boom()}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_cli_errors_are_one_line(dirs, tmp_path, capsys):
    base = ["train", str(dirs / "data"), "--ids", str(dirs / "ids"), "--out", str(tmp_path / "m")]
    assert main(base + ["--set", "train.epochz=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gensar train: error: unknown config key 'train.epochz'") and err.count("\n") == 1
    assert main(base + ["--set", "backbone.preset=huge"]) == 2
    assert "'backbone.preset': 'huge' is not one of" in capsys.readouterr().err
    assert main(base + ["--resume"]) == 2
    assert "no interrupted run to resume" in capsys.readouterr().err
    (tmp_path / "m.ckpt").mkdir()
    assert main(base) == 2
    assert "an interrupted run exists; pass --resume" in capsys.readouterr().err
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x").write_text("x")
    assert main(base) == 2
    assert "output directory exists, is not empty and was not written by gensar" in capsys.readouterr().err
    assert main(["train", str(dirs / "data"), "--ids", str(tmp_path), "--out", str(tmp_path / "n")]) == 2
    assert "--out " + str(tmp_path / "n") + " lies inside the input --ids" in capsys.readouterr().err
    (tmp_path / "ids").mkdir()
    assert main(["train", str(dirs / "data"), "--ids", str(tmp_path / "ids"), "--out", str(tmp_path / "n")]) == 2
    assert "item_ids.json: file not found" in capsys.readouterr().err


def test_param_groups_decay_matrices_only_and_skip_frozen():
    from gensar.train_utils import param_groups

    model = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    model[0].weight.requires_grad_(False)  # frozen: in no group
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [p is model[1].weight for p in decay["params"]] == [True]
    assert [tuple(p.shape) for p in no_decay["params"]] == [(4,), (4,), (4,)]  # linear bias, norm gain, norm bias


def test_adamw_is_fused_and_updates_as_the_reference_adamw():
    """The shared optimizer (T5 and SASRec) takes the fused kernel on CPU, keeps nanoGPT's groups,
    and moves the weights as the per-tensor reference AdamW does (sparse rows of an embedding
    included: a row without gradient still decays)."""
    from gensar.train_utils import adamw, param_groups

    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Linear(8, 3), torch.nn.LayerNorm(3))

    fast, slow = model(), model()
    opt = adamw(fast, 0.3, 1e-2, betas=(0.9, 0.98))
    ref = torch.optim.AdamW(param_groups(slow, 0.3), lr=1e-2, betas=(0.9, 0.98), foreach=False, fused=False)
    assert opt.defaults["fused"] is True and [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0]
    x = torch.tensor([[1, 2, 3], [4, 5, 1]])  # rows 6.. of the table get no gradient
    for _ in range(4):
        for m, o in ((fast, opt), (slow, ref)):
            o.zero_grad(set_to_none=True)
            m(x).pow(2).sum().backward()
            o.step()
    for a, b in zip(fast.parameters(), slow.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(fast[0].weight[10], model()[0].weight[10])  # decayed without a gradient


def test_encoded_samples_round_trip_and_collate():
    """The flat storage gives back every sample's tokens as given, and batches as the pairs would."""
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 5000, int(rng.integers(1, 40))).tolist(), rng.integers(0, 5000, int(rng.integers(1, 9))).tolist())
             for _ in range(300)]
    pairs[7] = ([4], [2**31 - 1])  # the largest int32 token id survives
    enc = EncodedSamples(iter(pairs))  # any iterable: a generator is consumed once
    assert len(enc) == 300 and enc.inputs.dtype == np.int32
    for i, (x, y) in enumerate(pairs):
        got_x, got_y = enc[i]
        assert got_x.tolist() == x and got_y.tolist() == y
    assert enc.input_lengths.tolist() == [len(x) for x, _ in pairs]
    assert enc.target_lengths.tolist() == [len(y) for _, y in pairs]
    batch = collate(enc, np.array([3, 7, 3]), pad=0, device=torch.device("cpu"))
    width = max(len(pairs[i][0]) for i in (3, 7))
    assert batch["input_ids"].shape == (3, width) and batch["input_ids"].dtype == torch.int64
    assert batch["input_ids"][1, :1].tolist() == [4] and batch["attention_mask"][1].sum() == 1
    assert batch["labels"][1].tolist()[:1] == [2**31 - 1] and (batch["labels"][1, 1:] == -100).all()
    assert torch.equal(batch["input_ids"][0], batch["input_ids"][2])
    empty = EncodedSamples([])
    assert len(empty) == 0 and bucket_key(empty).shape == (0,)
