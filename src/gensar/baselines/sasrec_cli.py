"""``gensar sasrec DATA_DIR --out DIR``: train and evaluate the SASRec baseline.

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

from gensar.baselines.scorer import SASRecScorer, full_ranking_metrics
from gensar.config import load_config, to_dict
from gensar.data.prepared import PreparedData
from gensar.eval.candidates import eval_examples
from gensar.embed.collaborative import (
    evaluate,
    gensar_protocol,
    popularity_metrics,
    sasrec_protocol,
    train_sasrec,
)
from gensar.data.schema import REC
from gensar.embed.sasrec import SASRecConfig
from gensar.errors import GensarError
from gensar.io import atomic_dir, check_output_dir
from gensar.ownership import refuse_output_over_input
from gensar.runtime import configure_threads


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
    n_items = len(data.items)
    if args.protocol == "sasrec":
        proto = sasrec_protocol(data, cfg.eval_negatives, cfg.seed)
    else:
        proto = gensar_protocol(data)

    trained = train_sasrec(proto.train_seqs, n_items, cfg, valid=proto.valid, progress=not args.quiet)
    metrics = {
        "protocol": proto.name,
        "valid": evaluate(trained.model, proto.valid),
        "test": evaluate(trained.model, proto.test),
        "popularity": {
            "valid": popularity_metrics(proto.train_seqs, n_items, proto.valid),
            "test": popularity_metrics(proto.train_seqs, n_items, proto.test),
        },
        "best_epoch": trained.best_epoch,
        "epochs_run": len(trained.log),
        "train_seconds": round(trained.train_seconds, 2),
        "n_train_sequences": len(proto.train_seqs),
        "n_valid": len(proto.valid),
        "n_test": len(proto.test),
        "config": to_dict(cfg),
    }
    if args.full_ranking:
        metrics["full_ranking"] = full_ranking_block(SASRecScorer(trained.model), data)
    with atomic_dir(args.out, overwrite=args.overwrite, kind="sasrec") as tmp:
        trained.save(tmp / "model.pt")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (tmp / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
        (tmp / "log.json").write_text(json.dumps(trained.log, indent=1) + "\n", encoding="utf-8")

    t = metrics["test"]
    print(
        f"sasrec [{proto.name}] test hr@10={t['hr@10']:.4f} ndcg@10={t['ndcg@10']:.4f} "
        f"(best epoch {trained.best_epoch}, {trained.train_seconds:.0f}s) -> {args.out}",
        file=sys.stderr,
    )
    return 0


def full_ranking_block(scorer: SASRecScorer, data: PreparedData) -> dict:
    """``{split: {"rec": whole-catalog metrics}}`` of the prepared rec valid/test examples."""
    block: dict = {}
    for split in ("valid", "test"):
        examples = eval_examples(data, split, REC)
        block[split] = {REC: full_ranking_metrics(scorer, data, examples)} if not examples.empty else {}
    return block
