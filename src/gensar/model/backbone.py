"""The encoder-decoder backbone: ``transformers.T5ForConditionalGeneration`` from a config dataclass.

A model directory is plain transformers: ``save_model`` writes ``save_pretrained`` output for
the model and its tokenizer side by side, so ``T5ForConditionalGeneration.from_pretrained(dir)``
and ``AutoTokenizer.from_pretrained(dir)`` load it without gensar.

Presets (``BackboneConfig.preset``; any field set explicitly overrides the preset):

========  =======  ====  =====  ===============  =====  =================================
preset    d_model  d_kv  d_ff   layers enc+dec   heads  use
========  =======  ====  =====  ===============  =====  =================================
tiny      32       16    64     1+1              2      tests
cpu       128      32    512    4+4              4      default: trains on a 2-core CPU
t5-small  512      64    2048   6+6              8      GPU users (the paper's T5-small)
========  =======  ====  =====  ===============  =====  =================================

The ``cpu`` shape is the paper's architecture scaled down for a shared 2-core CPU: 1.8M parameters
besides the tied embedding (another 1.0M for amazon-scientific's ~7.5k tokens); with the default
mix an epoch of amazon-scientific (58.6k samples) takes about 8 minutes on 2 threads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gensar.config import require
from gensar.errors import GensarError


@dataclass(frozen=True)
class BackboneShape:
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_decoder_layers: int
    num_heads: int


PRESETS: dict[str, BackboneShape] = {
    "tiny": BackboneShape(d_model=32, d_kv=16, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2),
    "cpu": BackboneShape(d_model=128, d_kv=32, d_ff=512, num_layers=4, num_decoder_layers=4, num_heads=4),
    "t5-small": BackboneShape(
        d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8
    ),
}


@dataclass(frozen=True)
class BackboneConfig:
    preset: Literal["tiny", "cpu", "t5-small"] = "cpu"
    # None = the preset's value.
    d_model: int | None = None
    d_kv: int | None = None
    d_ff: int | None = None
    num_layers: int | None = None
    num_decoder_layers: int | None = None
    num_heads: int | None = None
    dropout: float = 0.1
    feed_forward_proj: Literal["relu", "gated-gelu"] = "relu"
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    # A local directory with a pretrained T5 (model + fast tokenizer); its shape wins over the
    # preset, its tokenizer replaces the trained WordPiece, and the embeddings grow for new tokens.
    pretrained: str | None = None

    def validate(self) -> None:
        shape = self.shape()
        for name in ("d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads"):
            require(getattr(shape, name) >= 1, f"backbone.{name}", "must be >= 1")
        require(0.0 <= self.dropout < 1.0, "backbone.dropout", "must be in [0, 1)")
        require(
            self.relative_attention_num_buckets >= 1,
            "backbone.relative_attention_num_buckets",
            "must be >= 1",
        )
        require(
            self.relative_attention_max_distance >= 1,
            "backbone.relative_attention_max_distance",
            "must be >= 1",
        )
        if self.pretrained is not None:
            require(
                Path(self.pretrained).is_dir(), "backbone.pretrained", f"{self.pretrained} is not a directory"
            )

    def shape(self) -> BackboneShape:
        """The preset with every explicitly set field applied."""
        base = PRESETS[self.preset]
        changes = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(BackboneShape)
            if getattr(self, f.name) is not None
        }
        return dataclasses.replace(base, **changes)

    def t5_config(self, vocab_size: int, pad_token_id: int, eos_token_id: int):
        from transformers import T5Config

        s = self.shape()
        return T5Config(
            vocab_size=vocab_size,
            d_model=s.d_model,
            d_kv=s.d_kv,
            d_ff=s.d_ff,
            num_layers=s.num_layers,
            num_decoder_layers=s.num_decoder_layers,
            num_heads=s.num_heads,
            dropout_rate=self.dropout,
            feed_forward_proj=self.feed_forward_proj,
            relative_attention_num_buckets=self.relative_attention_num_buckets,
            relative_attention_max_distance=self.relative_attention_max_distance,
            pad_token_id=pad_token_id,
            eos_token_id=eos_token_id,
            decoder_start_token_id=pad_token_id,
            tie_word_embeddings=True,
        )


def build_backbone(cfg: BackboneConfig, tokenizer):
    """A freshly initialised T5 sized for ``tokenizer`` (seed torch first for a reproducible init)."""
    from transformers import T5ForConditionalGeneration

    if cfg.pretrained is not None:
        raise ValueError(
            "build_backbone makes a fresh model; use load_pretrained_backbone for backbone.pretrained"
        )
    config = cfg.t5_config(len(tokenizer), int(tokenizer.pad_token_id), int(tokenizer.eos_token_id))
    return T5ForConditionalGeneration(config)


def load_pretrained_backbone(cfg: BackboneConfig, added_tokens: list[str]):
    """(model, tokenizer) from ``cfg.pretrained``, the tokenizer extended and embeddings resized."""
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    from gensar.model.tokenizer import extend_tokenizer

    path = Path(cfg.pretrained or "")
    if not (path / "config.json").is_file():
        raise GensarError(f"{path}: no config.json (backbone.pretrained must be a local model directory)")
    try:
        model = T5ForConditionalGeneration.from_pretrained(str(path), dropout_rate=cfg.dropout)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as err:
        raise GensarError(
            f"{path}: cannot load a T5 model and tokenizer: {str(err).splitlines()[0]}"
        ) from None
    tokenizer = extend_tokenizer(tokenizer, added_tokens)
    # T5 checkpoints pad their embedding past len(tokenizer); only grow, never cut trained rows.
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.decoder_start_token_id = int(tokenizer.pad_token_id)
    return model, tokenizer


def save_model(model, tokenizer, out: str | Path) -> None:
    """``save_pretrained`` of model and tokenizer into ``out`` (an existing, normally temporary, dir)."""
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def load_model(path: str | Path):
    """(model, tokenizer) from a directory written by ``save_model`` / ``gensar train``."""
    from transformers import T5ForConditionalGeneration

    from gensar.model.tokenizer import load_tokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise GensarError(f"{path}: not a model directory (no config.json; run `gensar train`)")
    tokenizer = load_tokenizer(path)
    model = T5ForConditionalGeneration.from_pretrained(str(path))
    return model, tokenizer


def count_parameters(model) -> dict[str, int]:
    """Parameters in total and in the (tied) token embedding."""
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "embedding": model.get_input_embeddings().weight.numel()}
