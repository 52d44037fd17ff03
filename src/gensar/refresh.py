"""Daily refresh: ``gensar pipeline --refresh-from RUN0`` trains a run on newer data from a previous one.

The newer data (more events, more items) is prepared as usual. Then, instead of the ID stage and a
training from scratch: every item RUN0 served (trained, cold or added through its items log) keeps
its identifiers byte for byte, new items get identifiers from RUN0's RQ-VAE
(``gensar.ids.refresh``), and the model starts from RUN0's weights (``gensar.model.warm_start``;
new tokens, such as new query words, start fresh) and trains for ``refresh.epochs`` epochs (by
default a third of ``model.train.epochs``), validated and early-stopped as any training. Each of
those epochs draws every sample RUN0 did not train on, ``refresh.replay`` of the examples it did and
``refresh.replay_items`` of its items' item-level samples (``replay_of``): the new events are what
the model lacks, the old ones keep it from forgetting. The hybrid and evaluation stages run as in
any run, on the newer data.

RUN0 must be a finished pipeline run whose ID and backbone settings the new config shares (the
identifiers come from its RQ-VAE, the weights from its backbone); by default the new run takes
RUN0's whole ``pipeline.yaml`` with only the data source replaced.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

from gensar.config import require, to_dict
from gensar.errors import ConfigError, GensarError
from gensar.ids.item_ids import IdMaps
from gensar.model.samples import KnownSamples
from gensar.model.train_config import ModelRunConfig

__all__ = ["RefreshConfig", "check_previous", "previous_state", "refresh_model_config", "replay_of",
           "served_ids"]


@dataclass(frozen=True)
class RefreshConfig:
    previous: str = ""  # the run directory to refresh from; "" = an ordinary run from scratch
    epochs: int = 0  # training epochs of the refresh; 0 = a third of model.train.epochs (rounded down, >= 1)
    # Shares of what RUN0 trained on that each refresh epoch draws again (everything new is drawn in
    # full): of its training examples (the same target, the same history), and of its items'
    # item-level tasks (their identifiers and text did not change). 1 = as any sample.
    replay: float = 1.0
    replay_items: float = 1.0

    def validate(self) -> None:
        require(self.epochs >= 0, "refresh.epochs", "must be >= 0 (0 = a third of model.train.epochs)")
        require(0.0 <= self.replay <= 1.0, "refresh.replay", "must be in [0, 1]")
        require(0.0 <= self.replay_items <= 1.0, "refresh.replay_items", "must be in [0, 1]")

    def replays(self) -> bool:
        """Whether any share is below 1 (else the refresh trains on every sample alike)."""
        return self.replay < 1 or self.replay_items < 1

    @property
    def enabled(self) -> bool:
        return bool(self.previous)


def refresh_model_config(model: ModelRunConfig, refresh: RefreshConfig) -> ModelRunConfig:
    """The training config of the refresh: the run's, with the refresh's epoch count."""
    epochs = refresh.epochs or max(1, model.train.epochs // 3)  # at most a third
    return replace(model, train=replace(model.train, epochs=epochs))


def replay_of(previous: Path, data_dir: Path, refresh: RefreshConfig) -> KnownSamples:
    """What RUN0's model trained on, in the example ids of the new data at ``data_dir``: the training
    examples whose target event (user, time, behavior, item) was one of RUN0's training targets, and
    the items RUN0 trained with (not its cold items, nor items added to it after training)."""
    from gensar.data.prepared import PreparedData

    def train_keys(data: PreparedData) -> list[tuple[tuple, int]]:
        """(target key, example id) of each training example; a key may repeat (twin events)."""
        ex = data.split("train")
        stamps = data.events["timestamp"].to_numpy()[ex["event_id"].to_numpy()]  # event ids are rows
        keys = zip(ex["user_id"], stamps.tolist(), ex["behavior"], ex["target"], strict=True)
        return list(zip(keys, ex["example_id"].tolist(), strict=True))

    before = PreparedData.load(previous / "data").training_view()
    now = PreparedData.load(data_dir).training_view()
    seen = {key for key, _ in train_keys(before)}
    examples = frozenset(x for key, x in train_keys(now) if key in seen)
    return KnownSamples(examples=examples, items=frozenset(before.items["item_id"].tolist()),
                        examples_share=refresh.replay, items_share=refresh.replay_items)


def check_previous(previous: Path, ids_config: object, model: ModelRunConfig, previous_config: object) -> None:
    """RUN0 is a finished run whose ID stage and backbone the new run can carry over."""
    for name, path in (("the ID stage", previous / "ids" / "item_ids.json"),
                       ("the model", previous / "model" / "config.json"),
                       ("the data", previous / "data" / "manifest.json")):
        if not path.is_file():
            raise GensarError(f"{previous}: not a finished pipeline run to refresh from ({name} is missing: {path})")
    if to_dict(previous_config.ids) != to_dict(ids_config):
        raise ConfigError(f"ids: differs from {previous / 'pipeline.yaml'} (a refresh keeps the previous run's "
                          "identifiers and RQ-VAE: leave the ids section as it was)")
    if to_dict(previous_config.model.backbone) != to_dict(model.backbone):
        raise ConfigError(f"model.backbone: differs from {previous / 'pipeline.yaml'} (a refresh starts "
                          "from the previous model's weights: keep its shape)")


def served_ids(previous: Path) -> IdMaps:
    """Every identifier RUN0 serves: its trained items', its cold items', and those of the items
    added through its items log (``gensar add-items``, ``POST /items``; the default log path)."""
    from gensar.data.prepared import PreparedData
    from gensar.serve.catalog import run_catalog
    from gensar.serve.items_log import ITEMS_LOG_NAME, read_items_log

    catalog = run_catalog(previous, PreparedData.load(previous / "data"))
    log = previous / ITEMS_LOG_NAME
    if log.is_file():
        catalog.replay(read_items_log(log).records, log)
    return catalog.require_ids()


READ_STAGES = ("data", "ids", "model")  # RUN0's stages a refresh reads (its hybrid and metrics it does not)


def previous_state(previous: Path) -> str:
    """A digest of what the refresh reads from RUN0 (the fingerprints of its data, ID and model
    stages; its items log), so a refreshed stage reruns when those changed, and not when RUN0's
    hybrid was fitted again or its evaluation rerun."""
    from gensar.serve.items_log import ITEMS_LOG_NAME

    digest = hashlib.sha256()
    stages_file = previous / "stages.json"
    try:
        stages = json.loads(stages_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stages = {}
    read = {k: stages.get(k) for k in READ_STAGES} if isinstance(stages, dict) else {}
    digest.update(b"stages" + json.dumps(read, sort_keys=True).encode())
    log = previous / ITEMS_LOG_NAME
    digest.update(ITEMS_LOG_NAME.encode() + (log.read_bytes() if log.is_file() else b"-"))
    return digest.hexdigest()[:16]
