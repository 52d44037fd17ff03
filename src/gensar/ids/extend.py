"""Identifiers for items added to a trained run, from the run's own ID stage (no retraining).

For each new item: its semantic embedding from its text, exactly as the ID stage computed the
trained items' (same encoder and settings); a predicted collaborative embedding (it has no
interactions, ``gensar.ids.cold_start``); the trained RQ-VAE's codes at every level; then the
nearest identifier of each kind that keeps the whole set unique and prefix-free without changing
any existing one (``gensar.ids.new_ids``). Items of one batch are placed one after another, in
order, each seeing the ones before it.

Reads the ID stage's directory (``gensar.ids.stage``): ``rqvae.pt``, ``semantic_emb.npy``,
``collaborative_emb.npy`` (rows in the trained items' order) and ``config.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gensar.config import load_config
from gensar.data.schema import item_texts
from gensar.errors import GensarError
from gensar.ids.assign import COLLABORATIVE_GROUP, DISAMBIGUATION_LETTER, SEMANTIC_GROUP, SHARED_GROUP, level_names
from gensar.ids.cold_start import ColdStartConfig, CollaborativePredictor, make_predictor
from gensar.ids.item_ids import COLLABORATIVE, SEMANTIC, IdMaps
from gensar.ids.new_ids import IdIndex, nearest_free_id
from gensar.ids.rqvae import RQVAE, load_checkpoint
from gensar.ids.stage import IdsConfig, load_embeddings

__all__ = ["IdExtender", "KindCodes", "LevelCodes", "level_codes"]


@dataclass(frozen=True)
class KindCodes:
    """One identifier kind's raw codes and per-level distances for a batch of items."""

    names: tuple[str, ...]  # token stem of each level (``s_a``, ..., ``sem_b``)
    suffix_name: str  # the disambiguation stem (``sem_x``)
    codes: np.ndarray  # [M, L] nearest code per level
    distances: tuple[np.ndarray, ...]  # L arrays [M, K]


LevelCodes = dict[str, KindCodes]  # identifier kind (SEMANTIC / COLLABORATIVE) -> its codes


@torch.no_grad()
def level_codes(model: RQVAE, semantic: np.ndarray, collaborative: np.ndarray) -> LevelCodes:
    """Codes and distances of every level of both identifier kinds (as ``gensar.ids.assign``
    builds identifiers from them): joint = shared levels + that kind's specific levels; the
    single-embedding variants give both kinds the same levels."""
    model.eval()
    out = model(torch.as_tensor(semantic, dtype=torch.float32, device=model.device),
                torch.as_tensor(collaborative, dtype=torch.float32, device=model.device))
    cfg = model.cfg

    def kind(parts, groups: list[tuple[str, int]], suffix_group: str) -> KindCodes:
        names = tuple(n for g, levels in groups for n in level_names(g, levels))
        codes = torch.cat([p.codes for p in parts], 1).cpu().numpy()
        dist = tuple(d.cpu().numpy() for p in parts for d in p.distances)
        return KindCodes(names, f"{suffix_group}_{DISAMBIGUATION_LETTER}", codes, dist)

    if cfg.variant == "joint":
        lm, ln = cfg.shared_levels, cfg.specific_levels
        return {
            SEMANTIC: kind([out.shared, out.semantic], [(SHARED_GROUP, lm), (SEMANTIC_GROUP, ln)], SEMANTIC_GROUP),
            COLLABORATIVE: kind([out.shared, out.collaborative], [(SHARED_GROUP, lm), (COLLABORATIVE_GROUP, ln)],
                                COLLABORATIVE_GROUP),
        }
    group = SEMANTIC_GROUP if cfg.variant == "semantic" else COLLABORATIVE_GROUP
    single = kind([out.semantic if cfg.variant == "semantic" else out.collaborative],
                  [(group, cfg.single_levels)], group)
    return {SEMANTIC: single, COLLABORATIVE: single}


class IdExtender:
    """A run's trained ID stage, ready to give new items identifiers."""

    def __init__(self, model: RQVAE, cfg: IdsConfig, semantic: np.ndarray, collaborative: np.ndarray,
                 predictor: CollaborativePredictor, vocabulary: frozenset[str]) -> None:
        """``semantic``/``collaborative``: the trained items' embeddings; ``vocabulary``: the
        identifier tokens the model was trained with (new identifiers use only these)."""
        self.model = model.eval()
        self.cfg = cfg
        self.trained_semantic = semantic
        self.predictor = predictor.fit(semantic, collaborative)
        self.vocabulary = vocabulary

    @classmethod
    def from_dir(cls, ids_dir: str | Path, n_items: int, vocabulary: frozenset[str],
                 cold: ColdStartConfig) -> IdExtender:
        """The ID stage in ``ids_dir``, trained on ``n_items`` items; ``vocabulary``: the identifier
        tokens the model was trained with (``IdMaps.tokens`` of its identifiers)."""
        ids_dir = Path(ids_dir)
        for name in ("rqvae.pt", "semantic_emb.npy", "collaborative_emb.npy", "config.yaml"):
            if not (ids_dir / name).is_file():
                raise GensarError(f"{ids_dir / name}: missing (adding items needs the run's ID stage, `gensar ids`)")
        semantic = load_embeddings(ids_dir / "semantic_emb.npy", n_items, "semantic_emb")
        collaborative = load_embeddings(ids_dir / "collaborative_emb.npy", n_items, "collaborative_emb")
        cfg = load_config(IdsConfig, ids_dir / "config.yaml", [])
        model = load_checkpoint(ids_dir / "rqvae.pt")
        return cls(model, cfg, semantic, collaborative, make_predictor(cold), vocabulary)

    def embed(self, items: pd.DataFrame, catalog: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(semantic [M, Ds], predicted collaborative [M, Dc]) of ``items``; ``catalog``: every
        item so far, whose shared category root the catalog query leaves out (category_weight)."""
        from gensar.embed.semantic import category_texts, encode_items, mix_category

        sem_cfg = self.cfg.semantic
        semantic = np.asarray(encode_items(item_texts(items), sem_cfg), dtype=np.float32)  # [M, Ds]
        if sem_cfg.category_weight > 0:
            category = encode_items(category_texts(pd.concat([catalog, items], ignore_index=True))[-len(items):],
                                    sem_cfg)
            semantic = mix_category(semantic, category, sem_cfg.category_weight, sem_cfg.normalize)
        if semantic.shape[1] != self.trained_semantic.shape[1]:
            raise GensarError(f"the text encoder gives {semantic.shape[1]} dimensions, the trained items' "
                              f"semantic embeddings {self.trained_semantic.shape[1]} (another encoder?)")
        return semantic, self.predictor.predict(semantic)

    def assign(self, items: pd.DataFrame, catalog: pd.DataFrame, existing: IdMaps) -> IdMaps:
        """Identifiers of ``items`` (new ids, canonical item columns) given the ``existing`` ones of
        ``catalog``; the returned maps hold the new items only, in order."""
        if items.empty:
            return IdMaps({}, {})
        codes = level_codes(self.model, *self.embed(items, catalog))
        return self.place(items["item_id"].tolist(), codes, existing)

    def place(self, item_ids: list[str], codes: LevelCodes, existing: IdMaps,
              vocabulary: frozenset[str] | None = None) -> IdMaps:
        """Identifiers of new items from their ``codes`` (``level_codes`` of their embeddings),
        beside the ``existing`` ones; the returned maps hold the new items only, in order.
        ``vocabulary``: the tokens they may use, if not the trained model's (a model trained again)."""
        vocabulary = self.vocabulary if vocabulary is None else vocabulary
        out: dict[str, list[tuple[str, ...]]] = {}
        for kind in (SEMANTIC, COLLABORATIVE):
            c = codes[kind]
            index = IdIndex(len(c.names), existing.of(kind).values())
            found = []
            for row in range(len(item_ids)):
                if kind == COLLABORATIVE and codes[COLLABORATIVE] is codes[SEMANTIC]:
                    found.append(out[SEMANTIC][row])  # single-embedding variants: one ID serves both
                    continue
                tokens = nearest_free_id(c.codes[row], [d[row] for d in c.distances], c.names, c.suffix_name,
                                         index, vocabulary)
                index.add(tokens)
                found.append(tokens)
            out[kind] = found
        return IdMaps.from_lists(item_ids, out[SEMANTIC], out[COLLABORATIVE])
