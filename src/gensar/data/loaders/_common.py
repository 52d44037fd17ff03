"""Plumbing shared by the loaders: streaming line reads with progress, and final assembly.

Every loader reads its files line by line through :func:`iter_lines` (so multi-GB dumps never sit
in memory and an undecodable byte is reported with its line), and ends with :func:`finish`, which
drops items nobody interacted with, builds the canonical tables and validates them.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from gensar.data.schema import RawDataset, make_events, make_items, validate
from gensar.errors import InputError
from gensar.io import text_lines

GZIP_MAGIC = b"\x1f\x8b"
_PROGRESS_EVERY = 1 << 15  # lines between progress-bar refreshes (tell() is not free on gzip)


def is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes (the extension is not trusted)."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def iter_lines(path: str | Path, desc: str | None = None) -> Iterator[tuple[int, str]]:
    """Yield ``(1-based line number, text)`` for each non-blank line of a plain or gzip file.

    Lines are decoded one at a time by ``gensar.io.text_lines`` (a bad byte is reported with its
    line number; a UTF-8 BOM and the line break are removed). Raises ``InputError`` when the file
    has no non-blank line.
    """
    path = Path(path)
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the with-block below
    except OSError as err:
        raise InputError(f"cannot open ({err.strerror})", path=path) from None
    with raw:
        gz = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if gz else raw
        size = os.fstat(raw.fileno()).st_size
        seen = False
        lineno = 0  # lines read so far: a gzip error is in the next one
        with tqdm(
            total=size, unit="B", unit_scale=True, desc=desc or path.name, disable=None, leave=False
        ) as bar:

            def counted() -> Iterator[bytes]:
                nonlocal lineno
                for lineno, data in enumerate(stream, 1):
                    if lineno % _PROGRESS_EVERY == 0:
                        bar.update(raw.tell() - bar.n)
                    yield data

            try:
                for lineno_text in text_lines(counted(), path):
                    seen = True
                    yield lineno_text
            except (OSError, EOFError, zlib.error) as err:
                raise InputError(
                    f"corrupt or truncated gzip data ({err})", path=path, line=lineno + 1
                ) from None
    if not seen:
        raise InputError("empty file", path=path)


class TableFile:
    """A delimited text file whose first non-blank line is a header of column names.

    Subclasses define how a line splits into fields (``split``) and how the header names
    columns (``parse_header``). ``rows()`` checks the field count of every line.
    """

    separator_name = "tab-separated"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lines = iter_lines(path)
        _, header = next(self._lines)  # iter_lines raises "empty file" itself
        self.columns: dict[str, int] = {}
        for pos, name in enumerate(self.parse_header(header)):
            if name in self.columns:
                raise InputError("duplicate header column", path=path, line=1, field=name)
            self.columns[name] = pos

    def split(self, text: str, line: int) -> list[str]:
        return text.split("\t")

    def parse_header(self, header: str) -> list[str]:
        return [name.strip() for name in self.split(header, 1)]

    def require(self, *names: str) -> None:
        for name in names:
            if name not in self.columns:
                raise InputError("missing required column", path=self.path, line=1, field=name)

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """``(line number, fields)`` for each data line; a header-only file is an error."""
        n = len(self.columns)
        count = 0
        for lineno, text in self._lines:
            fields = self.split(text, lineno)
            if len(fields) != n:
                raise InputError(
                    f"expected {n} {self.separator_name} fields, got {len(fields)}",
                    path=self.path,
                    line=lineno,
                )
            count += 1
            yield lineno, fields
        if count == 0:
            raise InputError("no rows after the header", path=self.path, line=1)


def parse_int(value: str, path: Path, line: int, field: str) -> int:
    """An integer field; floats such as '1.684742e+12' (pandas-written ids/timestamps) are rounded."""
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise InputError(f"expected a number, got '{value}'", path=path, line=line, field=field) from None
    if not math.isfinite(number):
        raise InputError(f"expected a finite number, got '{value}'", path=path, line=line, field=field)
    return round(number)


def finish(
    item_records: list[dict],
    events: pd.DataFrame,
    *,
    source: str | Path,
    format: str,
    info: dict,
) -> RawDataset:
    """Keep items that occur in ``events`` (in ``item_records`` order), normalize and validate.

    ``info`` gains counts: users, items, events, interactions (item clicks; a search session
    counts its clicked items), and items_without_interactions (dropped here).
    """
    used = {item for items in events["items"] for item in items}
    kept = [r for r in item_records if r["item_id"] in used]
    items_df = make_items(kept) if kept else make_items(pd.DataFrame(columns=["item_id"]))
    events_df = make_events(events)
    validate(items_df, events_df, str(source))
    info = dict(info)
    info.update(
        users=int(events_df["user_id"].nunique()),
        items=len(items_df),
        events=len(events_df),
        interactions=int(sum(len(x) for x in events_df["items"])),
        items_without_interactions=len(item_records) - len(kept),
    )
    return RawDataset(items=items_df, events=events_df, source=str(source), format=format, info=info)
