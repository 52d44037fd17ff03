"""The ``gensar`` console script: one subcommand per stage of the method.

Each subcommand names a handler ``module:function`` taking the parsed arguments and returning
an exit code; modules are imported only when their subcommand runs, so ``gensar --help`` is fast.
Any ``GensarError`` becomes a one-line message on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
    p.add_argument("--users", type=int, default=None, help="number of users (config key n_users)")
    p.add_argument("--items", type=int, default=None, help="number of items (config key n_items)")
    p.add_argument("--seed", type=int, default=None, help="random seed (config key seed; default 0)")
    p.add_argument("--query-source", default=None, choices=["category", "title", "mixed"],
                   help="search queries from category words (default), a seeded subset of the clicked "
                        "item's title words, or either per session (config key query_source)")
    p.add_argument("--config", default=None, help="YAML with SynthConfig parameters (gensar.data.synth)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    _common_out(p)
    return "gensar.data.cli:cli_synth"


def _add_prepare(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("prepare", help="load a dataset, add semi-synthetic search, split, build candidates")
    p.add_argument("source", help="dataset directory or file")
    p.add_argument("--out", required=True, help="output directory (prepared data)")
    p.add_argument("--format", default="auto", choices=["auto", "canonical", "recbole", "amazon", "kuaisar"])
    p.add_argument("--search-protocol", default=None, choices=["auto", "mixed", "duplicate", "none"],
                   help="search sessions for logs without queries: mixed (each interaction is a search "
                        "with probability --search-ratio), duplicate (every interaction in both logs), "
                        "none (keep events as they are); default auto = none if the source has search "
                        "sessions, else mixed")
    p.add_argument("--search-ratio", type=float, default=None, help="mixed protocol: P(interaction is a search)")
    p.add_argument("--query-source", default=None, choices=["category", "title", "mixed"],
                   help="semi-synthetic queries: category path words (default), a seeded subset of the "
                        "title's content words, or either per session (half each)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-history", type=int, default=None, help="events kept in each example's history")
    p.add_argument("--kcore", type=int, default=None, help="k-core filter on users and items (0 = off)")
    p.add_argument("--num-negatives", type=int, default=None, help="negatives per evaluation candidate list")
    p.add_argument("--cold-items", type=float, default=None, metavar="R",
                   help="cold-start evaluation: a seeded fraction R of the items is new, its events out of "
                        "training; the pipeline adds them after training (config key cold_items; default 0)")
    p.add_argument("--config", default=None, help="YAML with prepare options")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    _common_out(p)
    return "gensar.data.cli:cli_prepare"


def _add_stats(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("stats", help="statistics of a prepared data directory")
    p.add_argument("data_dir")
    p.add_argument("--json", action="store_true", help="print JSON")
    return "gensar.data.cli:cli_stats"


def _add_sasrec(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("sasrec", help="train the SASRec baseline / collaborative embedding model")
    p.add_argument("data_dir", help="prepared data directory")
    p.add_argument("--out", required=True, help="output directory (metrics.json, model.pt, config.yaml)")
    p.add_argument("--protocol", default="gensar", choices=["gensar", "sasrec"],
                   help="gensar: the prepared rec valid/test examples and candidate lists; sasrec: "
                        "leave-one-out on unified sequences with sampled negatives (public SASRec)")
    p.add_argument("--config", default=None, help="YAML with SASRecConfig keys")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--full-ranking", action="store_true",
                   help="also rank the whole catalog (gensar protocol): a full_ranking block with "
                        "recall/ndcg@5/10/20")
    _common_out(p)
    return "gensar.baselines.cli:cli_sasrec"


def _add_ids(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("ids", help="item embeddings + RQ-VAE -> semantic and collaborative IDs")
    p.add_argument("data_dir")
    p.add_argument("--out", required=True, help="run directory for embeddings, RQ-VAE and IDs")
    p.add_argument("--config", default=None)
    p.add_argument("--variant", default=None, choices=["joint", "semantic", "collaborative"])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    _common_out(p)
    return "gensar.ids.cli:cli_ids"


def _add_baseline(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("baseline", help="popularity / BM25 / dense-retrieval / boolean match + popularity / content-based baselines "
                       "on the saved candidates")
    p.add_argument("name", choices=["popularity", "bm25", "dense", "match-popularity", "content"])
    p.add_argument("data_dir")
    p.add_argument("--out", required=True)
    p.add_argument("--full-ranking", action="store_true",
                   help="also rank the whole catalog: full_ranking block with recall/ndcg@5/10/20")
    _common_out(p)
    return "gensar.baselines.cli:cli_baseline"


def _add_train(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("train", help="train the generative model (T5) on all tasks; --resume continues a run")
    p.add_argument("data_dir", help="prepared data directory")
    p.add_argument("--ids", required=True, help="IDs run directory (or its item_ids.json)")
    p.add_argument("--out", required=True, help="model directory (transformers save_pretrained + train_state.json)")
    p.add_argument("--config", default=None, help="YAML with sections tokenizer/backbone/tasks/train")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in OUT.ckpt/")
    p.add_argument("--init-from", default=None, metavar="MODEL_DIR",
                   help="start from this trained model's weights (token rows matched by token; same backbone shape)")
    _common_out(p)
    return "gensar.model.cli:cli_train"


def _items_log(p: argparse.ArgumentParser) -> None:
    p.add_argument("--items-log", default=None,
                   help="log of items added to the trained catalog (default: RUN_DIR/live_items.jsonl)")


def _cold_start(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cold-start", default=None, choices=["ridge", "knn"],
                   help="an added item's collaborative embedding from its semantic one: a ridge map fitted "
                        "on the trained items (default), or the mean of its nearest trained items")


def _serve_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory (gensar pipeline): data/, ids/, model/")
    p.add_argument("--engine", default="auto", choices=["auto", "hybrid", "generative", "fake"],
                   help="hybrid: generative beam + BM25/dense/SASRec candidates, fused (the pipeline's "
                        "hybrid stage); generative: the trained model's beam alone; auto (default): hybrid "
                        "when the run has it, else generative; fake: popularity + word overlap, needs only "
                        "RUN_DIR/data (for trying the API, and for tests)")
    p.add_argument("--events-log", default=None, help="live events log (default: RUN_DIR/live_events.jsonl)")
    p.add_argument("--store", default=None, metavar="file|postgresql://...",
                   help="where live events are kept: 'file' (default: the events log, one server process) "
                        "or a PostgreSQL URL, shared by every server process and machine pointed at it")
    _items_log(p)
    p.add_argument("--beam-size", type=int, default=30, help="beam width (widened to k when k is larger)")
    p.add_argument("--max-history", type=int, default=None,
                   help="newest history events given to the model (default: the prepared data's max_history)")
    p.add_argument("--max-batch", type=int, default=32, help="requests decoded together")


def _query_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=int, default=10, help="answers per request (1..100)")
    p.add_argument("--batch", default=None, metavar="REQUESTS.jsonl", help="answer every request of a JSONL file")
    p.add_argument("--out", default=None, metavar="ANSWERS.jsonl", help="with --batch: where answers go (atomic)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_serve(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("serve", help="HTTP API + web page over a run directory (micro-batched, live events)")
    _serve_common(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 = any free port")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="how long a batch waits to fill")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes on the port (default 1); more than 1 needs --store postgresql://...")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--api-key-file", default=None, metavar="FILE",
                   help="POST /events (and every write endpoint) then needs this file's key as "
                        "'Authorization: Bearer KEY' or 'X-API-Key: KEY'; reads stay open")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host without --api-key-file (anyone reaching it may write)")
    p.add_argument("--max-body-bytes", type=int, default=1_000_000,
                   help="larger request bodies get a 413 before they are read (default: 1 MB)")
    _cold_start(p)
    return "gensar.serve.cli:cli_serve"


def _add_add_items(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("add-items", help="add items to a trained run without retraining (served at once by "
                       "the next serve / recommend / search)")
    p.add_argument("run_dir", help="run directory (gensar pipeline): data/, ids/, model/")
    p.add_argument("items_file", help="items in the canonical items format (.jsonl, .csv, .parquet, gzip "
                   "accepted); unknown fields are refused")
    _items_log(p)
    _cold_start(p)
    return "gensar.serve.cli:cli_add_items"


def _add_recommend(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("recommend", help="recommend items to a user (or a JSONL batch of users)")
    _serve_common(p)
    p.add_argument("--user", default=None, help="user id (unknown users get an empty history)")
    _query_common(p)
    return "gensar.serve.cli:cli_recommend"


def _add_search(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("search", help="search the catalog, optionally personalized (or a JSONL batch)")
    _serve_common(p)
    p.add_argument("--query", default=None)
    p.add_argument("--user", default=None, help="personalize with this user's history")
    _query_common(p)
    return "gensar.serve.cli:cli_search"


def _add_pipeline(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("pipeline", help="prepare -> ids -> train -> evaluate into one run directory (cached stages)")
    p.add_argument("--config", action="append", default=None,
                   help="pipeline YAML (see configs/); repeat to layer files, e.g. a dataset config then "
                        "configs/variants/rec-only.yaml (later files win key by key)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="dataset (any format `gensar prepare` reads); without --config, the default config "
                        "for its size (gensar.defaults); with --config, replaces the config's data source")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--force", action="store_true", help="rerun every stage")
    p.add_argument("--reuse", default=None, metavar="RUN_DIR",
                   help="copy stages that RUN_DIR finished with the same config instead of recomputing them")
    p.add_argument("--refresh-from", default=None, metavar="RUN0",
                   help="refresh a finished run on newer data (--data): keep RUN0's identifiers, give new items "
                        "theirs, start from RUN0's model and train refresh.epochs (default a third); without "
                        "--config, RUN0's pipeline.yaml with the data source replaced")
    return "gensar.pipeline_cli:cli_pipeline"


def _add_demo(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("demo", help="the whole pipeline on the built-in synthetic world (a few minutes on a CPU)")
    p.add_argument("--out", default="runs/demo", help="run directory (default: runs/demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--force", action="store_true", help="rerun every stage")
    return "gensar.pipeline_cli:cli_demo"


def _add_evaluate(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("evaluate", help="metrics of a trained run (saved candidates, or --full-ranking)")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=["valid", "test"])
    p.add_argument("--json", action="store_true")
    p.add_argument("--full-ranking", action="store_true", help="rank the whole catalog: recall/ndcg@5/10/20")
    p.add_argument("--ranker", default="auto", choices=["auto", "hybrid", "generative"],
                   help="hybrid: the fitted hybrid ranker (what `gensar serve` answers); generative: the "
                        "model's beam alone; auto (default): hybrid when the run has it")
    p.add_argument("--method", default="beam", choices=["beam", "likelihood"],
                   help="generative ranker: constrained beam search, or exact likelihood of each candidate")
    p.add_argument("--beam", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-examples", type=int, default=0, help="per behavior; 0 = all")
    return "gensar.hybrid.cli:cli_evaluate"


def _add_report(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("report", help="report.md + tradeoff.png over several runs")
    p.add_argument("runs", nargs="+", help="run directories holding metrics.json")
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="test", choices=["valid", "test"])
    _common_out(p)
    return "gensar.pipeline_cli:cli_report"


_BUILDERS: tuple[Callable[[argparse._SubParsersAction], Handler], ...] = (
    _add_demo,
    _add_pipeline,
    _add_synth,
    _add_prepare,
    _add_stats,
    _add_sasrec,
    _add_ids,
    _add_train,
    _add_evaluate,
    _add_baseline,
    _add_report,
    _add_serve,
    _add_add_items,
    _add_recommend,
    _add_search,
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
        if args.threads is not None or os.environ.get("GENSAR_THREADS"):
            from gensar.runtime import configure_threads

            configure_threads(args.threads)
        func = getattr(importlib.import_module(module_name), func_name)
        code = int(func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return code
    except GensarError as err:
        print(f"gensar {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `gensar stats DIR --json | head -1`: the reader left; stop quietly like other tools
        # (no more output can go anywhere; 141 = 128 + SIGPIPE, what a shell reports for them)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as err:
        # a full disk or a read-only place met outside gensar.io's helpers: still one line
        where = f"{err.filename}: " if err.filename else ""
        print(f"gensar {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gensar {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        from gensar import locks

        locks.release_all()  # in-process callers (tests) must not keep the outputs locked


if __name__ == "__main__":
    sys.exit(main())
