"""A trained generative model as one object: weights, tokenizer, item IDs and the run config.

Evaluation and serving both load models through ``TrainedModel.load`` so that they render inputs
exactly as training did (the same ``SampleEncoder`` and prompt style).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from gensar.config import from_dict
from gensar.data.prepared import PreparedData
from gensar.errors import GensarError
from gensar.ids.item_ids import COLLABORATIVE, SEMANTIC, IdMaps
from gensar.model.encoder import SampleEncoder
from gensar.model.prompts import REC_TOKEN, SEARCH_TOKEN

MODEL_CONFIG_NAME = "gensar_model.json"  # written by gensar.model.train next to the weights
ID_KIND = {"rec": COLLABORATIVE, "search": SEMANTIC}  # which identifier each behavior generates
PREFIX_TOKEN = {"rec": REC_TOKEN, "search": SEARCH_TOKEN}  # the first target token per behavior


@dataclass
class TrainedModel:
    model: torch.nn.Module
    tokenizer: object
    ids: IdMaps
    config: object  # gensar.model.train.ModelRunConfig

    @classmethod
    def load(cls, model_dir: str | Path, ids_path: str | Path | None = None) -> TrainedModel:
        """Load ``model_dir`` (from ``gensar train``); IDs from ``model_dir/item_ids.json`` unless given."""
        from gensar.model.backbone import load_model
        from gensar.model.train_config import ModelRunConfig

        model_dir = Path(model_dir)
        cfg_path = model_dir / MODEL_CONFIG_NAME
        if not cfg_path.is_file():
            raise GensarError(f"{cfg_path}: missing (not a model directory written by `gensar train`)")
        try:
            raw = json.loads(cfg_path.read_text(encoding="utf-8"))["config"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise GensarError(f"{cfg_path}: not a gensar model config") from None
        config = from_dict(ModelRunConfig, raw)
        ids = IdMaps.load(ids_path if ids_path is not None else model_dir / "item_ids.json")
        model, tokenizer = load_model(model_dir)
        return cls(model=model.eval(), tokenizer=tokenizer, ids=ids, config=config)

    def encoder(self, data: PreparedData) -> SampleEncoder:
        return SampleEncoder(self.tokenizer, self.ids, data, self.config.tasks, self.config.train.max_input_len)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def prefix(self, behavior: str) -> list[int]:
        """Forced first target token(s) of a behavior, e.g. ``[id(<rec>)]``."""
        return [int(self.tokenizer.convert_tokens_to_ids(PREFIX_TOKEN[behavior]))]

    @cached_property
    def _code_cache(self) -> dict:
        return {}

    def id_codes(self, kind: str, item_ids: list[str]) -> np.ndarray:
        """Token ids of each item's ``kind`` identifier [n_items, L], right-padded with -1."""
        key = (kind, len(item_ids), item_ids[0] if item_ids else "")
        if key not in self._code_cache:
            table = self.ids.of(kind)
            seqs = [self.tokenizer.convert_tokens_to_ids(list(table[item])) for item in item_ids]
            unk = self.tokenizer.unk_token_id
            if unk is not None and any(int(unk) in s for s in seqs):
                raise GensarError(f"the model's vocabulary lacks some {kind} ID tokens "
                                  "(model and item IDs from different runs?)")
            width = max(len(s) for s in seqs)
            codes = np.full((len(seqs), width), -1, dtype=np.int64)
            for row, s in enumerate(seqs):
                codes[row, : len(s)] = s
            self._code_cache[key] = codes
        return self._code_cache[key]


def load_run(run_dir: str | Path) -> tuple[PreparedData, TrainedModel]:
    """A run's prepared data and trained model as evaluation ranks them: every item of the data
    has an identifier. With cold items (``gensar prepare --cold-items``) that is the trained
    identifiers plus the ones the pipeline's cold stage gave the cold items after training
    (``RUN_DIR/cold``, ``gensar.ids.cold_items``)."""
    run = Path(run_dir)
    data = PreparedData.load(run / "data")
    trained = TrainedModel.load(run / "model")
    if data.cold_items:
        from gensar.ids.cold_items import COLD_DIR, load_cold_ids

        cold = load_cold_ids(run / COLD_DIR, data, trained.ids)
        trained = dataclasses.replace(trained, ids=trained.ids.extended(cold))
    return data, trained
