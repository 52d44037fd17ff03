"""Canonical files: the plain on-disk form of any dataset gensar can read.

A canonical dataset is a directory with one items file and one events file::

    my-data/
      items.jsonl      (or items.jsonl.gz, items.csv, items.csv.gz, items.parquet)
      events.jsonl     (or events.jsonl.gz, events.csv, events.csv.gz, events.parquet)

The format of each table is found from its extension; the two tables may use different
formats, but each table must exist exactly once. Text is UTF-8 (a leading BOM is accepted).
Other files in the directory are ignored, and so are unknown columns (they are listed in
``RawDataset.info["ignored_columns"]``).

Items, one per row/line:

=============  ========  ==========================================================
column         required  meaning
=============  ========  ==========================================================
item_id        yes       unique id (string; JSON numbers are accepted as strings)
title          no        text ('' when absent)
categories     no        category path, root first. JSONL/Parquet: a list of strings
                         (or one string in the CSV form). CSV: the path joined by
                         ``" > "``, e.g. ``Tools > Power Tools > Saws`` (read: split
                         on ``>``, parts stripped; so names cannot contain ``>``).
description    no        text
brand          no        text
=============  ========  ==========================================================

Events, one per row/line (a rec interaction or a search session):

=============  ========  ==========================================================
column         required  meaning
=============  ========  ==========================================================
user_id        yes       user id (string)
timestamp      yes       integer (any unit; only the order matters). Ties keep file
                         order.
behavior       no        ``rec`` (default) or ``search``
query          search    the search query; must be empty or absent for ``rec``
items          one of    the clicked item ids in click order. JSONL/Parquet: a list.
item_id                  CSV: ids separated by single spaces (so ids used in a CSV
                         ``items`` column cannot contain whitespace; use ``item_id``
                         or JSONL/Parquet for such ids). ``item_id`` is the shorthand
                         for a single item. A rec event has exactly one item, a
                         search session one or more (no repeats).
=============  ========  ==========================================================

Example (JSONL)::

    items.jsonl   {"item_id": "i1", "title": "Voltix Cordless Drill VX-210",
                   "categories": ["Shop", "Power Tools", "Cordless Drills"], "brand": "Voltix"}
    events.jsonl  {"user_id": "u1", "timestamp": 1, "item_id": "i1"}
                  {"user_id": "u1", "timestamp": 2, "behavior": "search",
                   "query": "cordless drill", "items": ["i1", "i7"]}

Example (CSV)::

    item_id,title,categories,description,brand
    i1,Voltix Cordless Drill VX-210,Shop > Power Tools > Cordless Drills,,Voltix

    user_id,timestamp,behavior,query,items
    u1,1,rec,,i1
    u1,2,search,cordless drill,i1 i7

Ids are stripped of surrounding whitespace. Blank lines in JSONL and CSV are skipped.
Every problem is reported as an ``InputError`` naming the file, the 1-based line (JSONL,
CSV; for Parquet the message names the 1-based row) and the field.

This module reads the format; ``gensar.data.canonical_writer`` writes it.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gensar.data.schema import (
    BEHAVIORS,
    REC,
    SEARCH,
    RawDataset,
    event_problem,
    make_events,
    make_items,
    validate,
)
from gensar.errors import InputError
from gensar.io import json_object, text_lines

FORMATS = ("jsonl", "jsonl.gz", "csv", "csv.gz", "parquet")
CATEGORY_SEP = " > "
ITEM_FIELDS = ("item_id", "title", "categories", "description", "brand")
EVENT_FIELDS = ("user_id", "timestamp", "behavior", "query", "items", "item_id")
_INT = re.compile(r"[+-]?\d+")


# ---- locating tables ---------------------------------------------------------------------

def find_table(root: str | Path, name: str) -> Path | None:
    """The single ``name.<format>`` file in ``root``, or None; several is an InputError."""
    root = Path(root)
    found = [root / f"{name}.{fmt}" for fmt in FORMATS if (root / f"{name}.{fmt}").is_file()]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise InputError(f"several {name} tables ({names}); keep exactly one", path=root)
    return found[0] if found else None


def is_canonical(path: str | Path) -> bool:
    """True when ``path`` is a directory holding an items table and an events table."""
    root = Path(path)
    if not root.is_dir():
        return False
    return all(any((root / f"{name}.{fmt}").is_file() for fmt in FORMATS) for name in ("items", "events"))


def _format_of(path: Path) -> str:
    return next(fmt for fmt in FORMATS if path.name.endswith("." + fmt))


# ---- reading -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Loc:
    """Where a record came from: a line (JSONL/CSV) or a row (Parquet)."""

    path: Path | None  # None: a record from no file (an HTTP request)
    line: int | None
    row: int

    def error(self, message: str, field: str | None = None) -> InputError:
        if self.line is None and self.path is not None:
            message = f"{message} (row {self.row})"
        return InputError(message, path=self.path, line=self.line, field=field)


@dataclass
class _Table:
    path: Path
    columns: set[str]  # every column/key seen
    records: list[tuple[_Loc, dict[str, Any]]]
    has_header: bool  # CSV and Parquet: a missing column is reported once, at the header
    header_line: int | None  # CSV: the line where the header ends


def read_canonical(path: str | Path) -> RawDataset:
    """Read a canonical directory into a validated ``RawDataset`` (format ``"canonical"``)."""
    root = Path(path)
    if not root.is_dir():
        raise InputError("not a directory (expected items.* and events.* inside)", path=root)
    items_path = find_table(root, "items")
    events_path = find_table(root, "events")
    for name, found in (("items", items_path), ("events", events_path)):
        if found is None:
            raise InputError(f"no {name} table ({name}.{{{','.join(FORMATS)}}})", path=root)
    assert items_path is not None and events_path is not None

    items_table = _read_table(items_path)
    items, item_lines = _parse_items(items_table)
    events_table = _read_table(events_path)
    events = _parse_events(events_table, item_lines)

    items_df = make_items(items)
    events_df = make_events(events)
    validate(items_df, events_df, source=str(root))  # a safety net: the checks above are stricter
    ignored = {
        "items": sorted(items_table.columns - set(ITEM_FIELDS)),
        "events": sorted(events_table.columns - set(EVENT_FIELDS)),
    }
    info = {"items_file": items_path.name, "events_file": events_path.name, "ignored_columns": ignored}
    return RawDataset(items=items_df, events=events_df, source=str(root), format="canonical", info=info)


def _read_table(path: Path) -> _Table:
    fmt = _format_of(path)
    if fmt == "parquet":
        return _read_parquet(path)
    data = _read_bytes(path)
    return _read_jsonl(path, data) if fmt.startswith("jsonl") else _read_csv(path, _decode(path, data))


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise InputError(f"not a valid gzip file ({err})", path=path) from None
    return data


def _decode(path: Path, data: bytes) -> str:
    """The whole text (CSV: a quoted field may span lines, so it is not read line by line)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputError(
            f"not UTF-8 (undecodable byte 0x{data[err.start]:02x} at offset {err.start})", path=path, line=line
        ) from None


def _read_jsonl(path: Path, data: bytes) -> _Table:
    records: list[tuple[_Loc, dict[str, Any]]] = []
    columns: set[str] = set()
    for lineno, line in text_lines(data, path):
        record = json_object(line, path, lineno)
        columns.update(record)
        records.append((_Loc(path, lineno, len(records) + 1), record))
    if not records:
        raise InputError("file is empty", path=path)
    return _Table(path, columns, records, has_header=False, header_line=None)


def _read_csv(path: Path, text: str) -> _Table:
    if not text.strip():
        raise InputError("file is empty", path=path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
        header_end = reader.line_num
        dup = sorted({h for h in header if header.count(h) > 1})
        if dup:
            raise InputError("duplicate column in header", path=path, line=header_end, field=dup[0])
        if "" in header:
            raise InputError(f"empty column name in header (column {header.index('') + 1})", path=path, line=header_end)
        records: list[tuple[_Loc, dict[str, Any]]] = []
        prev_end = header_end
        start = header_end + 1
        for row in reader:
            start = prev_end + 1  # a quoted field may span lines: report where the record starts
            prev_end = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            record = dict(zip(header, row, strict=False))
            if prev_end > start:  # the record ran over a line end inside quotes
                _check_single_line(record, path, start)
            if len(row) != len(header):
                raise InputError(f"row has {len(row)} fields, the header has {len(header)}", path=path, line=start)
            records.append((_Loc(path, start, len(records) + 1), record))
    except csv.Error as err:
        # where the broken record starts (an open quote swallows the lines after it)
        raise InputError(f"malformed CSV: {err}", path=path, line=prev_end + 1) from None
    if not records:
        raise InputError("no rows after the header", path=path, line=header_end)
    return _Table(path, set(header), records, has_header=True, header_line=header_end)


# Fields that can never hold a line break: a quote left open in one of them swallows the next
# records into it (two events merged, one dropped), so say where the quote opened instead.
_SINGLE_LINE_FIELDS = ("item_id", "user_id", "timestamp", "behavior", "query", "items")


def _check_single_line(record: dict[str, str], path: Path, start: int) -> None:
    for name in _SINGLE_LINE_FIELDS:
        value = record.get(name)
        if value is not None and ("\n" in value or "\r" in value):
            raise InputError("a quoted value runs over a line end (a quote opened on this line is not closed "
                             "where the value should end)", path=path, line=start, field=name)


def _read_parquet(path: Path) -> _Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as err:  # messages can span lines: keep the first
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"not a readable Parquet file ({first})", path=path) from None
    if table.num_rows == 0:
        raise InputError("file has no rows", path=path)
    rows = table.to_pylist()
    records = [(_Loc(path, None, i + 1), row) for i, row in enumerate(rows)]
    return _Table(path, set(table.column_names), records, has_header=True, header_line=None)


def _require_columns(table: _Table, required: tuple[str, ...]) -> None:
    """A header names its columns: report a missing one there (JSONL: each line is checked)."""
    if not table.has_header:
        return
    for name in required:
        if name not in table.columns:
            raise InputError("missing required column", path=table.path, line=table.header_line, field=name)


def _parse_items(table: _Table) -> tuple[list[dict[str, Any]], dict[str, _Loc]]:
    _require_columns(table, ("item_id",))
    out: list[dict[str, Any]] = []
    where: dict[str, _Loc] = {}
    for loc, rec in table.records:
        item_id = _id(rec, "item_id", loc, required=True)
        if item_id in where:
            first = where[item_id]
            at = f"line {first.line}" if first.line is not None else f"row {first.row}"
            raise loc.error(f"duplicate item id '{item_id}' (first at {at})", "item_id")
        where[item_id] = loc
        out.append(_item(rec, loc))
    return out, where


def _item(rec: dict[str, Any], loc: _Loc) -> dict[str, Any]:
    return {
        "item_id": _id(rec, "item_id", loc, required=True),
        "title": _text(rec.get("title"), "title", loc),
        "categories": _categories(rec.get("categories"), loc),
        "description": _text(rec.get("description"), "description", loc),
        "brand": _text(rec.get("brand"), "brand", loc),
    }


@dataclass(frozen=True)
class LocatedItem:
    """One item of an items file (canonical item columns), with where it came from."""

    item: dict[str, Any]
    path: Path
    line: int | None  # JSONL/CSV line; None for Parquet
    row: int  # 1-based record number

    def error(self, message: str, field: str | None = None) -> InputError:
        return _Loc(self.path, self.line, self.row).error(message, field)


def read_items_file(path: str | Path) -> list[LocatedItem]:
    """One items table (``items.*``'s format, any name ending in a supported extension), checked
    as ``read_canonical`` checks items, and stricter: an unknown field is an error, not ignored
    (items added to a trained catalog, ``gensar add-items``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    if not any(path.name.endswith("." + fmt) for fmt in FORMATS):
        raise InputError(f"unknown format (expected a name ending in .{', .'.join(FORMATS)})", path=path)
    table = _read_table(path)
    for loc, rec in table.records:
        unknown = sorted(set(rec) - set(ITEM_FIELDS))
        if unknown:
            if table.has_header:  # CSV, Parquet: the column is named once, in the header
                raise InputError(f"unknown column (items have {', '.join(ITEM_FIELDS)})", path=path,
                                 line=table.header_line, field=unknown[0])
            raise loc.error(f"unknown field (items have {', '.join(ITEM_FIELDS)})", unknown[0])
    items, where = _parse_items(table)
    return [LocatedItem(it, path, where[it["item_id"]].line, where[it["item_id"]].row) for it in items]


def parse_item(record: dict[str, Any]) -> dict[str, Any]:
    """One item record checked as in an items file, from no file (an ``InputError`` names the field)."""
    unknown = sorted(set(record) - set(ITEM_FIELDS))
    if unknown:
        raise InputError(f"unknown field (items have {', '.join(ITEM_FIELDS)})", field=unknown[0])
    return _item(record, _Loc(None, None, 0))


def _parse_events(table: _Table, known_items: dict[str, _Loc]) -> list[dict[str, Any]]:
    _require_columns(table, ("user_id", "timestamp"))
    if table.has_header and "items" not in table.columns and "item_id" not in table.columns:
        raise InputError("missing required column (give 'items' or 'item_id')", path=table.path,
                         line=table.header_line, field="items")
    is_csv = _format_of(table.path).startswith("csv")
    out: list[dict[str, Any]] = []
    for loc, rec in table.records:
        user_id = _id(rec, "user_id", loc, required=True)
        timestamp = _timestamp(rec.get("timestamp"), loc)
        behavior = _text(rec.get("behavior"), "behavior", loc).strip().lower() or REC
        if behavior not in BEHAVIORS:
            raise loc.error(f"behavior must be 'rec' or 'search', got '{behavior}'", "behavior")
        query = _text(rec.get("query"), "query", loc)
        if behavior == SEARCH and not query.strip():
            raise loc.error("a search event needs a non-empty query", "query")
        if behavior == REC and query.strip():
            raise loc.error("a rec event must not have a query (set behavior to 'search')", "query")
        query = query if behavior == SEARCH else ""
        items, field = _event_items(rec, loc, is_csv)
        if behavior == REC and len(items) != 1:
            raise loc.error(f"a rec event has exactly one item, got {len(items)}", field)
        for item in items:
            if item not in known_items:
                raise loc.error(f"unknown item '{item}' (not in the items table)", field)
        problem = event_problem(user_id, behavior, query, items)
        if problem is not None:
            raise loc.error(problem[1], problem[0])
        out.append({"user_id": user_id, "timestamp": timestamp, "behavior": behavior, "query": query, "items": items})
    return out


# ---- field converters --------------------------------------------------------------------

def _id(rec: dict[str, Any], field: str, loc: _Loc, required: bool) -> str:
    value = rec.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise loc.error("missing required value", field)
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise loc.error(f"expected a string id, got {type(value).__name__}", field)
    return str(value).strip()


def _text(value: Any, field: str, loc: _Loc) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise loc.error(f"expected a string, got {type(value).__name__}", field)
    return str(value)


def _categories(value: Any, loc: _Loc) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(CATEGORY_SEP.strip()) if part.strip()]
    if isinstance(value, (list, tuple)):
        out = []
        for part in value:
            if not isinstance(part, str):
                raise loc.error(f"expected a list of strings, found {type(part).__name__}", "categories")
            out.append(part)
        return out
    raise loc.error(f"expected a list of strings or a '{CATEGORY_SEP.strip()}' path, got {type(value).__name__}",
                    "categories")


def _timestamp(value: Any, loc: _Loc) -> int:
    ts = _timestamp_value(value, loc)
    if not -(2**63) <= ts < 2**63:  # stored as int64 (pandas, Parquet)
        raise loc.error(f"timestamp {ts} is out of range (must fit in 64 bits; seconds since 1970)", "timestamp")
    return ts


def _timestamp_value(value: Any, loc: _Loc) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise loc.error("missing required value", "timestamp")
    if isinstance(value, bool):
        raise loc.error(f"timestamp must be an integer, got {value!r}", "timestamp")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value.strip())
    raise loc.error(f"timestamp must be an integer, got {value!r}", "timestamp")


def _event_items(rec: dict[str, Any], loc: _Loc, is_csv: bool) -> tuple[list[str], str]:
    """The clicked items of an event and the field they came from."""
    raw_items = rec.get("items")
    has_items = raw_items is not None and not (isinstance(raw_items, str) and not raw_items.strip())
    has_single = _id(rec, "item_id", loc, required=False) != ""
    if has_items and has_single:
        raise loc.error("give either 'items' or 'item_id', not both", "items")
    if not has_items and not has_single:
        raise loc.error("missing required value (give 'items' or 'item_id')", "items")
    if has_single:
        return [_id(rec, "item_id", loc, required=True)], "item_id"
    if is_csv:
        items = str(raw_items).split()
    elif isinstance(raw_items, (list, tuple)):
        items = []
        for value in raw_items:
            if value is None or isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
                raise loc.error(f"expected a list of item ids, found {value!r}", "items")
            items.append(str(value).strip())
    else:
        raise loc.error(f"expected a list of item ids, got {type(raw_items).__name__}", "items")
    if not items:
        raise loc.error("empty list of items", "items")
    if len(set(items)) != len(items):
        repeated = next(i for i in items if items.count(i) > 1)
        raise loc.error(f"item '{repeated}' is listed twice", "items")
    return items, "items"
