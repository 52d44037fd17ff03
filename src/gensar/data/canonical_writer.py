"""Writing canonical files (the format is described in ``gensar.data.canonical``, which reads them).

Whatever is written here reads back through ``read_canonical`` to the same tables: ids the
reader would strip, and CSV values its splitting would change, are refused with an ``InputError``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from gensar.data.canonical import CATEGORY_SEP, EVENT_FIELDS, FORMATS, ITEM_FIELDS
from gensar.data.schema import REC, RawDataset, make_events, make_items, validate
from gensar.errors import GensarError, InputError
from gensar.io import atomic_dir


def write_canonical(
    raw_or_items: RawDataset | pd.DataFrame,
    events: pd.DataFrame | None,
    out_dir: str | Path,
    fmt: str = "jsonl",
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``items.<fmt>`` and ``events.<fmt>`` into ``out_dir`` atomically.

    Pass either a ``RawDataset`` and ``events=None``, or an items table and an events table.
    A non-empty ``out_dir`` is refused unless ``overwrite``.
    """
    items, events = _tables(raw_or_items, events)
    _check_format(fmt)
    with atomic_dir(out_dir, overwrite=overwrite, kind="canonical") as tmp:
        write_tables(items, events, tmp, fmt)
    return Path(out_dir)


def write_tables(items: pd.DataFrame, events: pd.DataFrame, directory: str | Path, fmt: str = "jsonl") -> None:
    """Write both tables into an existing directory (not atomic: use inside ``io.atomic_dir``)."""
    _check_format(fmt)
    items = make_items(items)
    events = make_events(events)
    validate(items, events)  # never write what read_canonical would reject
    rec = events["behavior"] == REC
    if (events.loc[rec, "items"].map(len) != 1).any() or (events.loc[rec, "query"] != "").any():
        raise InputError("a rec event must have exactly one item and no query", field="items")
    # the reader strips ids, so an id it would change cannot be written faithfully
    for field, ids in (("item_id", items["item_id"]), ("user_id", events["user_id"])):
        bad = [x for x in ids if not x.strip() or x != x.strip()]
        if bad:
            raise InputError(f"id '{bad[0]}' is empty or has surrounding whitespace", field=field)
    directory = Path(directory)
    item_rows = [
        {"item_id": r.item_id, "title": r.title, "categories": list(r.categories),
         "description": r.description, "brand": r.brand}
        for r in items.itertuples(index=False)
    ]
    event_rows = [
        {"user_id": r.user_id, "timestamp": int(r.timestamp), "behavior": r.behavior, "query": r.query,
         "items": list(r.items)}
        for r in events.itertuples(index=False)
    ]
    for name, rows, columns in (("items", item_rows, ITEM_FIELDS), ("events", event_rows, EVENT_FIELDS[:-1])):
        path = directory / f"{name}.{fmt}"
        if fmt == "parquet":
            _write_parquet(path, name, rows)
            continue
        text = _jsonl_text(rows) if fmt.startswith("jsonl") else _csv_text(rows, columns)
        data = text.encode("utf-8")
        if fmt.endswith(".gz"):
            data = gzip.compress(data, mtime=0)  # mtime=0: same input, same bytes
        path.write_bytes(data)


def _tables(raw_or_items: RawDataset | pd.DataFrame, events: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    if isinstance(raw_or_items, RawDataset):
        if events is not None:
            raise GensarError("write_canonical: pass a RawDataset with events=None, or two tables")
        return raw_or_items.items, raw_or_items.events
    if events is None:
        raise GensarError("write_canonical: an items table needs an events table")
    return raw_or_items, events


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise GensarError(f"unknown canonical format '{fmt}' (choose from {', '.join(FORMATS)})")


def _jsonl_text(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _csv_text(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    # QUOTE_MINIMAL only quotes characters of the line terminator, so a bare "\r" would end the
    # record on reading: rows holding one are written fully quoted
    quote_all = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(columns)
    for row in rows:
        out = []
        for col in columns:
            value = row[col]
            if col == "categories":
                for part in value:
                    if CATEGORY_SEP.strip() in part or part != part.strip() or not part:
                        raise InputError(f"category '{part}' cannot be written to CSV (empty, contains '>' or "
                                         "edge whitespace); use jsonl or parquet", field="categories")
                value = CATEGORY_SEP.join(value)
            elif col == "items":
                for item in value:
                    if item != "".join(item.split()):
                        raise InputError(f"item id '{item}' contains whitespace and cannot be written to a CSV "
                                         "'items' column; use jsonl or parquet", field="items")
                value = " ".join(value)
            out.append(value)
        (quote_all if any("\r" in str(v) for v in out) else writer).writerow(out)
    return buf.getvalue()


def _write_parquet(path: Path, name: str, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if name == "items":
        schema = pa.schema([("item_id", pa.string()), ("title", pa.string()), ("categories", pa.list_(pa.string())),
                            ("description", pa.string()), ("brand", pa.string())])
    else:
        schema = pa.schema([("user_id", pa.string()), ("timestamp", pa.int64()), ("behavior", pa.string()),
                            ("query", pa.string()), ("items", pa.list_(pa.string()))])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
