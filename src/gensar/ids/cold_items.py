"""The pipeline's ``cold`` stage: identifiers for the cold items, once the model is trained.

The cold items of ``gensar prepare --cold-items R`` (``gensar.data.cold``) get no identifier from
the ID stage and take no part in training. After training they are added as ``gensar add-items``
adds items (``IdExtender``, ``gensar.ids.extend``): a semantic embedding from the item's text with
the ID stage's encoder and settings, a collaborative one predicted from it
(``gensar.ids.cold_start``), codes from the trained RQ-VAE's codebooks, and the nearest identifiers
that keep each kind unique and prefix-free, with only tokens the model was trained with and no
trained identifier changed. The items are placed in items order, one after another.

RUN_DIR/cold/ (written atomically)
    item_ids.json   the cold items' identifiers (``IdMaps``, items order)
    report.json     how many items, how many identifiers are their own codes, seconds
    config.yaml     the ``ColdStartConfig``

Evaluation ranks every item with these and the trained identifiers (``gensar.model.trained.load_run``);
a server adds the cold items to its catalog before it replays the items log
(``gensar.serve.catalog.run_catalog``), so the served run holds them like any added item.
"""

from __future__ import annotations

import time
from pathlib import Path

from gensar.config import to_yaml
from gensar.data.prepared import PreparedData
from gensar.errors import GensarError, InputError
from gensar.ids.cold_start import ColdStartConfig
from gensar.ids.extend import IdExtender, LevelCodes, level_codes
from gensar.ids.item_ids import ID_KINDS, IdMaps
from gensar.io import atomic_dir, atomic_write_json, atomic_write_text, check_output_dir

__all__ = ["COLD_DIR", "build_cold_ids", "load_cold_ids"]

COLD_DIR = "cold"  # inside a run directory


def build_cold_ids(data: PreparedData, ids_dir: str | Path, trained: IdMaps, out: str | Path,
                   cfg: ColdStartConfig = ColdStartConfig(), overwrite: bool = False) -> dict:
    """Identifiers of ``data``'s cold items from the ID stage in ``ids_dir`` next to ``trained`` (the
    identifiers the model was trained with), written atomically into ``out``; returns the report."""
    if not data.cold_items:
        raise GensarError("the prepared data has no cold items (gensar prepare --cold-items R)")
    out = check_output_dir(out, overwrite)
    warm = data.training_view()
    trained.require_items(warm.items["item_id"].tolist())
    cold = data.items.iloc[len(warm.items):].reset_index(drop=True)  # the last rows (as PreparedData checks)
    start = time.perf_counter()
    extender = IdExtender.from_dir(ids_dir, len(warm.items), frozenset(trained.tokens()), cfg)
    # IdExtender.assign in two steps, to keep the codes for the report
    codes = level_codes(extender.model, *extender.embed(cold, warm.items))
    ids = extender.place(cold["item_id"].tolist(), codes, trained)
    report = {"items": len(cold), "cold_start": cfg.method, "own_codes": _own_codes(codes, ids),
              "seconds": round(time.perf_counter() - start, 2)}
    with atomic_dir(out, overwrite=overwrite, kind="cold") as tmp:
        atomic_write_json(tmp / "item_ids.json", ids.to_json())
        atomic_write_json(tmp / "report.json", report)
        atomic_write_text(tmp / "config.yaml", to_yaml(cfg))
    return report


def _own_codes(codes: LevelCodes, ids: IdMaps) -> dict[str, float]:
    """Per identifier kind, the fraction of the new items whose identifier is their own nearest
    codes (the others moved to a free code or took a disambiguation token)."""
    out = {}
    for kind in ID_KINDS:
        c = codes[kind]
        own = [tuple(f"<{n}_{int(x)}>" for n, x in zip(c.names, row, strict=True)) for row in c.codes]
        got = [ids.of(kind)[i] for i in ids.item_ids]
        out[kind] = sum(g == o for g, o in zip(got, own, strict=True)) / max(len(own), 1)
    return out


def load_cold_ids(cold_dir: str | Path, data: PreparedData, trained: IdMaps) -> IdMaps:
    """The cold stage's identifiers in ``cold_dir``, checked to be exactly ``data``'s cold items,
    in order, with tokens of ``trained`` and unique and prefix-free beside them."""
    path = Path(cold_dir) / "item_ids.json"
    if not path.is_file():
        raise GensarError(f"{path}: missing (the data has {len(data.cold_items)} cold items: run the "
                          "pipeline's cold stage)")
    ids = IdMaps.load(path)
    if ids.item_ids != list(data.cold_items):
        raise InputError("identifies other items than the prepared data's cold items (another run's?)",
                         path=path)
    vocabulary = set(trained.tokens())
    unknown = next((t for t in ids.tokens() if t not in vocabulary), None)
    if unknown is not None:
        raise InputError(f"token {unknown} is not one the model was trained with", path=path)
    try:
        trained.extended(ids)
    except InputError as err:
        raise InputError(f"does not fit the trained identifiers: {err}", path=path) from None
    return ids
