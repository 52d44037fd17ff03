"""``gensar pipeline``, ``gensar demo`` and ``gensar report``: the run-level commands.

The work is in ``gensar.pipeline`` (stages into one run directory) and ``gensar.report`` (tables
and the plot over several runs); these handlers read the flags and print the result.
"""

from __future__ import annotations

import argparse
import time

from gensar.config import load_config
from gensar.eval.table import format_comparison, format_metrics
from gensar.pipeline import PipelineConfig, builtin_config, run_pipeline
from gensar.report import write_report


def cli_pipeline(args: argparse.Namespace) -> int:
    cfg = load_config(PipelineConfig, args.config, args.overrides)
    metrics = run_pipeline(cfg, args.out, force=args.force, reuse=args.reuse)
    print(format_metrics(metrics))
    if metrics.get("baselines"):
        print()
        print(format_comparison(metrics, "test"))
    return 0


def cli_demo(args: argparse.Namespace) -> int:
    path = builtin_config("synthetic")
    cfg = load_config(PipelineConfig, path, args.overrides)
    start = time.perf_counter()
    metrics = run_pipeline(cfg, args.out, force=args.force)
    print(f"\ngensar demo: synthetic world, run directory {args.out} ({time.perf_counter() - start:.0f} s)")
    print(format_metrics(metrics))
    print()
    print(format_comparison(metrics, "test"))
    return 0


def cli_report(args: argparse.Namespace) -> int:
    from gensar.ownership import refuse_output_over_input

    refuse_output_over_input([("--out", args.out)], [("RUN", r) for r in args.runs])
    out = write_report(args.runs, args.out, args.split, args.overwrite)
    print((out / "report.md").read_text(encoding="utf-8"))
    return 0
