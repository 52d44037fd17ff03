"""``gensar ids DATA_DIR --out RUN_DIR``: the ID stage's command (the stage itself: ``gensar.ids.stage``)."""

from __future__ import annotations

import argparse
import sys

from gensar.config import load_config
from gensar.data.prepared import PreparedData
from gensar.ids.stage import IdsConfig, build_ids
from gensar.io import check_output_dir
from gensar.ownership import refuse_output_over_input
from gensar.runtime import configure_threads


def cli_ids(args: argparse.Namespace) -> int:
    configure_threads(args.threads)
    overrides = list(args.overrides)
    if args.variant is not None:
        overrides.append(f"rqvae.variant={args.variant}")
    cfg = load_config(IdsConfig, args.config, overrides)
    refuse_output_over_input([("--out", args.out)], [("DATA", args.data_dir)]
                             + ([("--config", args.config)] if args.config else []))
    check_output_dir(args.out, args.overwrite)
    data = PreparedData.load(args.data_dir)
    report = build_ids(data, cfg, args.out, overwrite=args.overwrite)
    print(
        f"gensar ids: {len(data.items)} items, variant {cfg.rqvae.variant}; collision rate "
        f"semantic {report['semantic_collision_rate_raw']:.4f} -> {report['semantic_collision_rate']:.4f}, "
        f"collaborative {report['collaborative_collision_rate_raw']:.4f} -> "
        f"{report['collaborative_collision_rate']:.4f}; wrote {args.out}",
        file=sys.stdout,
    )
    return 0
