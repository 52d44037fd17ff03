"""``gensar synth``, ``gensar prepare`` and ``gensar stats``: the data stage's commands.

The work is in ``gensar.data.synth`` (the synthetic world), ``gensar.data.prepare`` (raw log ->
prepared directory) and ``gensar.data.stats``; these handlers read the flags and write the output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from gensar.config import load_config
from gensar.data.canonical_writer import write_tables
from gensar.data.prepare import PrepareConfig, prepare
from gensar.data.prepared import SPLITS, PreparedData
from gensar.data.schema import BEHAVIORS, SEARCH
from gensar.data.stats import compute_stats, format_stats
from gensar.data.synth import SynthConfig, generate_world
from gensar.io import atomic_dir, check_output_dir
from gensar.ownership import refuse_output_over_input


def cli_synth(args: argparse.Namespace) -> int:
    """``gensar synth``: write a synthetic world as canonical JSONL files (+ world.json truth)."""
    overrides = list(args.overrides)
    flags = (("n_users", args.users), ("n_items", args.items), ("seed", args.seed),
             ("query_source", args.query_source))
    for key, value in flags:
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(SynthConfig, args.config, overrides)
    out = Path(args.out)
    if args.config:
        refuse_output_over_input([("--out", out)], [("--config", args.config)])
    check_output_dir(out, args.overwrite)  # fail before spending time on generation
    start = time.perf_counter()
    raw = generate_world(cfg)
    with atomic_dir(out, overwrite=args.overwrite, kind="synth") as tmp:
        write_tables(raw.items, raw.events, tmp, "jsonl")
        truth = {
            "generator": "gensar synth",
            "config": raw.info["config"],
            "item_group": dict(zip(raw.items["item_id"], raw.info["item_group"], strict=True)),
            "user_preferred": raw.info["user_preferred"],
        }
        (tmp / "world.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    n_search = int((raw.events["behavior"] == SEARCH).sum())
    print(f"wrote {out}: {len(raw.items):,} items, {raw.events['user_id'].nunique():,} users, "
          f"{len(raw.events):,} events ({n_search / len(raw.events):.0%} search) in "
          f"{time.perf_counter() - start:.1f}s")
    return 0


def config_from_args(args: argparse.Namespace) -> PrepareConfig:
    """YAML (--config), then --set overrides, then the explicit flags, which win."""
    cfg = load_config(PrepareConfig, args.config, args.overrides)
    flags = {
        "search_protocol": args.search_protocol,
        "search_ratio": args.search_ratio,
        "seed": args.seed,
        "max_history": args.max_history,
        "kcore": args.kcore,
        "num_negatives": args.num_negatives,
        "query_source": args.query_source,
        "cold_items": args.cold_items,
    }
    cfg = dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    cfg.validate()
    return cfg


def short_lists_warning(manifest: dict) -> None:
    """Say on stderr when candidate lists hold fewer negatives than asked (a small catalog):
    metrics over them are not comparable with the full-size protocol."""
    cands = manifest.get("candidates", {})
    short = int(cands.get("short_lists", 0))
    if short:
        print(f"gensar prepare: warning: {short} of {cands.get('lists', '?')} candidate lists have fewer than "
              f"--num-negatives {cands.get('num_negatives', '?')} negatives (as few as "
              f"{cands.get('min_negatives', '?')}; the catalog has {manifest['counts']['catalog_items']} items)",
              file=sys.stderr)


def cli_prepare(args: argparse.Namespace) -> int:
    from gensar.data.loaders import load_dataset

    cfg = config_from_args(args)
    inputs = [("SOURCE", args.source)] + ([("--config", args.config)] if args.config else [])
    refuse_output_over_input([("--out", args.out)], inputs)
    check_output_dir(args.out, args.overwrite)  # fail before the slow part
    start = time.perf_counter()
    raw = load_dataset(args.source, args.format)
    data = prepare(raw, cfg, progress=sys.stderr.isatty())
    data.save(args.out, overwrite=args.overwrite)
    short_lists_warning(data.manifest)
    c = data.manifest["counts"]
    ex = c["examples"]
    print(
        f"prepared {args.out} from {raw.source} ({raw.format}, protocol {data.manifest['search_protocol']}, "
        f"{time.perf_counter() - start:.1f}s)\n"
        f"  {c['users']} users, {c['catalog_items']} items, {c['rec_events']} rec events, "
        f"{c['search_sessions']} search sessions ({c['unique_queries']} distinct queries)\n"
        + "\n".join(f"  {s}: " + ", ".join(f"{ex[s][b]} {b}" for b in BEHAVIORS) for s in SPLITS)
    )
    cold = data.manifest.get("cold_items")
    if cold:
        targets = cold["examples"]
        per_split = (f"{s} " + "/".join(str(targets[s][b]) for b in BEHAVIORS) for s in ("valid", "test"))
        print(f"  cold: {cold['items']} items, {cold['events']} events out of training; cold targets "
              + ", ".join(per_split) + " (rec/search)")
    return 0


def cli_stats(args: argparse.Namespace) -> int:
    stats = compute_stats(PreparedData.load(args.data_dir))
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0
