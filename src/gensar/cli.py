"""The ``gensar`` console script: one subcommand per stage of the method.

Each subcommand names a handler ``module:function`` taking the parsed arguments and returning
an exit code; modules are imported only when their subcommand runs, so ``gensar --help`` is fast.
Any ``GensarError`` becomes a one-line message on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from gensar import __version__
from gensar.errors import GensarError

Handler = str  # "package.module:function"


def _common_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")


def _add_synth(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("synth", help="write a synthetic search+recommendation world (canonical files)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--users", type=int, default=None, help="number of users")
    p.add_argument("--items", type=int, default=None, help="number of items")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=None, help="YAML with synthetic-world parameters")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    _common_out(p)
    return "gensar.data.synth:cli_synth"


def _add_prepare(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("prepare", help="load a dataset, add semi-synthetic search, split, build candidates")
    p.add_argument("source", help="dataset directory or file")
    p.add_argument("--out", required=True, help="output directory (prepared data)")
    p.add_argument("--format", default="auto", choices=["auto", "canonical", "recbole", "amazon", "kuaisar"])
    p.add_argument("--search-protocol", default=None, choices=["mixed", "duplicate", "none"],
                   help="how to make search sessions for logs without queries (default: mixed; "
                        "none keeps the source's own search log)")
    p.add_argument("--search-ratio", type=float, default=None, help="mixed protocol: P(interaction is a search)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-history", type=int, default=None, help="events kept in each example's history")
    p.add_argument("--kcore", type=int, default=None, help="k-core filter on users and items (0 = off)")
    p.add_argument("--config", default=None, help="YAML with prepare options")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    _common_out(p)
    return "gensar.data.prepare:cli_prepare"


def _add_stats(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("stats", help="statistics of a prepared data directory")
    p.add_argument("data_dir")
    p.add_argument("--json", action="store_true", help="print JSON")
    return "gensar.data.stats:cli_stats"


def _add_sasrec(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("sasrec", help="train the SASRec baseline / collaborative embedding model")
    p.add_argument("data_dir")
    p.add_argument("--out", required=True)
    p.add_argument("--config", default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    _common_out(p)
    return "gensar.embed.sasrec_cli:cli_sasrec"


def _add_ids(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("ids", help="item embeddings + RQ-VAE -> semantic and collaborative IDs")
    p.add_argument("data_dir")
    p.add_argument("--out", required=True, help="run directory for embeddings, RQ-VAE and IDs")
    p.add_argument("--config", default=None)
    p.add_argument("--variant", default=None, choices=["joint", "semantic", "collaborative"])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    _common_out(p)
    return "gensar.ids.cli:cli_ids"


_BUILDERS: tuple[Callable[[argparse._SubParsersAction], Handler], ...] = (
    _add_synth,
    _add_prepare,
    _add_stats,
    _add_sasrec,
    _add_ids,
)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = argparse.ArgumentParser(prog="gensar", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"gensar {__version__}")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: $GENSAR_THREADS or all cores)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers = {}
    for build in _BUILDERS:
        handler = build(sub)
        handlers[list(sub.choices)[-1]] = handler
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    module_name, func_name = handlers[args.command].split(":")
    try:
        if args.threads is not None:
            from gensar.runtime import configure_threads

            configure_threads(args.threads)
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(args) or 0)
    except GensarError as err:
        print(f"gensar {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gensar {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
