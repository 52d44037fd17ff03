"""``gensar train``: prepared data + item IDs -> a trained generative model directory."""

from __future__ import annotations

import argparse
import json
import os

from gensar.config import load_config


def cli_train(args: argparse.Namespace) -> int:
    from gensar.model.train import train
    from gensar.model.train_config import ModelRunConfig
    from gensar.runtime import configure_threads

    from gensar.ownership import refuse_output_over_input

    out_ckpt = f"{args.out.rstrip('/')}.ckpt"
    refuse_output_over_input([("--out", args.out), ("--out (checkpoint)", out_ckpt)],
                             [("DATA", args.data_dir), ("--ids", args.ids)]
                             + ([("--config", args.config)] if args.config else [])
                             + ([("--init-from", args.init_from)] if args.init_from else []))
    cfg = None
    if args.config is not None or args.overrides or not args.resume:
        cfg = load_config(ModelRunConfig, args.config, args.overrides)
    if args.threads is None and (cfg is None or cfg.train.threads == 0):
        configure_threads(None)  # $GENSAR_THREADS or all cores
    result = train(args.data_dir, args.ids, args.out, cfg, resume=args.resume, overwrite=args.overwrite,
                   init_from=args.init_from)
    best = "none" if result.best_value is None else f"{result.best_value:.4f} at epoch {result.best_epoch}"
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one line from rank 0
        print(
            json.dumps(
                {
                    "out": str(result.out),
                    "epochs": len(result.history),
                    "best": best,
                    "stopped_early": result.stopped_early,
                }
            )
        )
    return 0
