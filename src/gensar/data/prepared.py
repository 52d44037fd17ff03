"""A prepared data directory: the canonical tables plus examples and evaluation candidates.

Files (Parquet, written atomically as one directory):

manifest.json     source, format, options, seed, counts, schema version
items.parquet     canonical items (row order = item index)
events.parquet    canonical events after k-core and semi-synthetic search
examples.parquet  example_id:int64, user_id:str, split:"train"|"valid"|"test",
                  behavior:"rec"|"search", event_id:int64 (the target event), query:str,
                  target:str (item id), history:list[int64] (event ids, oldest first,
                  at most max_history, all strictly earlier than the target event)
candidates.parquet example_id:int64, candidates:list[str] (target first, then 99 negatives);
                  one row per valid/test example
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from gensar.data.schema import item_texts
from gensar.errors import GensarError
from gensar.io import atomic_dir

SCHEMA_VERSION = 1
SPLITS = ("train", "valid", "test")
EXAMPLE_COLUMNS = ("example_id", "user_id", "split", "behavior", "event_id", "query", "target", "history")
_FILES = ("items", "events", "examples", "candidates")


@dataclass
class PreparedData:
    manifest: dict
    items: pd.DataFrame
    events: pd.DataFrame
    examples: pd.DataFrame
    candidates: pd.DataFrame

    # ---- persistence -------------------------------------------------------------------
    @classmethod
    def load(cls, root: str | Path) -> PreparedData:
        root = Path(root)
        if not (root / "manifest.json").is_file():
            raise GensarError(f"{root}: not a prepared data directory (no manifest.json; run `gensar prepare`)")
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise GensarError(f"{root}/manifest.json: schema_version {manifest.get('schema_version')} != {SCHEMA_VERSION}; re-run `gensar prepare`")
        tables = {}
        for name in _FILES:
            path = root / f"{name}.parquet"
            if not path.is_file():
                raise GensarError(f"{path}: missing")
            tables[name] = pd.read_parquet(path)
        data = cls(manifest=manifest, **tables)
        data.items["categories"] = [list(c) for c in data.items["categories"]]
        data.events["items"] = [list(c) for c in data.events["items"]]
        data.examples["history"] = [list(h) for h in data.examples["history"]]
        data.candidates["candidates"] = [list(c) for c in data.candidates["candidates"]]
        return data

    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write all tables and the manifest into ``out`` atomically."""
        out = Path(out)
        with atomic_dir(out, overwrite=overwrite, kind="prepare") as tmp:
            for name in _FILES:
                getattr(self, name).to_parquet(tmp / f"{name}.parquet", index=False)
            manifest = dict(self.manifest, schema_version=SCHEMA_VERSION)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return out

    # ---- lookups -----------------------------------------------------------------------
    @cached_property
    def item_index(self) -> dict[str, int]:
        """item_id -> row in ``items`` (the index used by embeddings and identifiers)."""
        return {item_id: i for i, item_id in enumerate(self.items["item_id"])}

    @cached_property
    def item_texts(self) -> list[str]:
        return item_texts(self.items)

    @cached_property
    def held_out_event_ids(self) -> frozenset[int]:
        """Events that are valid/test targets of either behavior: never fitted on by any model."""
        ex = self.examples
        return frozenset(ex.loc[ex["split"] != "train", "event_id"].astype(int).tolist())

    def split(self, split: str, behavior: str | None = None) -> pd.DataFrame:
        """Examples of one split (and optionally one behavior)."""
        ex = self.examples[self.examples["split"] == split]
        if behavior is not None:
            ex = ex[ex["behavior"] == behavior]
        return ex

    def history(self, example_history: list[int]) -> pd.DataFrame:
        """The event rows of a history (event ids), oldest first."""
        return self.events.iloc[list(example_history)]

    @cached_property
    def candidate_lists(self) -> dict[int, list[str]]:
        """example_id -> candidate item ids (target first)."""
        return dict(zip(self.candidates["example_id"].tolist(), self.candidates["candidates"], strict=True))

    def user_items(self) -> dict[str, set[str]]:
        """user_id -> every item the user interacted with, in any behavior."""
        out: dict[str, set[str]] = {}
        for user, items in zip(self.events["user_id"], self.events["items"], strict=True):
            out.setdefault(user, set()).update(items)
        return out
