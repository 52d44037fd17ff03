"""The added-items log: items that joined a trained run's catalog, with the identifiers they got.

``gensar add-items`` and ``POST /items`` append here; every server and ``gensar recommend`` /
``search`` replays it on start (before the events log, whose events may name added items). The
machinery is the events log's (``gensar.serve.append_log``: fsynced appends, a torn last line
skipped and cut off, one writer at a time through an exclusive ``flock``). One record per batch,
so a batch is added whole or not at all::

    {"seq": 1, "items": [{"item_id": "N1", "title": "...", "categories": ["Shop", "..."],
      "description": "...", "brand": "...", "semantic": ["<s_a_3>", ...], "collaborative": [...]}]}

The identifiers are stored, not recomputed on replay: an item keeps the identifier it was served
under. This module checks a record's form; ``gensar.serve.catalog`` checks that it fits the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gensar.data.canonical import ITEM_FIELDS, parse_item
from gensar.errors import InputError
from gensar.ids.item_ids import COLLABORATIVE, ID_KINDS, SEMANTIC, IdMaps
from gensar.io import json_object
from gensar.serve.append_log import AppendLog, Replay, read_records

__all__ = ["AddedItem", "AddedItems", "ITEMS_LOG_NAME", "ItemsLog", "parse_items_line", "read_items_log"]

ITEMS_LOG_NAME = "live_items.jsonl"
WHAT = "items log"
BUSY = ("items log is in use by another gensar process (a server, or `gensar add-items`): "
        "add items through that server's POST /items, or once it stopped")


@dataclass(frozen=True)
class AddedItem:
    item: dict[str, Any]  # canonical item fields (``gensar.data.canonical.ITEM_FIELDS``)
    semantic: tuple[str, ...]
    collaborative: tuple[str, ...]

    @property
    def item_id(self) -> str:
        return str(self.item["item_id"])

    def to_dict(self) -> dict[str, Any]:
        return {**{k: self.item[k] for k in ITEM_FIELDS}, SEMANTIC: list(self.semantic),
                COLLABORATIVE: list(self.collaborative)}


@dataclass(frozen=True)
class AddedItems:
    """One record: a batch of items added together."""

    seq: int
    items: tuple[AddedItem, ...]
    line: int = field(default=0, compare=False)  # where replay found it (0: not read from a file)

    def to_json(self) -> str:
        return json.dumps({"seq": self.seq, "items": [i.to_dict() for i in self.items]}, ensure_ascii=False)

    @classmethod
    def of(cls, seq: int, items: Sequence[dict[str, Any]], ids: IdMaps) -> AddedItems:
        """The record of ``items`` (canonical fields) with their identifiers from ``ids``."""
        return cls(seq, tuple(AddedItem(dict(it), ids.semantic[it["item_id"]], ids.collaborative[it["item_id"]])
                              for it in items))


def parse_items_line(line: str, path: Path, lineno: int) -> AddedItems:
    """One line of the log, checked for form (a bad one is an ``InputError`` naming the line)."""
    obj = json_object(line, path, lineno)
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise InputError(f"expected int, got {seq!r}", path=path, line=lineno, field="seq")
    unknown = sorted(set(obj) - {"seq", "items"})
    if unknown:
        raise InputError("unknown field", path=path, line=lineno, field=unknown[0])
    raw = obj.get("items")
    if not isinstance(raw, list) or not raw:
        raise InputError("expected a non-empty list of items", path=path, line=lineno, field="items")
    items = []
    for j, entry in enumerate(raw):
        where = f"items[{j}]"
        if not isinstance(entry, dict):
            raise InputError("expected an object", path=path, line=lineno, field=where)
        ids: dict[str, tuple[str, ...]] = {}
        for kind in ID_KINDS:
            value = entry.get(kind)
            if not isinstance(value, list) or not value or not all(_is_token(t) for t in value):
                raise InputError("expected a non-empty list of identifier tokens like '<s_a_3>'", path=path,
                                 line=lineno, field=f"{where}.{kind}")
            ids[kind] = tuple(value)
        try:
            item = parse_item({k: v for k, v in entry.items() if k not in ID_KINDS})
        except InputError as err:
            raise InputError(err.message, path=path, line=lineno, field=f"{where}.{err.field}") from None
        items.append(AddedItem(item, ids[SEMANTIC], ids[COLLABORATIVE]))
    return AddedItems(seq, tuple(items), lineno)


def _is_token(value: object) -> bool:
    return isinstance(value, str) and len(value) > 2 and value[0] == "<" and value[-1] == ">" and \
        not any(c.isspace() for c in value)


def read_items_log(path: str | Path) -> Replay[AddedItems]:
    """Replay the log read-only (absent = empty); a torn last line is skipped (``Replay.torn``)."""
    return read_records(path, parse_items_line, WHAT)


class ItemsLog:
    """The append side (exclusive while it lives): ``gensar add-items``, or a server for its lifetime."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._log = AppendLog(self.path, parse_items_line, WHAT, option="--items-log", busy=BUSY)
        self.records = self._log.records

    def append(self, items: Sequence[dict[str, Any]], ids: IdMaps, then: Callable[[AddedItems], None]) -> AddedItems:
        """Write the batch (one line, fsynced), then ``then(record)`` under the log's lock."""
        return self._log.append(lambda seq: AddedItems.of(seq, items, ids), then)

    def close(self) -> None:
        self._log.close()
