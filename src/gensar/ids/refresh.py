"""The ID stage of a refresh (``gensar pipeline --refresh-from RUN0``): newer data, the same IDs.

A refreshed run keeps every identifier the previous run gave and builds no new RQ-VAE: the
previous run's ID stage (its RQ-VAE, its embeddings) carries over, each item the previous run
served keeps its identifiers byte for byte, and an item new in the newer data gets identifiers as
``gensar add-items`` gives them (``IdExtender``): semantic embedding from its text, a predicted
collaborative one, the trained RQ-VAE's codes, the nearest free identifier. Unlike add-items, the
model is trained again after this, so a new identifier may use a code token the previous model
never saw (its own code, where free): the vocabulary grows instead of a new item settling for a
farther code. An item of the previous run that the newer data no longer holds is dropped, and its
identifiers stay reserved (no new item inherits what the previous model learned for another).

Writes the ID stage's layout (``gensar.ids.stage``), rows in the newer data's items order:
embeddings of carried items are the previous run's rows, of the others the extender's.
``ids_report.json`` says how many items were kept, added and dropped.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from gensar.config import to_yaml
from gensar.data.prepared import PreparedData
from gensar.ids.cold_start import ColdStartConfig
from gensar.ids.extend import IdExtender, LevelCodes, level_codes
from gensar.ids.item_ids import ID_KINDS, IdMaps
from gensar.ids.stage import load_embeddings
from gensar.io import atomic_dir, atomic_write_json, atomic_write_text, check_output_dir

__all__ = ["refresh_ids", "code_vocabulary"]


def code_vocabulary(codes: LevelCodes, codebook_size: int) -> frozenset[str]:
    """Every code token of every level of both identifier kinds, and as many disambiguation tokens
    per kind as a codebook has codes: what a retrained model may learn."""
    tokens = set()
    for kind in ID_KINDS:
        c = codes[kind]
        tokens.update(f"<{name}_{code}>" for name in (*c.names, c.suffix_name) for code in range(codebook_size))
    return frozenset(tokens)


def refresh_ids(data: PreparedData, previous_ids_dir: str | Path, previous: IdMaps, out: str | Path,
                cold: ColdStartConfig = ColdStartConfig(), overwrite: bool = False) -> dict:
    """Identifiers of ``data``'s trained items (``training_view``): ``previous`` (every identifier
    the previous run served) where it has them, new ones beside them otherwise; the previous ID
    stage in ``previous_ids_dir``. Written atomically into ``out`` as an ID stage; returns the report."""
    out = check_output_dir(out, overwrite)
    start = time.perf_counter()
    previous_ids_dir = Path(previous_ids_dir)
    stage_ids = IdMaps.load(previous_ids_dir / "item_ids.json")  # the rows of its embeddings, in order
    extender = IdExtender.from_dir(previous_ids_dir, len(stage_ids.item_ids), frozenset(previous.tokens()), cold)
    items = data.training_view().items.reset_index(drop=True)
    ids = items["item_id"].tolist()
    row_of = {item: row for row, item in enumerate(stage_ids.item_ids)}
    carried = [i for i, item in enumerate(ids) if item in row_of]
    others = [i for i, item in enumerate(ids) if item not in row_of]

    semantic = np.empty((len(ids), extender.trained_semantic.shape[1]), dtype=np.float32)
    prev_collaborative = load_embeddings(previous_ids_dir / "collaborative_emb.npy", len(stage_ids.item_ids),
                                         "collaborative_emb")  # checked: one row per identified item
    collaborative = np.empty((len(ids), prev_collaborative.shape[1]), dtype=np.float32)
    rows = [row_of[ids[i]] for i in carried]
    semantic[carried] = extender.trained_semantic[rows]
    collaborative[carried] = prev_collaborative[rows]
    if others:
        sem, col = extender.embed(items.iloc[others], items.iloc[carried])
        semantic[others], collaborative[others] = sem, col

    # served before (cold or added items too): identifiers kept; the rest placed one after another
    new = [i for i in others if ids[i] not in previous.semantic]
    placed = IdMaps({}, {})
    if new:
        codes = level_codes(extender.model, semantic[new], collaborative[new])
        vocabulary = extender.vocabulary | code_vocabulary(codes, extender.cfg.rqvae.codebook_size)
        placed = extender.place([ids[i] for i in new], codes, previous, vocabulary)
    everything = previous.extended(placed)  # checks unique and prefix-free, the dropped items' included
    result = IdMaps({item: everything.semantic[item] for item in ids},
                    {item: everything.collaborative[item] for item in ids})
    grown = sorted(set(result.tokens()) - set(previous.tokens()))
    report = {
        "refreshed_from": str(previous_ids_dir),
        "variant": extender.cfg.rqvae.variant,
        "items": len(ids),
        "kept": len(ids) - len(new),
        "added": len(new),
        "dropped": len(set(previous.semantic) - set(ids)),
        "new_tokens": len(grown),
        "semantic_dim": int(semantic.shape[1]),
        "collaborative_dim": int(collaborative.shape[1]),
        "seconds": round(time.perf_counter() - start, 2),
    }
    with atomic_dir(out, overwrite=overwrite, kind="ids") as tmp:
        np.save(tmp / "semantic_emb.npy", semantic)
        np.save(tmp / "collaborative_emb.npy", collaborative)
        shutil.copyfile(previous_ids_dir / "rqvae.pt", tmp / "rqvae.pt")
        atomic_write_json(tmp / "item_ids.json", result.to_json())
        atomic_write_json(tmp / "ids_report.json", report)
        atomic_write_text(tmp / "config.yaml", to_yaml(extender.cfg))
    return report

