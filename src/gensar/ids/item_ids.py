"""``item_ids.json``: every item's two identifiers, and the names of the two identifier kinds.

    {item_id: {"semantic": [tokens], "collaborative": [tokens]}, ...}   (items order)

A semantic ID is what search generates, a collaborative ID what recommendation generates
(``gensar.ids.assign`` builds both). ``IdMaps`` is the one in-memory form of the file: the ID stage
writes it, training copies it into the model directory, decoding maps generated tokens back to items.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from gensar.errors import InputError
from gensar.io import atomic_write_text

SEMANTIC, COLLABORATIVE = "semantic", "collaborative"  # the identifier kinds, also the file's keys
IdKind = Literal["semantic", "collaborative"]
ID_KINDS: tuple[IdKind, ...] = (SEMANTIC, COLLABORATIVE)


@dataclass(frozen=True)
class IdMaps:
    """Item id <-> identifier token tuples, for both identifier types (dicts in items order)."""

    semantic: dict[str, tuple[str, ...]]
    collaborative: dict[str, tuple[str, ...]]

    @classmethod
    def from_lists(cls, item_ids: Sequence[str], semantic: Sequence[Sequence[str]],
                   collaborative: Sequence[Sequence[str]]) -> IdMaps:
        """From parallel lists (row i = item ``item_ids[i]``)."""
        return cls(dict(zip(item_ids, map(tuple, semantic), strict=True)),
                   dict(zip(item_ids, map(tuple, collaborative), strict=True)))

    @classmethod
    def load(cls, path: str | Path) -> IdMaps:
        """Read ``item_ids.json`` (or the IDs run directory holding it) and check it.

        A malformed entry is an InputError naming the file and the item.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "item_ids.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError("file not found", path=path) from None
        except json.JSONDecodeError as err:
            raise InputError(f"invalid JSON: {err.msg}", path=path, line=err.lineno) from None
        if not isinstance(data, dict):
            raise InputError("top level must be an object {item_id: {semantic, collaborative}}", path=path)
        for item, entry in data.items():
            for kind in ID_KINDS:
                value = entry.get(kind) if isinstance(entry, dict) else None
                if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
                    raise InputError("must be a non-empty list of token strings", path=path, field=f"{item}.{kind}")
        maps = cls.from_lists(list(data), [e[SEMANTIC] for e in data.values()],
                              [e[COLLABORATIVE] for e in data.values()])
        maps.check(path)
        return maps

    @property
    def item_ids(self) -> list[str]:
        return list(self.semantic)

    def check(self, path: str | Path | None = None) -> None:
        """Tokens look like ``<...>``; IDs of one type are unique and prefix-free."""
        for kind in ID_KINDS:
            table = self.of(kind)
            for item, toks in table.items():
                for t in toks:
                    if not (t.startswith("<") and t.endswith(">") and len(t) > 2) or any(
                        c.isspace() for c in t
                    ):
                        raise InputError(
                            f"bad identifier token {t!r} (expected like '<s_a_17>')",
                            path=path,
                            field=f"{item}.{kind}",
                        )
            order = sorted(table, key=lambda i: table[i])
            for a, b in itertools.pairwise(order):
                if table[b][: len(table[a])] == table[a]:
                    raise InputError(
                        f"{kind} ID of item '{a}' equals or is a prefix of item '{b}'s",
                        path=path,
                        field=f"{b}.{kind}",
                    )

    def of(self, kind: str) -> dict[str, tuple[str, ...]]:
        return self.semantic if kind == SEMANTIC else self.collaborative

    def tokens(self) -> list[str]:
        """Every distinct identifier token, in a stable natural order (``<s_a_2>`` before ``<s_a_10>``)."""
        found = {t for table in (self.semantic, self.collaborative) for toks in table.values() for t in toks}
        return sorted(found, key=_natural_key)

    @cached_property
    def _reverse(self) -> dict[str, dict[tuple[str, ...], str]]:
        return {kind: {toks: item for item, toks in self.of(kind).items()} for kind in ID_KINDS}

    def item_of(self, kind: str, tokens: Sequence[str]) -> str | None:
        """The item whose ``kind`` ID is exactly ``tokens``, else None."""
        return self._reverse[kind].get(tuple(tokens))

    def require_items(self, item_ids: Sequence[str], path: str | Path | None = None) -> None:
        for item in item_ids:
            if item not in self.semantic or item not in self.collaborative:
                raise InputError(f"item '{item}' of the prepared data has no identifier", path=path)

    def extended(self, other: IdMaps) -> IdMaps:
        """These identifiers and ``other``'s (items not in these), checked unique and prefix-free."""
        both = set(self.semantic) & set(other.semantic)
        if both:
            raise InputError(f"item '{sorted(both)[0]}' has identifiers twice")
        maps = IdMaps({**self.semantic, **other.semantic}, {**self.collaborative, **other.collaborative})
        maps.check()
        return maps

    def to_json(self) -> dict[str, dict[str, list[str]]]:
        return {
            item: {SEMANTIC: list(self.semantic[item]), COLLABORATIVE: list(self.collaborative[item])}
            for item in self.semantic
        }

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_json()) + "\n")


def _natural_key(token: str) -> tuple:
    stem, _, num = token.strip("<>").rpartition("_")
    return (stem, int(num), "") if num.isdigit() else (token, -1, token)
