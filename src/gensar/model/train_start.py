"""Before a training starts: refuse to clobber an output or to resume a different run.

``gensar train`` writes ``OUT`` and its work directory ``OUT.ckpt/``; a resume must continue the very
run that was interrupted: the same config, and the same data and identifiers (``run_fingerprint``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from gensar.config import from_dict, to_dict
from gensar.data.prepared import PreparedData
from gensar.errors import ConfigError, GensarError
from gensar.ids.item_ids import IdMaps
from gensar.io import check_output_dir
from gensar.model.train_config import ModelRunConfig
from gensar.ownership import is_ours

__all__ = ["check_start", "first_difference", "run_fingerprint"]


def check_start(
    out: Path, work: Path, cfg: ModelRunConfig | None, fingerprint: dict, resume: bool, overwrite: bool,
    is_main: bool = True,
) -> ModelRunConfig:
    """Refuse to clobber output or to resume something else; the config this run uses.

    Only rank 0 locks the output: the other ranks of one torchrun are not second writers.
    """
    check_output_dir(out, overwrite, lock=is_main)
    if resume:
        if not (work / "run_config.json").is_file():
            raise GensarError(f"{work}: no interrupted run to resume (no run_config.json)")
        saved = json.loads((work / "run_config.json").read_text(encoding="utf-8"))
        saved_cfg = from_dict(ModelRunConfig, saved["config"])
        if cfg is not None and cfg != saved_cfg:
            key = first_difference(to_dict(saved_cfg), to_dict(cfg))
            raise ConfigError(
                f"config key '{key}' differs from the interrupted run in {work} "
                "(resume without --config/--set, or start over with --overwrite)"
            )
        if saved["fingerprint"] != fingerprint:
            key = first_difference(saved["fingerprint"], fingerprint)
            raise GensarError(f"{work}: the data or IDs differ from the interrupted run ({key})")
        return saved_cfg
    if work.exists() and not overwrite:
        raise GensarError(
            f"{work}: an interrupted run exists; pass --resume to continue it or --overwrite to start over"
        )
    if work.is_dir() and any(work.iterdir()) and not is_ours(work):
        raise GensarError(f"{work}: exists, is not empty and was not written by gensar; refusing to replace it")
    return cfg if cfg is not None else ModelRunConfig()


def run_fingerprint(data: PreparedData, ids: IdMaps) -> dict[str, Any]:
    """What must not change between an interrupted run and its resume."""
    digest = hashlib.sha256(json.dumps(ids.to_json(), sort_keys=True).encode()).hexdigest()[:16]
    return {
        "items": len(data.items),
        "events": len(data.events),
        "examples": len(data.examples),
        "data_source": str(data.manifest.get("source", "")),
        "item_ids_sha256": digest,
    }


def first_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else k)
    return where
