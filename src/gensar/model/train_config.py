"""The configs of ``gensar train``: ``TrainConfig`` (the loop) and ``ModelRunConfig`` (everything)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from gensar.config import require
from gensar.errors import ConfigError
from gensar.metrics import MetricKey
from gensar.model.backbone import BackboneConfig
from gensar.model.task_config import TaskConfig
from gensar.model.tokenizer import TokenizerConfig

if TYPE_CHECKING:
    import torch

__all__ = ["ModelRunConfig", "TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    epochs: int = 20
    batch_size: int = 64  # per process; a DDP step sees world_size * batch_size samples
    lr: float = 1e-3
    weight_decay: float = 0.01  # AdamW, on matrices only (not on layer norms)
    warmup_ratio: float = 0.05  # fraction of all steps with linear warm-up, then cosine decay to 0
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    max_input_len: int = 256  # tokens; the oldest history events are dropped to fit
    # Optimizer steps per epoch, 0 = the whole epoch. A cap makes a fixed-cost run at any data
    # size (benchmarks, a smoke run of a large config); each epoch still draws a fresh shuffle.
    steps_per_epoch: int = 0
    eval_every: int = 1  # epochs between validations (the last epoch is always validated)
    eval_examples: int = 500  # validation examples per behavior (seeded subsample); 0 = all
    eval_batch_examples: int = 4  # examples whose candidates are scored in one decoder batch
    early_stop_metric: MetricKey = "hr@10"
    patience: int = 3  # validations without improvement before stopping; 0 = never stop early
    # Length bucketing: the shuffled epoch is cut into runs of this many global batches, each
    # sorted by ``bucket_key`` (target length class, then input length) before being cut into
    # batches, then batches are shuffled. 1 = off. See ``bucket_key`` for what it saves.
    length_buckets: int = 50
    checkpoint_every: int = (
        500  # optimizer steps between checkpoints (and at every epoch end); 0 = epoch ends only
    )
    threads: int = 0  # torch threads per process; 0 = --threads, $GENSAR_THREADS or all cores
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Mixed precision: the training forward pass under bfloat16 autocast (weights, optimizer
    # state and checkpoints stay float32). Worth it on GPUs with bf16 units; it runs on a CPU too.
    bf16: bool = False
    # torch.compile the training step's model (forward and backward); validation stays eager, its
    # shapes change with every batch. Pays off over long runs: compiling costs tens of seconds.
    compile: bool = False
    progress: bool = True  # tqdm bar on rank 0

    def validate(self) -> None:
        require(self.epochs >= 1, "train.epochs", "must be >= 1")
        require(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        require(self.lr > 0, "train.lr", "must be > 0")
        require(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        require(0 <= self.warmup_ratio < 1, "train.warmup_ratio", "must be in [0, 1)")
        require(self.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 = off)")
        require(self.max_input_len >= 8, "train.max_input_len", "must be >= 8")
        require(self.steps_per_epoch >= 0, "train.steps_per_epoch", "must be >= 0 (0 = the whole epoch)")
        require(self.eval_every >= 1, "train.eval_every", "must be >= 1")
        require(self.eval_examples >= 0, "train.eval_examples", "must be >= 0 (0 = all)")
        require(self.eval_batch_examples >= 1, "train.eval_batch_examples", "must be >= 1")
        require(self.length_buckets >= 1, "train.length_buckets", "must be >= 1 (1 = off)")
        require(self.patience >= 0, "train.patience", "must be >= 0 (0 = off)")
        require(self.checkpoint_every >= 0, "train.checkpoint_every", "must be >= 0 (0 = epoch ends only)")
        require(self.threads >= 0, "train.threads", "must be >= 0")

    def check_device(self, device: torch.device) -> None:
        """Refuse ``bf16`` / ``compile`` where they cannot work, before any training (else the
        first step fails deep inside torch)."""
        import torch

        if self.bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("train.bf16: this GPU has no bfloat16 support (set train.bf16=false)")
        if self.compile and device.type == "cpu" and not _cpp_compiler():
            raise ConfigError("train.compile: torch.compile on a CPU needs a C++ compiler (none found: set $CXX "
                              "or install g++), or set train.compile=false")


def _cpp_compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


@dataclass(frozen=True)
class ModelRunConfig:
    """Everything ``gensar train`` reads from ``--config`` / ``--set`` (YAML sections of these names)."""

    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    tasks: TaskConfig = field(default_factory=TaskConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        self.tokenizer.validate()
        self.backbone.validate()
        self.tasks.validate()
        self.train.validate()
