"""A living catalog: a trained run's prepared items, then the items added since, with identifiers.

Added items come from the items log (``gensar.serve.items_log``), replayed in order; nothing is
retrained. ``Catalog`` holds the grown items table and every item's identifiers, and checks that
what is added fits: new item ids, and identifiers that keep each kind unique and prefix-free and use
only tokens the model was trained with (``IdIndex``). It never changes an existing item or
identifier. The engines are grown by the service (``Engine.add_items``), in bulk after a replay.

A run prepared with cold items (``gensar prepare --cold-items``, ``gensar.data.cold``) was trained
on the other items; ``run_catalog`` starts from those and adds the cold items first, with the
identifiers the pipeline's cold stage gave them after training (``gensar.ids.cold_items``), as if
they had been added through the items log before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gensar.data.canonical import ITEM_FIELDS
from gensar.data.prepared import PreparedData
from gensar.data.schema import make_items
from gensar.errors import GensarError, InputError
from gensar.ids.cold_items import COLD_DIR, load_cold_ids
from gensar.ids.item_ids import ID_KINDS, IdMaps
from gensar.ids.new_ids import IdIndex, code_levels
from gensar.serve.items_log import AddedItem, AddedItems

__all__ = ["Catalog", "ItemProblem", "run_catalog", "trained_ids"]


def trained_ids(run_dir: str | Path) -> IdMaps | None:
    """The identifiers the run's model was trained with (``model/item_ids.json``, else
    ``ids/item_ids.json``), or None for a run without them (data only: the fake engine)."""
    run_dir = Path(run_dir)
    for path in (run_dir / "model" / "item_ids.json", run_dir / "ids" / "item_ids.json"):
        if path.is_file():
            return IdMaps.load(path)
    return None


def run_catalog(run_dir: str | Path, data: PreparedData) -> Catalog:
    """The catalog a run serves before its items log: the trained items of ``data`` (the run's
    prepared data), then its cold items with the cold stage's identifiers. A run without
    identifiers (data only: the fake engine) serves the prepared items as they are."""
    ids = trained_ids(run_dir)
    if not data.cold_items or ids is None:
        return Catalog(data, ids)
    catalog = Catalog(data.training_view(), ids)
    cold_dir = Path(run_dir) / COLD_DIR
    cold = load_cold_ids(cold_dir, data, ids)
    rows = data.items.iloc[catalog.prepared:]
    items = [AddedItem({k: (list(v) if k == "categories" else v) for k, v in row.items() if k in ITEM_FIELDS},
                       cold.semantic[row["item_id"]], cold.collaborative[row["item_id"]])
             for row in rows.to_dict("records")]
    problem = catalog.item_problem([i.item for i in items]) or catalog.identifier_problem(items)
    if problem is not None:
        raise InputError(problem.message, path=cold_dir / "item_ids.json",
                         field=f"{items[problem.position].item_id}.{problem.field}")
    catalog.add(items)
    return catalog


class ItemProblem(GensarError):
    """Why a batch of new items is refused: the item's position in the batch, the field, the reason."""

    def __init__(self, position: int, field: str, message: str) -> None:
        self.position = position
        self.field = field
        self.message = message
        super().__init__(f"items[{position}].{field}: {message}")


class Catalog:
    def __init__(self, data: PreparedData, ids: IdMaps | None) -> None:
        """``data``: the prepared data; ``ids``: the trained identifiers (None: the run has none)."""
        if ids is not None:
            ids.require_items(data.items["item_id"].tolist())
        self.prepared = len(data.items)
        self.base = data  # what the engines are built on: the catalog before any addition
        self.data = data
        self.ids = ids
        self.index: dict[str, int] = dict(data.item_index)
        self.vocabulary = frozenset(ids.tokens()) if ids is not None else frozenset()
        self._taken: dict[str, IdIndex] | None = None

    @property
    def size(self) -> int:
        return len(self.index)

    # ---- checks ----------------------------------------------------------------------------
    def item_problem(self, items: Sequence[dict[str, Any]]) -> ItemProblem | None:
        """Why ``items`` (canonical fields) cannot join: an id already in the catalog, or twice."""
        seen: dict[str, int] = {}
        for pos, item in enumerate(items):
            item_id = item["item_id"]
            if item_id in self.index:
                return ItemProblem(pos, "item_id", f"item '{item_id}' is already in the catalog")
            if item_id in seen:
                return ItemProblem(pos, "item_id",
                                   f"item '{item_id}' is listed twice (first at items[{seen[item_id]}])")
            seen[item_id] = pos
        return None

    def require_ids(self) -> IdMaps:
        if self.ids is None:
            raise GensarError("this run has no item identifiers (ids/, model/): adding items needs a trained run")
        return self.ids

    def identifier_problem(self, items: Sequence[AddedItem]) -> ItemProblem | None:
        """Why these identifiers cannot join: a token the model lacks, or a clash with a taken one."""
        self.require_ids()
        taken = self._index()
        fresh = {kind: IdIndex(taken[kind].levels) for kind in ID_KINDS}  # the batch among itself
        for pos, item in enumerate(items):
            for kind in ID_KINDS:
                tokens = getattr(item, kind)
                unknown = next((t for t in tokens if t not in self.vocabulary), None)
                if unknown is not None:
                    return ItemProblem(pos, kind, f"token {unknown} is not one the model was trained with")
                problem = taken[kind].conflict(tokens) or fresh[kind].conflict(tokens)
                if problem is not None:
                    return ItemProblem(pos, kind, problem)
                fresh[kind].add(tokens)
        return None

    # ---- growth ----------------------------------------------------------------------------
    def add(self, items: Sequence[AddedItem]) -> None:
        """Append checked items (``item_problem`` and ``identifier_problem`` found nothing)."""
        if not items:
            return
        ids = self.require_ids()
        taken = self._index()
        for item in items:
            for kind in ID_KINDS:
                taken[kind].add(getattr(item, kind))
        new = make_items([i.item for i in items])
        grown = self.data.with_items(pd.concat([self.data.items, new], ignore_index=True))
        self.ids = IdMaps({**ids.semantic, **{i.item_id: i.semantic for i in items}},
                          {**ids.collaborative, **{i.item_id: i.collaborative for i in items}})
        self.data = grown
        for item in items:
            self.index[item.item_id] = len(self.index)

    def replay(self, records: Sequence[AddedItems], path: Path) -> None:
        """Add the log's records in order; one that does not fit this run is an ``InputError``
        naming the log's line (the run was retrained, or the log belongs to another run)."""
        for record in records:
            problem = self.item_problem([i.item for i in record.items]) or self.identifier_problem(record.items)
            if problem is not None:
                raise InputError(f"{problem.message} (an items log of another run, or of an earlier training "
                                 "of this one?)", path=path, line=record.line,
                                 field=f"items[{problem.position}].{problem.field}")
            self.add(record.items)

    def _index(self) -> dict[str, IdIndex]:
        if self._taken is None:
            ids = self.require_ids()
            self._taken = {kind: IdIndex(code_levels(next(iter(ids.of(kind).values()))), ids.of(kind).values())
                           for kind in ID_KINDS}
        return self._taken
