"""``gensar evaluate RUN_DIR``: metrics of a trained run on the saved candidates or the whole catalog."""

from __future__ import annotations

import argparse
import json

from gensar.eval.config import EvalConfig
from gensar.eval.table import format_metrics


def cli_evaluate(args: argparse.Namespace) -> int:
    from gensar.eval.protocol import evaluate_run

    cfg = EvalConfig(splits=(args.split,), method=args.method, beam_size=args.beam, batch_size=args.batch_size,
                     max_examples=args.max_examples)
    cfg.validate()
    metrics = evaluate_run(args.run_dir, args.split, cfg, full_ranking=args.full_ranking)
    if args.json:
        print(json.dumps(metrics, indent=2))
    elif args.full_ranking:
        for behavior, m in metrics.items():
            print(behavior, " ".join(f"{k}={v:.4f}" for k, v in m.items() if k not in ("n", "seconds")))
    else:
        print(format_metrics({args.split: metrics}))
    return 0
