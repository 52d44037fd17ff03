"""The default config of ``gensar pipeline --data DIR``: settings that follow from the data's size.

A user who brings their own logs gets a config without writing one. Every value not named here is
the config classes' own default; the rules below set what must scale with the data, each from a
count of the loaded source (before semi-synthetic search and splits):

=====================  ==========================================================================
setting                rule (I = items, N = interactions)
=====================  ==========================================================================
RQ-VAE codebook        smallest power of two >= I / 16, clamped to 32..256: the demo world (500
                       items: 32) and amazon-scientific (4K items: 256, the paper's) are its ends;
                       2 shared + 2 specific levels always hold every item uniquely
RQ-VAE epochs          100 below 1K items, else 200 (the two configs' values)
model shape            N < 30K: d_model 96, d_ff 384, 2+2 layers (the demo's); else the ``cpu``
                       preset at 2+2 layers, d_ff 256 (amazon-scientific's); N >= 1M: ``t5-small``
epochs (a cap)         12; early stopping on valid HR@10 (checked every epoch, patience 2) picks
                       the epoch, and the best valid checkpoint is what training keeps
pseudo-queries         2 below 1K items (the demo's value), else 1 (amazon-scientific's)
history window         10 events (both configs)
SASRec loss            ``sampled_ce`` (100 sampled negatives) above 10K items, else ``full_ce``: a
                       rule of cost. ``full_ce`` takes a softmax over the catalog at every
                       position, O(N x I) an epoch (827 s at 1.7M events / 63K items against 126 s
                       sampled); at 0.5K-4K items it was the faster of the two in total (fewer
                       epochs to converge), at 20K items sampled was 2.7x faster an epoch; 10K is
                       between the two, not a measured crossover. On the valid splits of the demo
                       world, amazon-scientific and ml-100k sampled_ce is not worse: NDCG@10 0.385 /
                       0.345 / 0.492 vs 0.374 / 0.343 / 0.488, whole-catalog Recall@10 0.180 /
                       0.116 / 0.135 vs 0.169 / 0.111 / 0.127 (benchmarks/README, "SASRec's loss at
                       scale")
task mix, optimizer    the same for every size (not a rule of size): ad-hoc search on each item's
                       catalog query twice per epoch (``adhoc`` 2.0), next item from a rec history
                       (``next_item``), ad-hoc search on each logged query (``adhoc_logged``); lr
                       0.002, weight decay 0.3
=====================  ==========================================================================

Where the rules come from: the sizes are those of the two configs measured here (the demo world
and amazon-scientific), interpolated by size; they have not been swept over several datasets yet.
The task mix and optimizer were first picked on amazon-scientific by test figures, so they were
left out until valid figures backed them (benchmarks/README, "The task mix on valid"): with them,
amazon-scientific's valid hybrid HR@10 rose from 0.514 to 0.570 (rec) and 0.742 to 0.805 (search),
and the demo world's, at its 6 epochs, from 0.668 to 0.680 and 0.866 to 0.896 (the generative
model alone 0.525 to 0.604 and 0.574 to 0.707). An epoch holds about 1.7x the samples. On ml-100k,
a third dataset, the early epochs trail the old defaults' but the 12 end at or above them on valid
(hybrid HR@10 0.771 / 0.926 against 0.769 / 0.909, the generative model alone 0.757 / 0.906 against
0.741 / 0.897: benchmarks/README, "ml-100k with today's defaults"), inside the noise for the hybrid.

Evaluation covers both splits: valid is what choices are read from, test is reported. The
hybrid ranker (fitted on valid) is on, so the served ranker is never below its best part on valid.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from gensar.config import apply_override, from_dict, to_dict
from gensar.data.loaders import load_dataset
from gensar.eval.config import EvalConfig
from gensar.model.backbone import BackboneConfig
from gensar.model.train_config import TrainConfig
from gensar.pipeline import DataStageConfig, PipelineConfig

__all__ = ["DataSize", "data_size", "default_config"]


@dataclass(frozen=True)
class DataSize:
    items: int
    interactions: int
    users: int


def data_size(source: str | Path) -> DataSize:
    """Counts of a dataset source (any format ``gensar prepare`` reads)."""
    raw = load_dataset(source)
    ev = raw.events
    return DataSize(items=len(raw.items), interactions=len(ev), users=int(ev["user_id"].nunique()))


SAMPLED_LOSS_ITEMS = 10_000  # SASRec trains with sampled negatives above this catalog size


def codebook_size(items: int) -> int:
    size = 32
    while size < 256 and size * 16 < items:
        size *= 2
    return size


def backbone(size: DataSize) -> BackboneConfig:
    if size.interactions >= 1_000_000:
        return BackboneConfig(preset="t5-small")
    if size.interactions >= 30_000:
        return BackboneConfig(preset="cpu", num_layers=2, num_decoder_layers=2, d_ff=256, dropout=0.0)
    return BackboneConfig(preset="cpu", d_model=96, d_kv=24, d_ff=384, num_layers=2, num_decoder_layers=2)


def default_config(source: str, size: DataSize, overrides: list[str] | None = None) -> PipelineConfig:
    """The pipeline config for ``source`` of ``size`` (see the module doc for the rules), with
    ``--set``-style ``overrides`` applied over it."""
    base = PipelineConfig()
    data = DataStageConfig(source=source, prepare=dataclasses.replace(base.data.prepare, max_history=10))
    rqvae = dataclasses.replace(base.ids.rqvae, codebook_size=codebook_size(size.items),
                                epochs=100 if size.items < 1000 else 200)
    sasrec = dataclasses.replace(base.ids.sasrec, loss="sampled_ce" if size.items > SAMPLED_LOSS_ITEMS else "full_ce")
    ids = dataclasses.replace(base.ids, rqvae=rqvae, sasrec=sasrec, progress=False)
    train: TrainConfig = dataclasses.replace(base.model.train, epochs=12, eval_every=1, patience=2,
                                             max_input_len=160, lr=2e-3, weight_decay=0.3)
    tasks = dataclasses.replace(base.model.tasks, pseudo_queries=2 if size.items < 1000 else 1,
                                adhoc=2.0, next_item=1.0, adhoc_logged=1.0)
    model = dataclasses.replace(base.model, backbone=backbone(size), tasks=tasks, train=train)
    evaluation: EvalConfig = dataclasses.replace(base.eval, splits=("valid", "test"))
    raw = to_dict(PipelineConfig(data=data, ids=ids, model=model, hybrid=base.hybrid, eval=evaluation))
    for item in overrides or []:
        apply_override(raw, item)
    return from_dict(PipelineConfig, raw)
