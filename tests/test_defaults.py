"""`gensar pipeline --data DIR`: the default config follows the data's size (gensar.defaults)."""

from __future__ import annotations

import pytest

from gensar.cli import main
from gensar.data.canonical_writer import write_canonical
from gensar.data.synth import SynthConfig, generate_world
from gensar.defaults import DataSize, backbone, codebook_size, data_size, default_config
from gensar.errors import ConfigError
from gensar.pipeline_cli import pipeline_config


@pytest.mark.parametrize(("items", "size"), [(100, 32), (500, 32), (513, 64), (1682, 128), (4000, 256),
                                             (63_000, 256)])
def test_codebook_doubles_from_32_per_16_items_up_to_256(items, size):
    # 500 / 16 = 31.25 -> 32; 513 / 16 = 32.06 -> 64; 1682 / 16 = 105 -> 128; 4000 / 16 = 250 -> 256
    assert codebook_size(items) == size


def test_model_shape_grows_with_interactions():
    small, medium, large = (backbone(DataSize(items=500, interactions=n, users=100)).shape()
                            for n in (15_000, 100_000, 1_700_000))
    assert (small.d_model, small.d_ff, small.num_layers) == (96, 384, 2)
    assert (medium.d_model, medium.d_ff, medium.num_layers) == (128, 256, 2)
    assert large.d_model > medium.d_model and large.num_layers > medium.num_layers


@pytest.mark.parametrize(("items", "loss"), [(1682, "full_ce"), (10_000, "full_ce"), (10_001, "sampled_ce"),
                                             (63_000, "sampled_ce")])
def test_sasrec_samples_its_negatives_only_for_large_catalogs(items, loss):
    cfg = default_config("some/dir", DataSize(items=items, interactions=100_000, users=943))
    assert cfg.ids.sasrec.loss == loss
    assert default_config("some/dir", DataSize(items=items, interactions=100_000, users=943),
                          ["ids.sasrec.loss=bce"]).ids.sasrec.loss == "bce"  # an override still wins


def test_default_config_validates_on_valid_and_keeps_overrides():
    size = DataSize(items=1682, interactions=100_000, users=943)
    cfg = default_config("some/dir", size, ["model.train.epochs=3"])
    assert cfg.data.source == "some/dir" and cfg.ids.rqvae.codebook_size == 128
    assert cfg.eval.splits == ("valid", "test") and cfg.hybrid.enabled
    assert cfg.model.train.epochs == 3 and cfg.model.train.patience == 2 and cfg.model.train.eval_every == 1
    # the task mix and optimizer the valid splits of two datasets backed (module doc)
    tasks, train = cfg.model.tasks, cfg.model.train
    assert (tasks.adhoc, tasks.next_item, tasks.adhoc_logged, train.lr, train.weight_decay) == (2.0, 1.0, 1.0, 2e-3, 0.3)
    with pytest.raises(ConfigError, match="train.epochs': must be >= 1"):
        default_config("some/dir", size, ["model.train.epochs=0"])


def test_pipeline_data_flag_counts_the_source_and_needs_a_config_or_data(tmp_path, capsys):
    raw = generate_world(SynthConfig(n_users=30, n_items=40, n_groups=4, min_events=4, max_events=6), progress=False)
    src = write_canonical(raw, None, tmp_path / "mine", "jsonl")
    size = data_size(src)
    assert size == DataSize(items=len(raw.items), interactions=len(raw.events),
                            users=raw.events["user_id"].nunique())
    cfg = pipeline_config(None, str(src), [])
    assert cfg.data.source == str(src) and cfg.ids.rqvae.codebook_size == 32
    layered = pipeline_config(["src/gensar/configs/tiny.yaml"], str(src), [])
    assert layered.data.source == str(src) and layered.model.backbone.preset == "tiny"
    assert main(["pipeline", "--out", str(tmp_path / "run")]) == 2
    assert "--data DIR" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
