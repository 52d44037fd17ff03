"""Hold a seeded fraction of a dataset's items out, for ``bench_cold_items.py`` (issue 16 sections 1-3).

    python benchmarks/hold_out_items.py ../shared/data/amazon-scientific runs/sci-coldsplit --fraction 0.1

Reads any format ``gensar prepare`` reads and writes canonical files: ``OUT/warm`` (every item but
the held-out ones, every event naming none of them: train a run on it with ``--set
data.source=OUT/warm --set data.format=canonical``) and ``OUT/cold`` (the held-out items and the
events naming them: ``bench_cold_items.py RUN OUT/cold/items.jsonl OUT/cold/events.jsonl``).
OUT is written atomically (complete or absent); an existing non-empty OUT is refused (exit 2)
unless this script wrote it and ``--overwrite`` is given. An
event naming a held-out item and a kept one (a search session clicking both) is refused too: the
cold files must read back on their own; ``--drop-mixed`` leaves such events out of both halves
instead (counted in the summary line).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from gensar.data.canonical_writer import write_tables
from gensar.data.loaders import load_dataset
from gensar.errors import GensarError
from gensar.io import atomic_dir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source")
    p.add_argument("out", type=Path)
    p.add_argument("--fraction", type=float, default=0.1, help="share of the items held out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an OUT this script wrote before")
    p.add_argument("--drop-mixed", action="store_true", help="leave out of both halves the events naming a "
                   "held-out item and a kept one (else refused)")
    args = p.parse_args()
    if not 0 < args.fraction < 1:
        p.error("--fraction must lie strictly between 0 and 1")
    try:
        _split(args)
    except GensarError as e:
        print(f"hold_out_items: {e}", file=sys.stderr)
        sys.exit(2)


def _split(args: argparse.Namespace) -> None:
    raw = load_dataset(args.source)
    items, events = raw.items, raw.events
    ids = items["item_id"].to_numpy()
    held = set(np.random.default_rng(args.seed).choice(ids, size=max(1, round(args.fraction * len(ids))),
                                                       replace=False).tolist())
    names_held = events["items"].map(lambda its: any(i in held for i in its))
    mixed = events["items"].map(lambda its: any(i in held for i in its) and any(i not in held for i in its))
    if mixed.any() and args.drop_mixed:
        events, names_held = events[~mixed], names_held[~mixed]
    elif mixed.any():
        raise GensarError(f"{int(mixed.sum())} events name a held-out item and a kept one (first: user "
                          f"{events.loc[mixed, 'user_id'].iloc[0]}): not supported")
    is_held = items["item_id"].isin(held)
    with atomic_dir(args.out, overwrite=args.overwrite, kind="hold-out") as tmp:  # both halves or neither
        for name, keep in (("warm", ~is_held), ("cold", is_held)):
            (tmp / name).mkdir()
            chosen = names_held if name == "cold" else ~names_held
            write_tables(items[keep], events[chosen], tmp / name)
    dropped = f"; {int(mixed.sum())} naming both left out" if args.drop_mixed else ""
    print(f"{len(items)} items, {len(held)} held out; {len(events)} events, {int(names_held.sum())} naming one"
          f"{dropped}")


if __name__ == "__main__":
    main()
