"""``gensar pipeline``, ``gensar demo`` and ``gensar report``: the run-level commands.

The work is in ``gensar.pipeline`` (stages into one run directory) and ``gensar.report`` (tables
and the plot over several runs); these handlers read the flags and print the result.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gensar.config import load_config
from gensar.errors import ConfigError
from gensar.eval.groups import GROUPS
from gensar.eval.table import format_comparison, format_metrics, has_groups
from gensar.pipeline import PipelineConfig, builtin_config, run_pipeline
from gensar.report import write_report


def cli_pipeline(args: argparse.Namespace) -> int:
    cfg = pipeline_config(args.config, args.data, args.overrides, args.refresh_from)
    metrics = run_pipeline(cfg, args.out, force=args.force, reuse=args.reuse)
    print(format_metrics(metrics))
    if metrics.get("baselines"):
        print_comparisons(metrics)
    return 0


def print_comparisons(metrics: dict, split: str = "test") -> None:
    """Every method side by side on ``split``; with cold items, also on the cold and warm targets."""
    for group in (None, *GROUPS) if has_groups(metrics, split) else (None,):
        print()
        print(format_comparison(metrics, split, group))


def pipeline_config(config: list[str] | None, data: str | None, overrides: list[str],
                    refresh_from: str | None = None) -> PipelineConfig:
    """``--config`` files (``--data`` replaces their data source), or with ``--data`` alone the
    default config for that data's size (``gensar.defaults``); ``--set`` applies over either.
    ``--refresh-from RUN0`` without ``--config``: RUN0's ``pipeline.yaml`` (``gensar.refresh``)."""
    if refresh_from is not None:
        overrides = [f"refresh.previous={refresh_from}", *overrides]
        if not config:
            if not data:
                raise ConfigError("--refresh-from needs --data DIR: the newer data to refresh the run with")
            previous = Path(refresh_from) / "pipeline.yaml"
            if not previous.is_file():
                raise ConfigError(f"{previous}: missing (--refresh-from names a pipeline run directory)")
            config = [str(previous)]
    if not config and not data:
        raise ConfigError("give --config FILE, or --data DIR for the default config of that data")
    if config:
        return load_config(PipelineConfig, config, ([f"data.source={data}"] if data else []) + overrides)
    from gensar.defaults import data_size, default_config

    size = data_size(data)
    cfg = default_config(data, size, overrides)
    print(f"gensar pipeline: default config for {data} ({size.items} items, {size.interactions} "
          f"interactions, {size.users} users): see gensar.defaults")
    return cfg


def cli_demo(args: argparse.Namespace) -> int:
    path = builtin_config("synthetic")
    cfg = load_config(PipelineConfig, path, args.overrides)
    start = time.perf_counter()
    metrics = run_pipeline(cfg, args.out, force=args.force)
    print(f"\ngensar demo: synthetic world, run directory {args.out} ({time.perf_counter() - start:.0f} s)")
    print(format_metrics(metrics))
    print_comparisons(metrics)
    return 0


def cli_report(args: argparse.Namespace) -> int:
    from gensar.ownership import refuse_output_over_input

    refuse_output_over_input([("--out", args.out)], [("RUN", r) for r in args.runs])
    out = write_report(args.runs, args.out, args.split, args.overwrite)
    print((out / "report.md").read_text(encoding="utf-8"))
    return 0
