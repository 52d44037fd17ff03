"""Training throughput: compact prompts (the default config) vs the paper code's English prompts.

Both arms are the real training step of ``gensar.model.train`` on the same data, item IDs and
backbone preset; only ``TaskConfig.prompt_style`` differs ("compact": marker tokens such as
``<t_rec>``/``<search>``; "paper": "The user has the following interaction history in
chronological order: ... Please recommend the next item ..."). Each arm builds what
``gensar train`` builds (its own pruned WordPiece from ``tokenizer_corpus(data, style)``, a
fresh seeded T5, the default task mix, ``SampleEncoder`` at ``max_input_len``, the
length-bucketed epoch plan, AdamW + cosine schedule, gradient clipping) and then runs
optimizer steps exactly as the training loop does (collate -> forward -> backward -> clip ->
step), so the figures are what an epoch of ``gensar train`` would see, minus validation and
checkpoints.

Timing: after ``--warmup`` steps per arm, the arms alternate in one process for ``--repeats``
rounds of ``--steps`` steps each, the order reversed every round (A B, B A, A B, ...) so that
slow drifts of machine load cancel. In round r both arms train on the same positions of their
epoch plans. Reported per arm: samples/s, tokens/s (real, i.e. non-padding, input + target
tokens; and padded tokens, what the model actually computes on), mean input/target length over
the epoch, padding share of the timed batches, and an epoch-time estimate; and the ratio
compact / paper of samples/s (aggregate and per round). On a shared machine only the ratio is
meaningful; absolute numbers drift with the load.

Data: ``--data DIR`` (a prepared directory), else a synthetic world (``gensar.data.synth``
defaults, prepared with ``PrepareConfig`` defaults in a temporary directory). IDs: ``--ids``
(``item_ids.json`` or its directory), else random stand-in IDs of the real shape
(``<s_a_N><s_b_N>`` shared + two specific tokens, ``--codebook`` codes per level), which
give identifier targets and histories of the right length.

    flock /tmp/gensar-cpu.lock env GENSAR_THREADS=2 python benchmarks/bench_train.py
    flock /tmp/gensar-cpu.lock env GENSAR_THREADS=2 python benchmarks/bench_train.py \\
        --data runs/sci/data --ids runs/sci/ids/item_ids.json --json runs/bench_train_sci.json
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import get_cosine_schedule_with_warmup

from gensar.data.prepare import PrepareConfig, prepare
from gensar.data.prepared import PreparedData
from gensar.data.synth import SynthConfig, generate_world
from gensar.errors import GensarError
from gensar.io import atomic_write_json
from gensar.model.backbone import BackboneConfig, build_backbone, count_parameters
from gensar.ids.item_ids import IdMaps
from gensar.model.encoder import SampleEncoder
from gensar.model.prompts import MARKER_TOKENS, tokenizer_corpus
from gensar.model.samples import TaskMix, build_samples
from gensar.model.task_config import TaskConfig
from gensar.model.tokenizer import TokenizerConfig, build_tokenizer

# The loop's own batching and optimizer (private helpers: the benchmark must time what
# `gensar train` runs, not a copy of it).
from gensar.model.batching import bucket_key, collate, length_bucketed
from gensar.model.train import _optimizer
from gensar.model.train_config import TrainConfig
from gensar.runtime import configure_threads, seed_everything

STYLES = ("compact", "paper")
CPU = torch.device("cpu")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="prepared data dir (default: a synthetic world)")
    p.add_argument("--ids", type=Path, default=None, help="item_ids.json (default: random stand-in IDs)")
    p.add_argument("--codebook", type=int, default=256, help="codes per level of the stand-in IDs")
    p.add_argument("--preset", default="cpu", choices=("tiny", "cpu", "t5-small"), help="backbone preset")
    p.add_argument("--dropout", type=float, default=BackboneConfig().dropout)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--max-input-len", type=int, default=defaults.max_input_len)
    p.add_argument("--length-buckets", type=int, default=defaults.length_buckets)
    p.add_argument("--steps", type=int, default=15, help="optimizer steps per arm per round")
    p.add_argument("--repeats", type=int, default=3, help="rounds of (compact, paper)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per arm first")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default $GENSAR_THREADS or all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results here (atomic)")
    args = p.parse_args(argv)
    for name in ("codebook", "batch_size", "steps", "repeats", "max_input_len", "length_buckets"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


# ---- inputs ----------------------------------------------------------------------------------------
def synthetic_data(seed: int) -> PreparedData:
    """The default synthetic world, prepared, saved and reloaded (so dtypes are as on disk)."""
    raw = generate_world(SynthConfig(seed=seed), progress=False)
    data = prepare(raw, PrepareConfig(seed=seed))
    with tempfile.TemporaryDirectory(prefix="gensar-bench-train-") as tmp:
        return PreparedData.load(data.save(Path(tmp) / "data"))


def stand_in_ids(item_ids: list[str], codebook: int, seed: int) -> IdMaps:
    """Random unique 4-token IDs: 2 shared codes + 2 semantic / 2 collaborative codes per item."""
    rng = np.random.default_rng([seed, 0x1D5])
    semantic: dict[str, tuple[str, ...]] = {}
    collaborative: dict[str, tuple[str, ...]] = {}
    taken: dict[str, set[tuple[int, ...]]] = {"sem": set(), "col": set()}
    if codebook**4 < 2 * len(item_ids):
        raise GensarError(f"--codebook {codebook} is too small for {len(item_ids)} unique 4-token IDs")
    for item in item_ids:
        shared = tuple(int(c) for c in rng.integers(0, codebook, size=2))
        out = {}
        for group in ("sem", "col"):
            while True:  # redraw on collision: IDs of one kind must be unique
                code = shared + tuple(int(c) for c in rng.integers(0, codebook, size=2))
                if code not in taken[group]:
                    taken[group].add(code)
                    break
            out[group] = (
                f"<s_a_{code[0]}>",
                f"<s_b_{code[1]}>",
                f"<{group}_a_{code[2]}>",
                f"<{group}_b_{code[3]}>",
            )
        semantic[item], collaborative[item] = out["sem"], out["col"]
    maps = IdMaps(semantic, collaborative)
    maps.check()
    return maps


# ---- one arm ---------------------------------------------------------------------------------------
@dataclass
class Arm:
    """Everything `gensar train` builds for one prompt style, ready to step."""

    style: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    tc: TrainConfig
    encoded: list[tuple[np.ndarray, np.ndarray]]
    plan: np.ndarray  # sample indices of epoch 0, length-bucketed
    pad: int
    vocab: int
    parameters: int
    setup_s: float

    @property
    def n_batches(self) -> int:
        return len(self.plan) // self.tc.batch_size  # full batches only: every timed step is full


def build_arm(style: str, data: PreparedData, ids: IdMaps, args: argparse.Namespace) -> Arm:
    t0 = time.perf_counter()
    tasks = TaskConfig(prompt_style=style)
    tc = TrainConfig(
        seed=args.seed,
        batch_size=args.batch_size,
        max_input_len=args.max_input_len,
        length_buckets=args.length_buckets,
    )
    backbone = BackboneConfig(preset=args.preset, dropout=args.dropout)
    for cfg in (tasks, tc, backbone):
        cfg.validate()
    tokenizer = build_tokenizer(
        tokenizer_corpus(data, style), list(MARKER_TOKENS) + ids.tokens(), TokenizerConfig()
    )
    seed_everything(tc.seed)  # same init rule as the loop
    model = build_backbone(backbone, tokenizer)
    model.config.use_cache = False
    model.train()
    mix = TaskMix.build(build_samples(data, tasks, tc.seed), tasks)
    encoder = SampleEncoder(tokenizer, ids, data, tasks, tc.max_input_len)
    encoded = [encoder.encode(s) for s in mix.samples]
    plan = length_bucketed(
        mix.epoch_plan(tc.seed, 0),
        bucket_key(encoded),  # the same sort key as `gensar train`
        tc.batch_size,
        tc.length_buckets,
        np.random.default_rng([tc.seed, 0, 0xB0C7]),
    )
    optimizer = _optimizer(model, tc)
    total_steps = math.ceil(len(plan) / tc.batch_size) * tc.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(tc.warmup_ratio * total_steps), total_steps)
    return Arm(
        style=style,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        tc=tc,
        encoded=encoded,
        plan=plan,
        pad=int(tokenizer.pad_token_id),
        vocab=len(tokenizer),
        parameters=count_parameters(model)["total"],
        setup_s=time.perf_counter() - t0,
    )


@dataclass
class Timing:
    seconds: float = 0.0
    samples: int = 0
    real_tokens: int = 0  # non-padding input + target tokens
    padded_tokens: int = 0  # input + target positions, padding included
    input_tokens: int = 0  # non-padding input tokens

    def add(self, other: Timing) -> None:
        for f in ("seconds", "samples", "real_tokens", "padded_tokens", "input_tokens"):
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def samples_per_s(self) -> float:
        return self.samples / self.seconds


def run_steps(arm: Arm, first: int, n: int) -> Timing:
    """``n`` optimizer steps on batches ``first, first + 1, ...`` (mod the epoch) of ``arm``'s plan."""
    tc, batch = arm.tc, arm.tc.batch_size
    out = Timing()
    for k in range(first, first + n):
        b = k % arm.n_batches
        t0 = time.perf_counter()
        inputs = collate(arm.encoded, arm.plan[b * batch : (b + 1) * batch], arm.pad, CPU)
        loss = arm.model(**inputs).loss
        arm.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(arm.model.parameters(), tc.grad_clip)
        arm.optimizer.step()
        arm.scheduler.step()
        float(loss.detach())  # the loop reads the loss every step
        out.seconds += time.perf_counter() - t0
        real_in = int(inputs["attention_mask"].sum())
        out.samples += inputs["input_ids"].shape[0]
        out.input_tokens += real_in
        out.real_tokens += real_in + int((inputs["labels"] != -100).sum())
        out.padded_tokens += inputs["input_ids"].numel() + inputs["labels"].numel()
    return out


# ---- report ----------------------------------------------------------------------------------------
def hardware(threads: int) -> dict:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def arm_summary(arm: Arm, total: Timing, rounds: list[Timing]) -> dict:
    in_len = np.array([len(x) for x, _ in arm.encoded], dtype=np.float64)
    out_len = np.array([len(y) for _, y in arm.encoded], dtype=np.float64)
    sps = total.samples_per_s()
    return {
        "vocab": arm.vocab,
        "parameters": arm.parameters,
        "epoch_samples": len(arm.plan),
        "mean_input_tokens": float(in_len[arm.plan].mean()),  # over the epoch (task mix weights)
        "mean_target_tokens": float(out_len[arm.plan].mean()),
        "timed_mean_input_tokens": total.input_tokens / total.samples,
        "padding_share": 1.0 - total.real_tokens / total.padded_tokens,
        "samples_per_s": sps,
        "tokens_per_s": total.real_tokens / total.seconds,
        "padded_tokens_per_s": total.padded_tokens / total.seconds,
        "round_samples_per_s": [r.samples_per_s() for r in rounds],
        "timed_seconds": total.seconds,
        "timed_steps": total.samples // arm.tc.batch_size,
        "epoch_minutes_est": len(arm.plan) / sps / 60.0,
        "setup_s": arm.setup_s,
    }


def print_table(result: dict) -> None:
    hw, cfg, arms = result["hardware"], result["config"], result["arms"]
    print(
        f"\ngensar training throughput: preset {cfg['preset']}, batch {cfg['batch_size']}, "
        f"{hw['threads']} threads, {cfg['steps']} steps x {cfg['repeats']} rounds per style"
    )
    print(f"data: {result['data']['source']} ({result['data']['items']} items); ids: {result['ids']}")
    print(f"{hw['cpu']}, {hw['cores']} cores; torch {hw['torch']}, transformers {hw['transformers']}")
    head = (
        f"{'style':<8} {'vocab':>6} {'params':>9} {'in tok':>7} {'out tok':>7} {'padding':>7} "
        f"{'samples/s':>9} {'tokens/s':>9} {'padded/s':>9} {'epoch min':>9}"
    )
    print(head)
    print("-" * len(head))
    for style in STYLES:
        a = arms[style]
        print(
            f"{style:<8} {a['vocab']:>6} {a['parameters']:>9,} {a['mean_input_tokens']:>7.1f} "
            f"{a['mean_target_tokens']:>7.1f} {a['padding_share']:>7.1%} {a['samples_per_s']:>9.1f} "
            f"{a['tokens_per_s']:>9.0f} {a['padded_tokens_per_s']:>9.0f} {a['epoch_minutes_est']:>9.1f}"
        )
    r = result["ratio"]
    print(
        f"compact / paper: {r['samples_per_s']:.2f}x samples/s "
        f"(rounds: {', '.join(f'{x:.2f}' for x in r['round_samples_per_s'])}); "
        f"paper inputs are {r['input_length_paper_over_compact']:.2f}x longer"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    threads = configure_threads(args.threads)
    t_start = time.perf_counter()
    load_before = os.getloadavg()
    if threads > 1 and load_before[0] + threads > (os.cpu_count() or 1) + 0.5:
        # Intra-op threads that must share a busy core spin at every barrier: on 2 cores with
        # one busy, 2 threads ran the cpu preset ~15x slower than 1 (both styles alike).
        print(
            f"bench_train: warning: load average {load_before[0]:.1f} + {threads} threads > "
            f"{os.cpu_count()} cores; timings may measure contention (try --threads 1)",
            file=sys.stderr,
        )
    try:
        if args.data is None:
            print("bench_train: generating and preparing the synthetic world ...", file=sys.stderr)
            data = synthetic_data(args.seed)
        else:
            data = PreparedData.load(args.data)
        items = data.items["item_id"].tolist()
        if args.ids is None:
            ids = stand_in_ids(items, args.codebook, args.seed)
            ids_desc = f"stand-in (random, 4 tokens, codebook {args.codebook})"
        else:
            ids, ids_desc = IdMaps.load(args.ids), str(args.ids)
            ids.require_items(items, args.ids)
        arms = {}
        for style in STYLES:
            print(f"bench_train: building the {style} arm ...", file=sys.stderr)
            arms[style] = build_arm(style, data, ids, args)
    except GensarError as err:
        print(f"bench_train: error: {err}", file=sys.stderr)
        return 2

    for style in STYLES:
        run_steps(arms[style], 0, args.warmup)
    totals = {s: Timing() for s in STYLES}
    rounds: dict[str, list[Timing]] = {s: [] for s in STYLES}
    for r in range(args.repeats):
        first = args.warmup + r * args.steps  # both arms train on the same plan positions
        for style in STYLES if r % 2 == 0 else STYLES[::-1]:
            t = run_steps(arms[style], first, args.steps)
            rounds[style].append(t)
            totals[style].add(t)
            print(
                f"bench_train: round {r + 1}/{args.repeats} {style}: {t.samples_per_s():.1f} samples/s",
                file=sys.stderr,
            )

    summary = {s: arm_summary(arms[s], totals[s], rounds[s]) for s in STYLES}
    c, p = summary["compact"], summary["paper"]
    result = {
        "benchmark": "train_throughput",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "hardware": hardware(threads),
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "config": {
            "preset": args.preset,
            "dropout": args.dropout,
            "batch_size": args.batch_size,
            "max_input_len": args.max_input_len,
            "length_buckets": args.length_buckets,
            "steps": args.steps,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "seed": args.seed,
            "order": "alternating, reversed every round",
        },
        "data": {
            "dir": str(args.data) if args.data else None,
            "source": str(data.manifest.get("source", "")),
            "items": len(items),
            "events": len(data.events),
        },
        "ids": ids_desc,
        "arms": summary,
        "ratio": {
            "samples_per_s": c["samples_per_s"] / p["samples_per_s"],
            "round_samples_per_s": [
                a / b for a, b in zip(c["round_samples_per_s"], p["round_samples_per_s"], strict=True)
            ],
            "tokens_per_s": c["tokens_per_s"] / p["tokens_per_s"],
            "input_length_paper_over_compact": p["mean_input_tokens"] / c["mean_input_tokens"],
        },
        "wall_s": time.perf_counter() - t_start,
    }
    result["ratio"]["median_round_samples_per_s"] = statistics.median(result["ratio"]["round_samples_per_s"])
    print_table(result)
    sys.stdout.flush()
    print(f"wall time {result['wall_s']:.0f} s", file=sys.stderr)
    if args.json is not None:
        atomic_write_json(args.json, result)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
