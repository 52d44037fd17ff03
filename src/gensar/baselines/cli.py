"""``gensar baseline NAME DATA_DIR --out DIR [--full-ranking]`` and ``gensar sasrec DATA_DIR --out DIR``.

``baseline``: the non-generative scorers. Sampled protocol: the saved candidate lists (gathered from
each scorer's whole-catalog scores). ``--full-ranking`` adds ``"full_ranking": {split: {behavior:
recall/ndcg@5/10/20}}`` over every item. Writes ``DIR/metrics.json``.

``sasrec``: train and evaluate the SASRec baseline.

Writes into ``DIR`` (atomically, as one directory):

metrics.json  {"protocol", "valid": {hr@1, hr@5, hr@10, ndcg@5, ndcg@10}, "test": {...},
               "popularity": {"valid": {...}, "test": {...}}, "best_epoch", "epochs_run",
               "train_seconds", "n_train_sequences", "n_valid", "n_test", "config"}
              with ``--full-ranking``, also "full_ranking": {"valid": {"rec": recall/ndcg@5/10/20},
              "test": {...}}: each rec example's target among every item
model.pt      checkpoint: state_dict, config, n_items (``collaborative.load_sasrec``)
config.yaml   the full SASRecConfig used
log.json      per-epoch training loss and validation NDCG@10
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from gensar.baselines.run import run_baseline, run_sasrec
from gensar.config import load_config, to_dict
from gensar.data.prepared import PreparedData
from gensar.embed.sasrec import SASRecConfig
from gensar.errors import GensarError
from gensar.io import atomic_dir, atomic_write_json, check_output_dir, ensure_owned_dir
from gensar.ownership import refuse_output_over_input
from gensar.runtime import configure_threads


def cli_baseline(args: argparse.Namespace) -> int:
    refuse_output_over_input([("--out", args.out)], [("DATA", args.data_dir)])
    out = check_output_dir(args.out, args.overwrite)
    data = PreparedData.load(args.data_dir)
    ensure_owned_dir(out, "baseline")
    result = run_baseline(args.name, data, cache_dir=out / "cache", full_ranking=args.full_ranking)
    atomic_write_json(out / "metrics.json", result)
    print(json.dumps({k: result[k] for k in ("valid", "test", "full_ranking") if k in result}, indent=2))
    return 0


def cli_sasrec(args: argparse.Namespace) -> int:
    cfg = load_config(SASRecConfig, args.config, args.overrides)
    refuse_output_over_input([("--out", args.out)], [("DATA", args.data_dir)]
                             + ([("--config", args.config)] if args.config else []))
    check_output_dir(args.out, args.overwrite)  # fail before training, not after
    if args.full_ranking and args.protocol != "gensar":
        # the sasrec protocol's own split holds out other items than the prepared examples
        raise GensarError("--full-ranking needs --protocol gensar (the prepared valid/test examples)")
    configure_threads(args.threads)
    data = PreparedData.load(args.data_dir)
    trained, metrics = run_sasrec(data, cfg, args.protocol, args.full_ranking, progress=not args.quiet)
    proto_name = metrics["protocol"]
    with atomic_dir(args.out, overwrite=args.overwrite, kind="sasrec") as tmp:
        trained.save(tmp / "model.pt")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (tmp / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
        (tmp / "log.json").write_text(json.dumps(trained.log, indent=1) + "\n", encoding="utf-8")

    t = metrics["test"]
    print(
        f"sasrec [{proto_name}] test hr@10={t['hr@10']:.4f} ndcg@10={t['ndcg@10']:.4f} "
        f"(best epoch {trained.best_epoch}, {trained.train_seconds:.0f}s) -> {args.out}",
        file=sys.stderr,
    )
    return 0
