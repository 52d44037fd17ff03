"""``gensar add-items RUN ITEMS_FILE``: add items to a trained run without a server (or retraining).

The same steps as ``POST /items`` (``Service.add_items``), without loading a model: read and check
the file (canonical items format, unknown fields refused), check it against the run's catalog (the
prepared items and every item added before), give each item identifiers from the run's ID stage,
then append one record to the items log. Everything is checked before the log is opened, so bad
input changes nothing (not even an absent log is created). The log's lock keeps this command and a
server from both writing; a server running on the run refuses it, and the items then go through
its ``POST /items``.
"""

from __future__ import annotations

from pathlib import Path

from gensar.data.canonical import read_items_file
from gensar.data.prepared import PreparedData
from gensar.data.schema import make_items
from gensar.errors import GensarError
from gensar.ids.cold_start import ColdStartConfig
from gensar.ids.extend import IdExtender
from gensar.serve.catalog import run_catalog
from gensar.serve.items_log import ITEMS_LOG_NAME, AddedItems, ItemsLog, read_items_log

__all__ = ["add_items_file"]


def add_items_file(run_dir: str | Path, items_file: str | Path, items_log: str | Path | None = None,
                   cold: ColdStartConfig = ColdStartConfig()) -> tuple[AddedItems, int]:
    """Add the items of ``items_file`` to the run; (the record written, items in the catalog now)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise GensarError(f"{run_dir}: run directory not found")
    log_path = Path(items_log) if items_log is not None else run_dir / ITEMS_LOG_NAME
    located = read_items_file(items_file)  # the file alone first: its errors need no run
    items = [loc.item for loc in located]
    catalog = run_catalog(run_dir, PreparedData.load(run_dir / "data"))  # with its cold items, if any
    catalog.require_ids()
    before = read_items_log(log_path).records
    catalog.replay(before, log_path)
    problem = catalog.item_problem(items)
    if problem is not None:
        raise located[problem.position].error(problem.message, problem.field)
    extender = IdExtender.from_dir(run_dir / "ids", catalog.prepared, catalog.vocabulary, cold)
    ids = extender.assign(make_items(items), catalog.data.items, catalog.require_ids())
    writer = ItemsLog(log_path)  # the lock: a server (or another add-items) on this log refuses us here
    try:
        if len(writer.records) != len(before):
            raise GensarError(f"{log_path}: items were added while this command ran; run it again")
        record = writer.append(items, ids, then=lambda r: None)
    finally:
        writer.close()
    return record, catalog.size + len(items)
