"""Training options of issue 18 §2: bfloat16 autocast and torch.compile (both off by default)."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from conftest import REPO
from test_train import dirs  # noqa: F401  (the tiny prepared data + IDs fixture)

from gensar.cli import main
from gensar.config import load_config
from gensar.errors import ConfigError
from gensar.model import train as train_module
from gensar.model.train import train
from gensar.model.train_config import ModelRunConfig, TrainConfig

TINY = REPO / "configs" / "model-tiny.yaml"
ONE_EPOCH = ["train.epochs=1", "train.progress=false", "train.eval_examples=4"]


def test_both_options_default_off():
    assert TrainConfig().bf16 is False and TrainConfig().compile is False


def test_bf16_autocast_trains_on_cpu_with_a_finite_loss(dirs, tmp_path, monkeypatch):
    # Watch the dtype the model's linear layers compute in: bfloat16 under autocast, during training.
    seen: set[torch.dtype] = set()
    real_build = train_module.build_backbone

    def build_and_watch(cfg, tokenizer):
        model = real_build(cfg, tokenizer)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.register_forward_hook(lambda m, i, out: seen.add(out.dtype) if m.training else None)
        return model

    monkeypatch.setattr(train_module, "build_backbone", build_and_watch)
    cfg = load_config(ModelRunConfig, TINY, [*ONE_EPOCH, "train.bf16=true"])
    res = train(dirs / "data", dirs / "ids", tmp_path / "model", cfg)
    assert math.isfinite(res.history[0]["train_loss"]) and res.history[0]["train_loss"] > 0
    assert torch.bfloat16 in seen
    state = json.loads((tmp_path / "model" / "train_state.json").read_text())
    assert state["bf16"] is True and state["compile"] is False
    # the saved weights stay float32 (autocast changes the computation, not the parameters)
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "model" / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float32}


def test_compile_without_a_cpp_compiler_is_a_one_line_error(dirs, tmp_path, monkeypatch, capsys):
    from gensar.model import train_config

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(train_config.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="train.compile: torch.compile on a CPU needs a C\\+\\+ compiler"):
        TrainConfig(compile=True).check_device(torch.device("cpu"))
    TrainConfig(compile=False).check_device(torch.device("cpu"))  # off: nothing to check
    code = main(["train", str(dirs / "data"), "--ids", str(dirs / "ids"), "--out", str(tmp_path / "m"),
                 "--config", str(TINY), "--set", "train.compile=true"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "error: train.compile:" in err
    assert not (tmp_path / "m").exists()


def test_a_non_boolean_option_names_the_field(dirs, tmp_path, capsys):
    code = main(["train", str(dirs / "data"), "--ids", str(dirs / "ids"), "--out", str(tmp_path / "m"),
                 "--set", "train.bf16=maybe"])
    err = capsys.readouterr().err
    assert code == 2 and "train.bf16" in err and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("GENSAR_TEST_COMPILE") != "1",
                    reason="torch.compile of even the tiny model takes ~3 min of inductor C++ builds on a "
                           "2-core CPU; set GENSAR_TEST_COMPILE=1 to run it")
def test_compiled_training_gives_a_finite_loss(dirs, tmp_path):
    cfg = load_config(ModelRunConfig, TINY, [*ONE_EPOCH, "train.compile=true"])
    res = train(dirs / "data", dirs / "ids", tmp_path / "model", cfg)
    assert math.isfinite(res.history[0]["train_loss"])
    assert json.loads((tmp_path / "model" / "train_state.json").read_text())["compile"] is True
