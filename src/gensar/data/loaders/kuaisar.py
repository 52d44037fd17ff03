"""KuaiSAR (Sun et al., CIKM 2023): real search and recommendation logs from Kuaishou.

The source is a directory with ``item_features.csv`` and at least one of ``rec_inter.csv`` /
``src_inter.csv`` (comma-separated, header row; see https://kuaisar.github.io):

rec_inter.csv      user_id, item_id, timestamp (Unix ms), click, ... -> a "rec" event per row
                   with click == 1.
src_inter.csv      user_id, search_session_id, search_session_timestamp (Unix ms), keyword
                   ("[20, 34, 3]": anonymized token ids), item_id, click_cnt, [item_type] ->
                   one "search" event per session (user, session id) whose items are the rows
                   with click_cnt > 0 in file order (repeats removed). When item_type is present
                   only VIDEO and IMAGE_ATLAS clicks are kept: the other types (live streams,
                   user profiles, ...) are not items of the recommender and have no features.
                   Sessions left without clicks, or with an empty keyword, are dropped.
item_features.csv  item_id, caption (token id list), and whichever category name columns of
                   ``CATEGORY_COLUMNS`` exist (English names, first level first; the
                   placeholders "empty"/"unknown" are skipped).

Token ids become words ``w<id>``: the query is the keyword words, the title the caption words.
Only items named by a kept event are read into memory; an event naming an item that
item_features.csv lacks is an error located at the event's line.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from gensar.data.loaders._common import TableFile, finish, parse_int
from gensar.data.schema import REC, SEARCH, RawDataset
from gensar.errors import InputError

REC_FILE = "rec_inter.csv"
SRC_FILE = "src_inter.csv"
ITEM_FILE = "item_features.csv"
CATEGORY_COLUMNS = (
    "first_level_category_name_en",
    "second_level_category_name_en",
    "third_level_category_name_en",
    "fourth_level_category_name_en",
)
RECOMMENDABLE_TYPES = frozenset({"VIDEO", "IMAGE_ATLAS"})
_PLACEHOLDERS = frozenset({"", "empty", "unknown", "nan", "null", "none"})


class CsvFile(TableFile):
    """A comma-separated file with a header row (fields quoted only where needed)."""

    separator_name = "comma-separated"

    def split(self, text: str, line: int) -> list[str]:
        if '"' not in text:  # fast path: most rows have no quoted field
            return text.split(",")
        try:
            return next(csv.reader([text]))
        except csv.Error as err:
            raise InputError(f"malformed CSV line ({err})", path=self.path, line=line) from None


def token_words(value: str, path: Path, line: int, field: str) -> list[str]:
    """'[20, 34, 3]' -> ['w20', 'w34', 'w3']."""
    text = value.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise InputError(
            f"expected a token id list like [12, 5], got '{value}'", path=path, line=line, field=field
        )
    words = []
    for token in text[1:-1].split(","):
        token = token.strip()
        if not token:
            continue
        if not token.isdigit():
            raise InputError(
                f"expected a token id list like [12, 5], got '{value}'", path=path, line=line, field=field
            )
        words.append(f"w{int(token)}")
    return words


def _require_id(value: str, path: Path, line: int, field: str) -> str:
    value = value.strip()
    if not value:
        raise InputError("empty id", path=path, line=line, field=field)
    return value


def looks_like_kuaisar(source: str | Path) -> bool:
    path = Path(source)
    return (
        path.is_dir()
        and (path / ITEM_FILE).is_file()
        and ((path / REC_FILE).is_file() or (path / SRC_FILE).is_file())
    )


def load_kuaisar(source: str | Path) -> RawDataset:
    root = Path(source)
    if not looks_like_kuaisar(root):
        raise InputError(
            f"a KuaiSAR source is a directory with {ITEM_FILE} and {REC_FILE} and/or {SRC_FILE}", path=root
        )
    info: dict = {}
    # rec events as columns (tens of millions of rows: no dict per row)
    rec_users: list[str] = []
    rec_times: list[int] = []
    rec_items: list[str] = []
    search: list[dict] = []
    first_use: dict[str, tuple[Path, int]] = {}  # item -> where an event first names it

    rec_path = root / REC_FILE
    if rec_path.is_file():
        f = CsvFile(rec_path)
        f.require("user_id", "item_id", "timestamp", "click")
        cu, ci, ct, cc = (f.columns[c] for c in ("user_id", "item_id", "timestamp", "click"))
        n_rows = 0
        for lineno, fields in f.rows():
            n_rows += 1
            if parse_int(fields[cc], rec_path, lineno, "click") != 1:
                continue
            item = _require_id(fields[ci], rec_path, lineno, "item_id")
            first_use.setdefault(item, (rec_path, lineno))
            rec_users.append(_require_id(fields[cu], rec_path, lineno, "user_id"))
            rec_times.append(parse_int(fields[ct], rec_path, lineno, "timestamp"))
            rec_items.append(item)
        info.update(rec_rows=n_rows, rec_clicks=len(rec_items))

    src_path = root / SRC_FILE
    if src_path.is_file():
        f = CsvFile(src_path)
        f.require(
            "user_id", "search_session_id", "search_session_timestamp", "keyword", "item_id", "click_cnt"
        )
        cu, cs, ct, ck, ci, cc = (
            f.columns[c]
            for c in (
                "user_id",
                "search_session_id",
                "search_session_timestamp",
                "keyword",
                "item_id",
                "click_cnt",
            )
        )
        ctype = f.columns.get("item_type")
        sessions: dict[tuple[str, str], dict] = {}
        other_type_clicks = 0
        for lineno, fields in f.rows():
            user = _require_id(fields[cu], src_path, lineno, "user_id")
            key = (user, _require_id(fields[cs], src_path, lineno, "search_session_id"))
            session = sessions.get(key)
            if session is None:
                session = sessions[key] = {
                    "user_id": user,
                    "timestamp": parse_int(fields[ct], src_path, lineno, "search_session_timestamp"),
                    "behavior": SEARCH,
                    "query": " ".join(token_words(fields[ck], src_path, lineno, "keyword")),
                    "items": [],
                }
            if parse_int(fields[cc], src_path, lineno, "click_cnt") <= 0:
                continue
            if ctype is not None and fields[ctype].strip().upper() not in RECOMMENDABLE_TYPES:
                other_type_clicks += 1
                continue
            item = _require_id(fields[ci], src_path, lineno, "item_id")
            if item not in session["items"]:
                session["items"].append(item)
                first_use.setdefault(item, (src_path, lineno))
        clicked = [s for s in sessions.values() if s["items"]]
        kept = [s for s in clicked if s["query"]]
        search = kept
        info.update(
            search_sessions=len(sessions),
            search_sessions_without_click=len(sessions) - len(clicked),
            search_sessions_empty_keyword=len(clicked) - len(kept),
            search_clicks_other_item_types=other_type_clicks,
        )
        # items named only by dropped sessions are not needed
        needed = set(rec_items).union(*(s["items"] for s in search))
        first_use = {i: where for i, where in first_use.items() if i in needed}

    item_path = root / ITEM_FILE
    f = CsvFile(item_path)
    f.require("item_id", "caption")
    category_columns = [c for c in CATEGORY_COLUMNS if c in f.columns]
    info["category_columns"] = category_columns
    records: dict[str, dict] = {}
    first_line: dict[str, int] = {}
    for lineno, fields in f.rows():
        item = _require_id(fields[f.columns["item_id"]], item_path, lineno, "item_id")
        if item not in first_use:
            continue
        if item in first_line:
            raise InputError(
                f"duplicate item id '{item}' (first on line {first_line[item]})",
                path=item_path,
                line=lineno,
                field="item_id",
            )
        first_line[item] = lineno
        cats = [fields[f.columns[c]].strip() for c in category_columns]
        records[item] = {
            "item_id": item,
            "title": " ".join(token_words(fields[f.columns["caption"]], item_path, lineno, "caption")),
            "categories": [c for c in cats if c.lower() not in _PLACEHOLDERS],
        }
    missing = [(where, item) for item, where in first_use.items() if item not in records]
    if missing:
        (path, line), item = min(missing, key=lambda m: (m[0][0] != rec_path, m[0][1]))
        raise InputError(
            f"interaction names unknown item '{item}' (not in {ITEM_FILE})",
            path=path,
            line=line,
            field="item_id",
        )
    if not rec_items and not search:
        raise InputError("no clicked recommendation or search interaction", path=root)
    events = pd.DataFrame(
        {
            "user_id": rec_users + [s["user_id"] for s in search],
            "timestamp": rec_times + [s["timestamp"] for s in search],
            "behavior": [REC] * len(rec_items) + [SEARCH] * len(search),
            "query": [""] * len(rec_items) + [s["query"] for s in search],
            "items": [[i] for i in rec_items] + [s["items"] for s in search],
        }
    )
    return finish(list(records.values()), events, source=source, format="kuaisar", info=info)
