"""End to end: the tiny pipeline config, stage caching, evaluate and report on its run directory."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from gensar.cli import main
from gensar.config import load_config, to_dict
from gensar.data.prepared import PreparedData
from gensar.decode.beam import constrained_beam_search
from gensar.errors import ConfigError, GensarError
from gensar.eval.candidates import candidate_matrix, eval_examples
from gensar.eval.protocol import beam_retrieve
from gensar.ids.trie import IdTrie
from gensar.model.scoring import pad_batch
from gensar.model.samples import example_samples
from gensar.model.task_config import TASKS
from gensar.model.trained import ID_KIND, TrainedModel
from gensar.pipeline import PipelineConfig, _fingerprint, builtin_config, run_pipeline

METRIC_KEYS = {"hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("pipeline") / "run"
    cfg = load_config(PipelineConfig, builtin_config("tiny"))
    run_pipeline(cfg, run)
    return run


def test_pipeline_writes_every_stage(tiny_run):
    for part in ("data/manifest.json", "ids/item_ids.json", "model/config.json", "model/tokenizer.json",
                 "metrics.json", "pipeline.yaml", "stages.json"):
        assert (tiny_run / part).is_file(), part
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    for split in ("valid", "test"):
        for behavior in ("rec", "search"):
            m = metrics[split][behavior]
            assert METRIC_KEYS <= set(m)
            assert 0.0 <= m["hr@1"] <= m["hr@5"] <= m["hr@10"] <= 1.0
            assert m["n"] == len(PreparedData.load(tiny_run / "data").split(split, behavior))


def test_rerun_skips_finished_stages_and_reruns_changed_ones(tiny_run, capsys):
    cfg = load_config(PipelineConfig, builtin_config("tiny"))
    model_mtime = (tiny_run / "model" / "config.json").stat().st_mtime_ns
    run_pipeline(cfg, tiny_run)
    out = capsys.readouterr().out
    assert out.count("up to date, skipped") == 5
    changed = load_config(PipelineConfig, builtin_config("tiny"), ["eval.beam_size=12"])
    run_pipeline(changed, tiny_run)
    out = capsys.readouterr().out
    assert out.count("up to date, skipped") == 4 and "evaluate: running" in out
    assert (tiny_run / "model" / "config.json").stat().st_mtime_ns == model_mtime


def test_reuse_copies_matching_stages_from_another_run(tiny_run, tmp_path, capsys):
    run = tmp_path / "sweep"
    cfg = load_config(PipelineConfig, builtin_config("tiny"), ["model.train.seed=7"])
    run_pipeline(cfg, run, reuse=tiny_run)
    out = capsys.readouterr().out
    assert "data: copied from" in out and "ids: copied from" in out and "model: running" in out
    assert (run / "ids" / "item_ids.json").read_bytes() == (tiny_run / "ids" / "item_ids.json").read_bytes()
    run_pipeline(cfg, run, reuse=tiny_run)
    assert capsys.readouterr().out.count("up to date, skipped") == 5
    with pytest.raises(GensarError, match="no stages.json"):
        run_pipeline(cfg, tmp_path / "other", reuse=tmp_path)


def test_interrupted_training_with_another_config_starts_over(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    cfg = load_config(PipelineConfig, builtin_config("tiny"))
    run_pipeline(cfg, run, reuse=tiny_run)  # copies every stage
    # Leave behind an interrupted training of another config, then change the model config.
    ckpt = run / "model.ckpt"
    ckpt.mkdir()
    old = json.loads(json.dumps(to_dict(cfg.model)))
    old["train"]["epochs"] = 99
    (ckpt / "run_config.json").write_text(json.dumps({"config": old, "fingerprint": {}}))
    capsys.readouterr()
    changed = load_config(PipelineConfig, builtin_config("tiny"), ["model.train.seed=3"])
    run_pipeline(changed, run)
    out = capsys.readouterr().out
    assert "starting over" in out and "model: done" in out
    assert not ckpt.exists()
    stages = json.loads((run / "stages.json").read_text())
    assert (run / "model.started").read_text() == stages["model"]  # what a later resume must match
    state = json.loads((run / "model" / "train_state.json").read_text())
    assert state["epochs_run"] == cfg.model.train.epochs


def test_interrupted_training_resumes_only_with_the_same_fingerprint(tiny_run, tmp_path, monkeypatch):
    import gensar.model.train as train_mod

    calls = []

    def fake_train(*args, resume, **kwargs):
        calls.append(resume)
        raise KeyboardInterrupt  # stop the pipeline here, as a kill would

    run = tmp_path / "run"
    cfg = load_config(PipelineConfig, builtin_config("tiny"), ["model.train.seed=5"])
    monkeypatch.setattr(train_mod, "train", fake_train)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg, run, reuse=tiny_run)  # data and IDs copied, training "killed"
    (run / "model.ckpt").mkdir()
    (run / "model.ckpt" / "run_config.json").write_text("{}")
    for config, expected in ((cfg, True), (load_config(PipelineConfig, builtin_config("tiny"),
                                                       ["model.train.seed=6"]), False)):
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(config, run)
        assert calls[-1] is expected
    assert calls == [False, True, False]


GENERATIVE = ("--ranker", "generative")  # the model alone (the run also fitted a hybrid)


def test_evaluate_cli_json_and_full_ranking(tiny_run, capsys):
    assert main(["evaluate", str(tiny_run), *GENERATIVE, "--split", "valid", "--json", "--beam", "10"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert set(got) == {"rec", "search"} and METRIC_KEYS <= set(got["rec"])
    assert main(["evaluate", str(tiny_run), *GENERATIVE, "--split", "test", "--json", "--full-ranking",
                 "--beam", "20"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert {"recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20"} <= set(full["rec"])


def test_beam_and_likelihood_agree_on_hits_at_10(tiny_run, capsys):
    # With beam >= candidates, beam search ranks all 20 candidates exactly as their likelihoods do.
    assert main(["evaluate", str(tiny_run), *GENERATIVE, "--json", "--beam", "20"]) == 0
    beam = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(tiny_run), *GENERATIVE, "--json", "--method", "likelihood"]) == 0
    lik = json.loads(capsys.readouterr().out)
    for behavior in ("rec", "search"):
        assert beam[behavior]["hr@10"] == pytest.approx(lik[behavior]["hr@10"], abs=0.02)


def test_every_decoded_identifier_is_a_real_item(tiny_run):
    data = PreparedData.load(tiny_run / "data")
    trained = TrainedModel.load(tiny_run / "model")
    encoder = trained.encoder(data)
    items = data.items["item_id"].tolist()
    for behavior in ("rec", "search"):
        samples = example_samples(data.split("test", behavior).head(8))
        codes = trained.id_codes(ID_KIND[behavior], items)
        inputs = pad_batch([encoder.input(s) for s in samples], trained.pad_id)
        ranked = constrained_beam_search(trained.model, inputs, inputs != trained.pad_id, IdTrie.build(codes),
                                         trained.prefix(behavior), beam_size=15)
        table = trained.ids.of(ID_KIND[behavior])
        for row_items, row_tokens in zip(ranked.items.tolist(), ranked.tokens.tolist(), strict=True):
            assert all(i >= 0 for i in row_items) and len(set(row_items)) == len(row_items)
            for item, toks in zip(row_items, row_tokens, strict=True):
                ids = trained.tokenizer.convert_ids_to_tokens([t for t in toks if t >= 0])
                assert tuple(ids) == table[items[item]]


def test_beam_retrieve_stays_inside_each_examples_candidate_list(tiny_run):
    data = PreparedData.load(tiny_run / "data")
    trained = TrainedModel.load(tiny_run / "model")
    examples = eval_examples(data, "test", "search", 6)
    cands = candidate_matrix(data, examples)  # [6, C]
    with torch.inference_mode():
        top = beam_retrieve(trained, trained.encoder(data), example_samples(examples), "search",
                            data.items["item_id"].tolist(), cands, beam_size=8, batch_size=4)
    assert top.shape == (6, 8)
    for row, cand_row in zip(top, cands, strict=True):
        got = [int(i) for i in row if i >= 0]
        assert got and len(set(got)) == len(got) and set(got) <= set(cand_row.tolist())


def test_report_writes_table_and_plot(tiny_run, tmp_path, capsys):
    assert main(["report", str(tiny_run), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| run |" in text and "tradeoff.png" in text
    assert (tmp_path / "rep" / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "rep2")]) == 2
    assert not (tmp_path / "rep2").exists()


def test_pipeline_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="model.train.epochz"):
        load_config(PipelineConfig, builtin_config("tiny"), ["model.train.epochz=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("eval: {beam_size: 3}\n")
    assert main(["pipeline", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2


def test_builtin_configs_load():
    for name in ("tiny", "synthetic", "scientific", "paper-electronics"):
        cfg = load_config(PipelineConfig, builtin_config(name))
        assert isinstance(cfg, PipelineConfig)


VARIANTS = ("rec-only", "search-only", "no-aux", "semantic-ids", "collaborative-ids", "tiger", "paper-tasks")


def _variant(name: str) -> Path:
    return builtin_config("scientific").parent / "variants" / f"{name}.yaml"


def test_config_layers_override_key_by_key(tmp_path):
    base, layer = tmp_path / "base.yaml", tmp_path / "layer.yaml"
    base.write_text("model: {train: {epochs: 3, lr: 0.01}, tasks: {rec: 2.0}}\neval: {beam_size: 20}\n")
    layer.write_text("model: {train: {epochs: 5}}\neval: {splits: [test]}\n")
    cfg = load_config(PipelineConfig, [base, layer], ["model.train.lr=0.5"])
    assert (cfg.model.train.epochs, cfg.model.train.lr, cfg.model.tasks.rec) == (5, 0.5, 2.0)
    assert cfg.eval.beam_size == 20 and cfg.eval.splits == ("test",)
    layer.write_text("model: {train: {epochz: 5}}\n")
    with pytest.raises(ConfigError, match="model.train.epochz"):
        load_config(PipelineConfig, [base, layer])
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(PipelineConfig, [base, tmp_path / "missing.yaml"])


def test_variant_configs_change_only_what_they_name():
    base = load_config(PipelineConfig, builtin_config("scientific"))
    on = {}
    for name in VARIANTS:
        cfg = load_config(PipelineConfig, [builtin_config("scientific"), _variant(name)])
        assert cfg.data == base.data and cfg.eval == base.eval and cfg.model.train == base.model.train
        on[name] = {t for t in TASKS if cfg.model.tasks.weight(t) > 0}, cfg.ids.rqvae.variant
    every = {t for t in TASKS if base.model.tasks.weight(t) > 0}
    assert base.ids.rqvae.variant == "joint" and every == set(TASKS)
    retrieval = {"rec", "next_item", "search", "adhoc_logged"}
    # Single-task versions keep the alignment tasks of their own identifier type.
    assert on["rec-only"] == ({"rec", "next_item", "text2col", "col2text"}, "joint")
    assert on["search-only"] == ({"search", "adhoc_logged", "adhoc", "text2sem", "sem2text"}, "joint")
    assert on["no-aux"] == (retrieval, "joint")
    assert on["semantic-ids"] == (every, "semantic")
    assert on["collaborative-ids"] == (every, "collaborative")
    assert on["tiger"] == (retrieval, "semantic")
    assert on["paper-tasks"] == (every - {"next_item", "adhoc_logged"}, "joint")


def test_pipeline_cli_layers_a_variant_over_a_config(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pipeline", "--config", str(builtin_config("tiny")), "--config", str(_variant("rec-only")),
                 "--out", str(run)]) == 0
    state = json.loads((run / "model" / "train_state.json").read_text())
    assert {t for t, n in state["task_counts"].items() if n} == {"rec", "text2col", "col2text"}
    # Validation (early stopping, kept weights) looks at the trained behavior only.
    last = state["history"][-1]
    assert "rec_hr@10" in last and "search_hr@10" not in last and last["hr@10"] == last["rec_hr@10"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["rec"]["n"] > 0


def _amazon_slice(root: Path, n_users: int = 12, n_items: int = 12) -> Path:
    """A tiny Amazon-2014-format Electronics slice: every user (8 reviews) and item (5 to 11) has >= 5 reviews."""
    import gzip

    rng = np.random.default_rng(0)
    src = root / "electronics"
    src.mkdir()
    cats = [["Electronics", "Computers", "Mice"], ["Electronics", "Audio", "Headphones"],
            ["Electronics", "Camera", "Lenses"]]
    with gzip.open(src / "meta_Electronics.json.gz", "wt") as fh:
        for i in range(n_items):
            fh.write(json.dumps({"asin": f"B{i:04d}", "title": f"Thing {i} {cats[i % 3][-1]}",
                                 "categories": [cats[i % 3]], "brand": f"Brand{i % 4}"}) + "\n")
    with gzip.open(src / "reviews_Electronics_5.json.gz", "wt") as fh:
        for u in range(n_users):
            for t, i in enumerate(rng.permutation(n_items)[:8]):
                fh.write(json.dumps({"reviewerID": f"U{u}", "asin": f"B{i:04d}", "unixReviewTime": 1000 + t}) + "\n")
    return src


def test_paper_electronics_config_runs_on_a_tiny_slice(tmp_path):
    """The paper's config (t5-small shape, duplicate protocol, 5-core, history 5) on 12 users: a t5-small
    step costs seconds on a CPU, so the slice is as small as 5-core allows (it was 24 users: 66 s)."""
    src = _amazon_slice(tmp_path)
    overrides = [f"data.source={src}", "ids.rqvae.codebook_size=4", "ids.rqvae.epochs=3",
                 "ids.sasrec.epochs=1", "ids.progress=false", "model.train.epochs=1",
                 "model.train.batch_size=64", "model.train.eval_examples=4", "model.train.progress=false",
                 "model.tokenizer.vocab_size=200", "eval.max_examples=4", "eval.batch_size=4",
                 "data.prepare.num_negatives=3"]  # a user leaves 4 of the 12 items unreviewed
    cfg = load_config(PipelineConfig, builtin_config("paper-electronics"), overrides)
    assert cfg.model.backbone.preset == "t5-small" and cfg.data.prepare.max_history == 5
    metrics = run_pipeline(cfg, tmp_path / "run")
    assert metrics["test"]["rec"]["n"] == 4 and metrics["test"]["search"]["n"] == 4
    manifest = json.loads((tmp_path / "run" / "data" / "manifest.json").read_text())
    assert manifest["options"]["search_protocol"] == "duplicate"


def test_data_fingerprint_follows_source_contents_not_mtimes(tmp_path):
    source = tmp_path / "Shop"
    source.mkdir()
    (source / "Shop.train.inter").write_text("user_id:token\titem_id_list:token_seq\titem_id:token\nu1\ti1\ti2\n")
    (source / "Shop.text").write_text("item_id:token\ttext:token_seq\ni1\tred pen\n")
    cfg = load_config(PipelineConfig, builtin_config("tiny"), [f"data.source={source}", "data.format=recbole"])
    before = _fingerprint("data", cfg, "")
    os.utime(source / "Shop.text", (1_000_000, 1_000_000))  # a re-provisioned copy: same bytes, new mtimes
    assert _fingerprint("data", cfg, "") == before
    (source / "Shop.text").write_text("item_id:token\ttext:token_seq\ni1\tblue pen\n")
    assert _fingerprint("data", cfg, "") != before


def test_readme_python_example_runs_on_a_run(tiny_run, tmp_path, monkeypatch, capsys):
    # The README's "Using gensar from Python" block, as written, against the tiny run as runs/demo.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Using gensar from Python", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "demo").symlink_to(tiny_run)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("recommend ") for line in lines) == 5
    assert lines[-1].startswith("search [")
    titles = ast.literal_eval(lines[-1].removeprefix("search "))
    assert len(titles) == 5 and set(titles) <= set(PreparedData.load(tiny_run / "data").items["title"])
