"""Amazon Reviews JSON lines (McAuley et al. 2014 and Ni et al. 2018), plain or gzip.

The source is a directory with exactly one reviews file and one metadata file (``meta_*``), each
``*.json``, ``*.jsonl`` or either plus ``.gz`` (gzip is recognized by its magic bytes).

reviews   one object per line with ``reviewerID``, ``asin``, ``unixReviewTime`` (both years).
metadata  2014: ``asin, title, categories: [[root, ..., leaf], ...], description: str, brand``,
          often written as Python dict literals (``{'asin': ...}``), read with ``ast.literal_eval``;
          2018: JSON ``asin, title, category: [root, ..., leaf], description: [str, ...], brand``.

Reviews are streamed first (kept as integer codes), then the metadata is streamed keeping only
reviewed items, so a multi-GB dump never sits in memory as text. Reviews of items without
metadata are dropped and counted in ``info``. HTML tags and entities are removed from titles and
descriptions (entities also from brand and category names). 2014 items with several category
paths keep the first. Repeated metadata lines for one asin are skipped when identical (the 2018
dumps contain such repeats) and rejected when they differ.
"""

from __future__ import annotations

import ast
import html
import json
import re
from array import array
from pathlib import Path

import numpy as np
import pandas as pd

from gensar.data.loaders._common import finish, iter_lines
from gensar.data.schema import RawDataset
from gensar.errors import InputError

JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
REVIEW_FIELDS = ("reviewerID", "asin", "unixReviewTime")

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def strip_html(text: str) -> str:
    """Remove tags, decode entities, collapse whitespace: '<b>Saw</b>&amp;Co' -> 'Saw &Co'."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()


def find_amazon_files(source: str | Path) -> tuple[Path, Path]:
    """(reviews file, metadata file) in the directory ``source``."""
    path = Path(source)
    if not path.is_dir():
        raise InputError("an Amazon source is a directory with a reviews file and a meta_* file", path=path)
    found = sorted(f for f in path.iterdir() if f.is_file() and f.name.lower().endswith(JSON_SUFFIXES))
    meta = [f for f in found if f.name.lower().startswith("meta_")]
    reviews = [f for f in found if not f.name.lower().startswith("meta_")]
    wanted = "/".join("*" + s for s in JSON_SUFFIXES)
    if not meta:
        raise InputError(f"no Amazon metadata file (meta_{wanted})", path=path)
    if len(meta) > 1:
        raise InputError(f"several metadata files ({', '.join(f.name for f in meta)}); keep one", path=path)
    if not reviews:
        raise InputError(f"no Amazon reviews file ({wanted} not starting with meta_)", path=path)
    if len(reviews) > 1:
        raise InputError(f"several reviews files ({', '.join(f.name for f in reviews)}); keep one", path=path)
    return reviews[0], meta[0]


def looks_like_amazon(source: str | Path) -> bool:
    try:
        find_amazon_files(source)
    except InputError:
        return False
    return True


def parse_record(text: str, path: Path, line: int) -> dict:
    """One line as a dict: JSON, else a Python dict literal (2014 metadata dumps)."""
    try:
        record = json.loads(text)
    except RecursionError:
        raise InputError("malformed line: JSON nested too deeply", path=path, line=line) from None
    except ValueError:
        try:
            record = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise InputError(
                "malformed line: neither JSON nor a Python dict literal", path=path, line=line
            ) from None
    if not isinstance(record, dict):
        raise InputError(f"expected an object, got {type(record).__name__}", path=path, line=line)
    return record


def _text(record: dict, key: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if isinstance(value, list):  # 2018 description: list of paragraphs
        return " ".join(str(v) for v in value if v is not None)
    return str(value)


def _categories(record: dict) -> list[str]:
    value = record.get("categories", record.get("category"))
    if not isinstance(value, list) or not value:
        return []
    if all(isinstance(v, list) for v in value):  # 2014: several paths, keep the first non-empty
        value = next((v for v in value if v), [])
    names = (strip_html(str(c)) for c in value if c is not None)
    return [c for c in names if c]


def item_record(record: dict) -> dict:
    return {
        "item_id": str(record["asin"]).strip(),
        "title": strip_html(_text(record, "title")),
        "categories": _categories(record),
        "description": strip_html(_text(record, "description")),
        "brand": strip_html(_text(record, "brand")),
    }


def load_amazon(source: str | Path) -> RawDataset:
    reviews_path, meta_path = find_amazon_files(source)

    user_code: dict[str, int] = {}
    item_code: dict[str, int] = {}
    users, items, times = array("q"), array("q"), array("q")  # int64 codes: compact for 10^8 reviews
    for lineno, text in iter_lines(reviews_path, desc="reviews"):
        record = parse_record(text, reviews_path, lineno)
        for name in REVIEW_FIELDS:
            if record.get(name) in (None, ""):
                raise InputError("missing required field", path=reviews_path, line=lineno, field=name)
        try:
            stamp = int(record["unixReviewTime"])
        except (TypeError, ValueError):
            raise InputError(
                f"expected an integer, got {record['unixReviewTime']!r}",
                path=reviews_path,
                line=lineno,
                field="unixReviewTime",
            ) from None
        users.append(user_code.setdefault(str(record["reviewerID"]).strip(), len(user_code)))
        items.append(item_code.setdefault(str(record["asin"]).strip(), len(item_code)))
        times.append(stamp)

    kept: dict[str, tuple[dict, int]] = {}  # asin -> (item record, line)
    repeats = 0
    for lineno, text in iter_lines(meta_path, desc="metadata"):
        record = parse_record(text, meta_path, lineno)
        if record.get("asin") in (None, ""):
            raise InputError("missing required field", path=meta_path, line=lineno, field="asin")
        asin = str(record["asin"]).strip()
        if asin not in item_code:
            continue
        item = item_record(record)
        if asin in kept:
            first, first_line = kept[asin]
            if first != item:
                raise InputError(
                    f"duplicate item id '{asin}' with different metadata (first on line {first_line})",
                    path=meta_path,
                    line=lineno,
                    field="asin",
                )
            repeats += 1
            continue
        kept[asin] = (item, lineno)
    if not kept:
        raise InputError(f"no reviewed item has metadata in {meta_path.name}", path=reviews_path)

    item_names = np.asarray(list(item_code), dtype=object)
    has_meta = np.asarray([name in kept for name in item_code], dtype=bool)
    item_arr = np.frombuffer(items, dtype=np.int64)
    keep = has_meta[item_arr]
    user_names = np.asarray(list(user_code), dtype=object)
    events = pd.DataFrame(
        {
            "user_id": user_names[np.frombuffer(users, dtype=np.int64)[keep]],
            "timestamp": np.frombuffer(times, dtype=np.int64)[keep],
            "items": [[name] for name in item_names[item_arr[keep]]],
        }
    )
    info = {
        "reviews_file": reviews_path.name,
        "meta_file": meta_path.name,
        "reviews": len(items),
        "interactions_without_metadata": int((~keep).sum()),
        "items_without_metadata": int((~has_meta).sum()),
        "repeated_metadata_lines": repeats,
    }
    return finish([item for item, _ in kept.values()], events, source=source, format="amazon", info=info)
