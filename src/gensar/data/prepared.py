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
cold_items.json   only with ``--cold-items``: the cold items' ids, in items order (the last rows
                  of items.parquet; ``gensar.data.cold``)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from gensar.data.schema import item_texts
from gensar.data.twins import twin_mask
from gensar.errors import GensarError
from gensar.io import atomic_dir

SCHEMA_VERSION = 1
SPLITS = ("train", "valid", "test")
EXAMPLE_COLUMNS = ("example_id", "user_id", "split", "behavior", "event_id", "query", "target", "history")
_FILES = ("items", "events", "examples", "candidates")
COLD_ITEMS_FILE = "cold_items.json"


@dataclass
class PreparedData:
    manifest: dict
    items: pd.DataFrame
    events: pd.DataFrame
    examples: pd.DataFrame
    candidates: pd.DataFrame  # a property after the class: read on first use when loaded (``load``)
    # items no model trains on (``gensar prepare --cold-items``, ``gensar.data.cold``), in items order
    cold_items: tuple[str, ...] = ()

    # ---- persistence -------------------------------------------------------------------
    @classmethod
    def load(cls, root: str | Path) -> PreparedData:
        root = Path(root)
        if not (root / "manifest.json").is_file():
            raise GensarError(f"{root}: not a prepared data directory (no manifest.json; run `gensar prepare`)")
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise GensarError(f"{root}/manifest.json: schema_version {manifest.get('schema_version')} != {SCHEMA_VERSION}; re-run `gensar prepare`")
        for name in _FILES:
            if not (root / f"{name}.parquet").is_file():
                raise GensarError(f"{root / f'{name}.parquet'}: missing")
        tables = {name: pd.read_parquet(root / f"{name}.parquet") for name in _FILES if name != "candidates"}
        cold = _read_cold_items(root / COLD_ITEMS_FILE, tables["items"])
        # The candidate lists are the largest table (100 item ids per valid/test example: 1.2 GiB
        # at 1.7M events) and only evaluation reads them, so they load on first use.
        data = cls(manifest=manifest, **tables, candidates=_CandidatesFile.at(root / "candidates.parquet"),
                   cold_items=cold)
        data.items["categories"] = [list(c) for c in data.items["categories"]]
        data.events["items"] = [list(c) for c in data.events["items"]]
        data.examples["history"] = [list(h) for h in data.examples["history"]]
        return data

    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write all tables and the manifest into ``out`` atomically."""
        out = Path(out)
        with atomic_dir(out, overwrite=overwrite, kind="prepare") as tmp:
            for name in _FILES:
                getattr(self, name).to_parquet(tmp / f"{name}.parquet", index=False)
            if self.cold_items:
                (tmp / COLD_ITEMS_FILE).write_text(json.dumps(list(self.cold_items)) + "\n", encoding="utf-8")
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
        """Events never fitted on by any model: valid/test targets of either behavior, and every
        cold event (one that clicks a cold item)."""
        ex = self.examples
        held = frozenset(ex.loc[ex["split"] != "train", "event_id"].astype(int).tolist())
        return held | self.cold_event_ids

    @cached_property
    def cold_event_ids(self) -> frozenset[int]:
        """Events that click a cold item: in no training sample and no history (``gensar.data.cold``)."""
        if not self.cold_items:
            return frozenset()
        from gensar.data.cold import cold_event_mask

        mask = cold_event_mask(self.events, self.cold_items)
        return frozenset(self.events["event_id"].to_numpy()[mask].astype(int).tolist())

    @cached_property
    def twin_event_ids(self) -> frozenset[int]:
        """Search twins of rec events (the ``duplicate`` protocol, ``gensar.data.twins``): in no
        history of the item-sequence models (SASRec, the hybrid's history features)."""
        return frozenset(self.events["event_id"].to_numpy()[twin_mask(self.events)].astype(int).tolist())

    def training_view(self) -> PreparedData:
        """What training may see (the data itself when nothing is cold): the catalog without the
        cold items, the examples without the valid/test ones whose target is cold, and candidate
        lists without cold items (for early stopping on valid). Events are all kept (event ids are
        rows); the cold ones are in ``held_out_event_ids`` and in no history."""
        if not self.cold_items:
            return self
        cold = set(self.cold_items)
        items = self.items[~self.items["item_id"].isin(cold)].reset_index(drop=True)
        ex = self.examples
        examples = ex[(ex["split"] == "train") | ~ex["target"].isin(cold)].reset_index(drop=True)
        kept = self.candidates[self.candidates["example_id"].isin(set(examples["example_id"].tolist()))]
        candidates = pd.DataFrame({
            "example_id": kept["example_id"].to_numpy(),
            "candidates": [[c for c in cands if c not in cold] for cands in kept["candidates"]],
        })
        return dataclasses.replace(self, items=items, examples=examples, candidates=candidates)

    def with_items(self, items: pd.DataFrame) -> PreparedData:
        """The same data over another items table (a grown catalog); candidate lists not read yet
        stay unread."""
        return dataclasses.replace(self, items=items, candidates=self.__dict__["_candidates"])

    @property
    def trained_items(self) -> int:
        """How many items training sees: the rows without the cold ones (in the whole data, the
        rows before them)."""
        if not self.cold_items:
            return len(self.items)
        return int((~self.items["item_id"].isin(set(self.cold_items))).sum())

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


@dataclass(frozen=True)
class _CandidatesFile:
    """candidates.parquet not read yet (``PreparedData.load``): ``PreparedData.candidates`` reads it,
    refusing a file that changed since the other tables were read (they would not match)."""

    path: Path
    stamp: tuple[int, int]  # (size, mtime in ns) at load

    @classmethod
    def at(cls, path: Path) -> _CandidatesFile:
        st = path.stat()
        return cls(path, (st.st_size, st.st_mtime_ns))

    def read(self) -> pd.DataFrame:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise GensarError(f"{self.path}: missing (the prepared data changed after it was loaded)") from None
        if (st.st_size, st.st_mtime_ns) != self.stamp:
            raise GensarError(f"{self.path}: changed after the prepared data was loaded; load it again")
        table = pd.read_parquet(self.path)
        table["candidates"] = [list(c) for c in table["candidates"]]
        return table


def _get_candidates(self: PreparedData) -> pd.DataFrame:
    value = self.__dict__["_candidates"]
    if isinstance(value, _CandidatesFile):
        value = self.__dict__["_candidates"] = value.read()
    return value


def _set_candidates(self: PreparedData, value: pd.DataFrame | _CandidatesFile) -> None:
    self.__dict__["_candidates"] = value


# After the dataclass is made: its __init__ and ``dataclasses.replace`` go through the property.
PreparedData.candidates = property(_get_candidates, _set_candidates,  # type: ignore[assignment]
                                   doc="The candidate lists (read from disk on first use after ``load``).")


def _read_cold_items(path: Path, items: pd.DataFrame) -> tuple[str, ...]:
    """``cold_items.json`` (absent: none), checked to name the last rows of ``items``."""
    if not path.is_file():
        return ()
    try:
        cold = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise GensarError(f"{path}: invalid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(cold, list) or not all(isinstance(i, str) for i in cold):
        raise GensarError(f"{path}: expected a list of item ids")
    tail = items["item_id"].tolist()[len(items) - len(cold):] if cold else []
    if len(cold) >= len(items) or tail != cold:
        raise GensarError(f"{path}: its {len(cold)} items are not the last rows of items.parquet; "
                          "re-run `gensar prepare`")
    return tuple(cold)
