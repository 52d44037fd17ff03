"""Training throughput: two variants of the real training step, timed against each other.

``--compare`` picks what differs between the two arms; everything else (data, item IDs, backbone,
batches, targets) is the same:

- ``prompt`` (default): compact prompts (marker tokens such as ``<t_rec>``/``<search>``, the
  default) against the paper code's English prompts ("The user has the following interaction
  history in chronological order: ... Please recommend the next item ..."). Each style gets its own
  pruned WordPiece from ``tokenizer_corpus(data, style)``.
- ``bf16``: the forward pass under bfloat16 autocast (``train.bf16``) against float32.
- ``compile``: ``torch.compile(model, dynamic=True)`` (``train.compile``) against eager.

Each arm builds what ``gensar train`` builds (tokenizer, a fresh seeded T5, the task mix,
``SampleEncoder`` at ``max_input_len``, the length-bucketed epoch plan, AdamW + cosine schedule,
gradient clipping) and runs optimizer steps as the training loop does (collate -> forward under
autocast -> backward -> clip -> step), so the figures are what an epoch of ``gensar train`` would
see, minus validation and checkpoints. Arms of the same prompt style share the encoded samples.

Timing: after ``--warmup`` steps per arm (untimed; for ``compile`` this is where compiling happens),
the arms alternate in one process for ``--repeats`` rounds of ``--steps`` steps each, the order
reversed every round (A B, B A, A B, ...) so that slow drifts of machine load cancel. In round r
both arms train on the same positions of their epoch plans. Reported per arm: samples/s, tokens/s
(real, i.e. non-padding, input + target tokens; and padded tokens, what the model computes on),
mean input/target length over the epoch, padding share of the timed batches, an epoch-time estimate,
and the training FLOPs per sample (forward + backward, counted by ``torch.utils.flop_counter`` on
``--flop-batches`` batches spread over the plan); and the ratio of the first arm's samples/s to the second's
(aggregate and per round). On a shared machine only the ratio is meaningful; absolute numbers drift
with the load. From the FLOPs per sample and the epoch size the benchmark projects the GPU time of
``--project-epochs`` epochs at ``--gpu-tflops`` peak and each of the ``--mfu`` utilizations: an
estimate from counted work, not a measurement on a GPU.

Config: ``--config FILE`` (a pipeline YAML; its ``model`` section) gives the backbone, batch size and
task mix, e.g. ``configs/paper-electronics.yaml`` for the paper's shape (T5-small, batch 256);
``--preset``, ``--batch-size`` etc. override it. Without it, the package defaults.
Data: ``--data DIR`` (a prepared directory), else a synthetic world (``gensar.data.synth``
defaults, prepared with ``PrepareConfig`` defaults in a temporary directory). IDs: ``--ids``
(``item_ids.json`` or its directory), else random stand-in IDs of the real shape
(``<s_a_N><s_b_N>`` shared + two specific tokens, ``--codebook`` codes per level), which
give identifier targets and histories of the right length.

    flock /tmp/gensar-cpu.lock env GENSAR_THREADS=2 python benchmarks/bench_train.py
    GENSAR_THREADS=2 python benchmarks/bench_train.py --compare compile --json runs/bench_train_compile.json
    GENSAR_THREADS=2 python benchmarks/bench_train.py --config configs/paper-electronics.yaml \\
        --data runs/bench-scale/1.7m/data --compare bf16 --steps 3 --repeats 2
"""

from __future__ import annotations

import argparse
import dataclasses
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
from torch.utils.flop_counter import FlopCounterMode
from transformers import get_cosine_schedule_with_warmup

from gensar.config import load_config
from gensar.data.prepare import PrepareConfig, prepare
from gensar.data.prepared import PreparedData
from gensar.data.synth import SynthConfig, generate_world
from gensar.errors import GensarError
from gensar.io import atomic_write_json, check_output_json
from gensar.model.backbone import build_backbone, count_parameters
from gensar.ids.item_ids import IdMaps
from gensar.model.encoder import SampleEncoder
from gensar.model.prompts import MARKER_TOKENS, tokenizer_corpus
from gensar.model.samples import TaskMix, build_samples
from gensar.model.train_config import ModelRunConfig
from gensar.model.tokenizer import build_tokenizer
from gensar.pipeline import PipelineConfig

# The loop's own batching and optimizer (private helpers: the benchmark must time what
# `gensar train` runs, not a copy of it).
from gensar.model.batching import EncodedSamples, bucket_key, collate, length_bucketed
from gensar.runtime import configure_threads, seed_everything
from gensar.train_utils import adamw

CPU = torch.device("cpu")


@dataclass(frozen=True)
class ArmSpec:
    """One arm: a name and the settings it changes from the base config."""

    name: str
    style: str = "compact"
    bf16: bool = False
    compile: bool = False


# (candidate, reference): the ratio reported is candidate / reference.
COMPARISONS: dict[str, tuple[ArmSpec, ArmSpec]] = {
    "prompt": (ArmSpec("compact"), ArmSpec("paper", style="paper")),
    "bf16": (ArmSpec("bf16", bf16=True), ArmSpec("fp32")),
    "compile": (ArmSpec("compiled", compile=True), ArmSpec("eager")),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compare", default="prompt", choices=tuple(COMPARISONS), help="what the two arms differ in")
    p.add_argument("--config", type=Path, default=None, help="pipeline YAML whose model section is the base")
    p.add_argument("--data", type=Path, default=None, help="prepared data dir (default: a synthetic world)")
    p.add_argument("--ids", type=Path, default=None, help="item_ids.json (default: random stand-in IDs)")
    p.add_argument("--codebook", type=int, default=256, help="codes per level of the stand-in IDs")
    p.add_argument("--preset", default=None, choices=("tiny", "cpu", "t5-small"), help="backbone preset")
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-input-len", type=int, default=None)
    p.add_argument("--length-buckets", type=int, default=None)
    p.add_argument("--steps", type=int, default=15, help="optimizer steps per arm per round")
    p.add_argument("--repeats", type=int, default=3, help="rounds of the two arms")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per arm first")
    p.add_argument("--flop-batches", type=int, default=16, help="batches whose FLOPs are counted per arm")
    p.add_argument("--project-epochs", type=int, default=None,
                   help="epochs of the GPU projection (default: the config's train.epochs)")
    p.add_argument("--gpu-tflops", type=float, default=989.0,
                   help="peak dense bf16 TFLOP/s of the projected GPU (default: H100 SXM)")
    p.add_argument("--mfu", default="0.1,0.3", help="model FLOP utilizations to project at (comma list)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default $GENSAR_THREADS or all)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the results here (atomic)")
    args = p.parse_args(argv)
    for name in ("codebook", "batch_size", "steps", "repeats", "max_input_len", "length_buckets",
                 "flop_batches", "project_epochs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    try:
        args.mfu = [float(x) for x in args.mfu.split(",")]
    except ValueError:
        p.error(f"--mfu: not a comma list of numbers: {args.mfu!r}")
    if not all(0 < m <= 1 for m in args.mfu) or args.gpu_tflops <= 0:
        p.error("--mfu values must be in (0, 1] and --gpu-tflops > 0")
    return args


def base_config(args: argparse.Namespace) -> ModelRunConfig:
    """The config's model section with the command line's overrides."""
    cfg = load_config(PipelineConfig, args.config).model if args.config else ModelRunConfig()
    backbone = cfg.backbone
    if args.preset is not None:
        backbone = dataclasses.replace(backbone, preset=args.preset)
    if args.dropout is not None:
        backbone = dataclasses.replace(backbone, dropout=args.dropout)
    train = cfg.train
    for flag in ("batch_size", "max_input_len", "length_buckets", "seed"):
        if getattr(args, flag) is not None:
            train = dataclasses.replace(train, **{flag: getattr(args, flag)})
    cfg = dataclasses.replace(cfg, backbone=backbone, train=train)
    cfg.validate()
    return cfg


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
class Corpus:
    """What one prompt style's arms share: the tokenizer, the encoded samples and the epoch plan."""

    tokenizer: transformers.PreTrainedTokenizerBase
    encoded: EncodedSamples
    plan: np.ndarray  # sample indices of epoch 0, length-bucketed
    setup_s: float


def build_corpus(style: str, data: PreparedData, ids: IdMaps, cfg: ModelRunConfig) -> Corpus:
    t0 = time.perf_counter()
    tasks, tc = dataclasses.replace(cfg.tasks, prompt_style=style), cfg.train
    tasks.validate()
    tokenizer = build_tokenizer(tokenizer_corpus(data, style), list(MARKER_TOKENS) + ids.tokens(), cfg.tokenizer)
    mix = TaskMix.build(build_samples(data, tasks, tc.seed), tasks)
    encoder = SampleEncoder(tokenizer, ids, data, tasks, tc.max_input_len)
    encoded = EncodedSamples((encoder.input(s), encoder.target(s)) for s in mix.samples)
    plan = length_bucketed(
        mix.epoch_plan(tc.seed, 0),
        bucket_key(encoded),  # the same sort key as `gensar train`
        tc.batch_size,
        tc.length_buckets,
        np.random.default_rng([tc.seed, 0, 0xB0C7]),
    )
    return Corpus(tokenizer, encoded, plan, time.perf_counter() - t0)


@dataclass
class Arm:
    """Everything `gensar train` builds for one arm, ready to step."""

    spec: ArmSpec
    corpus: Corpus
    model: torch.nn.Module
    step_model: torch.nn.Module  # ``model`` itself, or its compiled wrapper (same parameters)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batch_size: int
    grad_clip: float
    pad: int
    parameters: int

    @property
    def n_batches(self) -> int:
        return len(self.corpus.plan) // self.batch_size  # full batches only: every timed step is full


def build_arm(spec: ArmSpec, corpus: Corpus, cfg: ModelRunConfig) -> Arm:
    tc = cfg.train
    seed_everything(tc.seed)  # same init rule as the loop
    model = build_backbone(cfg.backbone, corpus.tokenizer)
    model.config.use_cache = False
    model.train()
    optimizer = adamw(model, tc.weight_decay, tc.lr)
    total_steps = math.ceil(len(corpus.plan) / tc.batch_size) * tc.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(tc.warmup_ratio * total_steps), total_steps)
    # As the loop does (train.compile): dynamic shapes, since every batch has its own lengths.
    step_model = torch.compile(model, dynamic=True) if spec.compile else model
    return Arm(spec, corpus, model, step_model, optimizer, scheduler, tc.batch_size, tc.grad_clip,
               int(corpus.tokenizer.pad_token_id), count_parameters(model)["total"])


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


def batch_inputs(arm: Arm, k: int) -> dict[str, torch.Tensor]:
    b, size = k % arm.n_batches, arm.batch_size
    return collate(arm.corpus.encoded, arm.corpus.plan[b * size : (b + 1) * size], arm.pad, CPU)


def run_steps(arm: Arm, first: int, n: int) -> Timing:
    """``n`` optimizer steps on batches ``first, first + 1, ...`` (mod the epoch) of ``arm``'s plan."""
    out = Timing()
    for k in range(first, first + n):
        t0 = time.perf_counter()
        inputs = batch_inputs(arm, k)
        with torch.autocast(CPU.type, dtype=torch.bfloat16, enabled=arm.spec.bf16):
            loss = arm.step_model(**inputs).loss
        arm.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if arm.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(arm.model.parameters(), arm.grad_clip)
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


def flops_per_sample(arm: Arm, batches: int) -> float:
    """Training FLOPs (forward + backward) per sample over ``batches`` batches spread evenly over the
    epoch plan (batches differ: the plan groups samples by target length), counted on the eager
    model (compiling does not change the work, only its cost); the gradients it leaves are dropped,
    so the timed steps are unaffected."""
    total, samples = 0, 0
    for k in np.linspace(0, arm.n_batches - 1, min(batches, arm.n_batches)).round().astype(int):
        inputs = batch_inputs(arm, int(k))
        with FlopCounterMode(display=False) as counter:
            arm.model(**inputs).loss.backward()
        total += counter.get_total_flops()
        samples += inputs["input_ids"].shape[0]
    arm.optimizer.zero_grad(set_to_none=True)
    return total / samples


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


def arm_summary(arm: Arm, total: Timing, rounds: list[Timing], flops: float, warmup_s: float) -> dict:
    in_len = arm.corpus.encoded.input_lengths.astype(np.float64)
    out_len = arm.corpus.encoded.target_lengths.astype(np.float64)
    plan = arm.corpus.plan
    sps = total.samples_per_s()
    return {
        **dataclasses.asdict(arm.spec),
        "vocab": len(arm.corpus.tokenizer),
        "parameters": arm.parameters,
        "epoch_samples": len(plan),
        "mean_input_tokens": float(in_len[plan].mean()),  # over the epoch (task mix weights)
        "mean_target_tokens": float(out_len[plan].mean()),
        "timed_mean_input_tokens": total.input_tokens / total.samples,
        "padding_share": 1.0 - total.real_tokens / total.padded_tokens,
        "samples_per_s": sps,
        "tokens_per_s": total.real_tokens / total.seconds,
        "padded_tokens_per_s": total.padded_tokens / total.seconds,
        "round_samples_per_s": [r.samples_per_s() for r in rounds],
        "timed_seconds": total.seconds,
        "timed_steps": total.samples // arm.batch_size,
        "epoch_minutes_est": len(plan) / sps / 60.0,
        "train_flops_per_sample": flops,
        "achieved_gflop_s": flops * sps / 1e9,
        "setup_s": arm.corpus.setup_s,
        "warmup_s": warmup_s,
    }


def gpu_projection(summary: dict, epochs: int, tflops: float, mfus: list[float]) -> dict:
    """GPU time of ``epochs`` epochs from counted FLOPs: work / (peak x utilization)."""
    work = summary["epoch_samples"] * epochs * summary["train_flops_per_sample"]
    return {
        "epochs": epochs,
        "train_pflop": work / 1e15,
        "gpu_tflops": tflops,
        "gpu_hours": {f"{m:g}": work / (tflops * 1e12 * m) / 3600.0 for m in mfus},
        "cpu_hours_at_measured_rate": summary["epoch_samples"] * epochs / summary["samples_per_s"] / 3600.0,
    }


def print_table(result: dict) -> None:
    hw, cfg, arms = result["hardware"], result["config"], result["arms"]
    print(
        f"\ngensar training throughput ({result['compare']}): preset {cfg['preset']}, batch {cfg['batch_size']}, "
        f"{hw['threads']} threads, {cfg['steps']} steps x {cfg['repeats']} rounds per arm"
    )
    print(f"data: {result['data']['source']} ({result['data']['items']} items); ids: {result['ids']}")
    print(f"{hw['cpu']}, {hw['cores']} cores; torch {hw['torch']}, transformers {hw['transformers']}")
    head = (
        f"{'arm':<9} {'vocab':>6} {'params':>11} {'in tok':>7} {'out tok':>7} {'padding':>7} "
        f"{'samples/s':>9} {'tokens/s':>9} {'MFLOP/smp':>9} {'epoch min':>9}"
    )
    print(head)
    print("-" * len(head))
    for name, a in arms.items():
        print(
            f"{name:<9} {a['vocab']:>6} {a['parameters']:>11,} {a['mean_input_tokens']:>7.1f} "
            f"{a['mean_target_tokens']:>7.1f} {a['padding_share']:>7.1%} {a['samples_per_s']:>9.1f} "
            f"{a['tokens_per_s']:>9.0f} {a['train_flops_per_sample'] / 1e6:>9.1f} {a['epoch_minutes_est']:>9.1f}"
        )
    r = result["ratio"]
    first, second = arms
    print(
        f"{first} / {second}: {r['samples_per_s']:.2f}x samples/s "
        f"(rounds: {', '.join(f'{x:.2f}' for x in r['round_samples_per_s'])})"
    )
    for name, a in arms.items():
        proj = a["projection"]
        hours = ", ".join(f"{h:.3g} h at MFU {m}" for m, h in proj["gpu_hours"].items())
        print(
            f"projected ({name}): {proj['epochs']} epochs = {proj['train_pflop']:.2f} PFLOP; "
            f"on a {proj['gpu_tflops']:g}-TFLOP/s GPU {hours}; "
            f"{proj['cpu_hours_at_measured_rate']:.1f} h at this machine's measured rate"
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
    specs = COMPARISONS[args.compare]
    try:
        if args.json is not None:  # before any work: never replace a file this benchmark did not write
            check_output_json(args.json, "benchmark", "train_throughput")
        cfg = base_config(args)
        for spec in specs:
            dataclasses.replace(cfg.train, bf16=spec.bf16, compile=spec.compile).check_device(CPU)
        if args.data is None:
            print("bench_train: generating and preparing the synthetic world ...", file=sys.stderr)
            data = synthetic_data(cfg.train.seed)
        else:
            data = PreparedData.load(args.data)
        items = data.items["item_id"].tolist()
        if args.ids is None:
            ids = stand_in_ids(items, args.codebook, cfg.train.seed)
            ids_desc = f"stand-in (random, 4 tokens, codebook {args.codebook})"
        else:
            ids, ids_desc = IdMaps.load(args.ids), str(args.ids)
            ids.require_items(items, args.ids)
        corpora: dict[str, Corpus] = {}
        arms: dict[str, Arm] = {}
        for spec in specs:
            if spec.style not in corpora:
                print(f"bench_train: encoding the {spec.style} samples ...", file=sys.stderr)
                corpora[spec.style] = build_corpus(spec.style, data, ids, cfg)
            arms[spec.name] = build_arm(spec, corpora[spec.style], cfg)
    except GensarError as err:
        print(f"bench_train: error: {err}", file=sys.stderr)
        return 2

    flops = {name: flops_per_sample(arm, args.flop_batches) for name, arm in arms.items()}
    warmup_s = {}
    for name, arm in arms.items():
        t0 = time.perf_counter()
        run_steps(arm, 0, args.warmup)
        warmup_s[name] = time.perf_counter() - t0
    names = list(arms)
    totals = {n: Timing() for n in names}
    rounds: dict[str, list[Timing]] = {n: [] for n in names}
    for r in range(args.repeats):
        first = args.warmup + r * args.steps  # both arms train on the same plan positions
        for name in names if r % 2 == 0 else names[::-1]:
            t = run_steps(arms[name], first, args.steps)
            rounds[name].append(t)
            totals[name].add(t)
            print(f"bench_train: round {r + 1}/{args.repeats} {name}: {t.samples_per_s():.1f} samples/s",
                  file=sys.stderr)

    summary = {n: arm_summary(arms[n], totals[n], rounds[n], flops[n], warmup_s[n]) for n in names}
    for n in names:
        summary[n]["projection"] = gpu_projection(
            summary[n], args.project_epochs or cfg.train.epochs, args.gpu_tflops, args.mfu
        )
    a, b = (summary[n] for n in names)
    result = {
        "benchmark": "train_throughput",
        "compare": args.compare,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "hardware": hardware(threads),
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "config": {
            "config": str(args.config) if args.config else None,
            "preset": cfg.backbone.preset,
            "dropout": cfg.backbone.dropout,
            "batch_size": cfg.train.batch_size,
            "max_input_len": cfg.train.max_input_len,
            "length_buckets": cfg.train.length_buckets,
            "steps": args.steps,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "seed": cfg.train.seed,
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
            "samples_per_s": a["samples_per_s"] / b["samples_per_s"],
            "round_samples_per_s": [
                x / y for x, y in zip(a["round_samples_per_s"], b["round_samples_per_s"], strict=True)
            ],
            "tokens_per_s": a["tokens_per_s"] / b["tokens_per_s"],
            "input_length": a["mean_input_tokens"] / b["mean_input_tokens"],
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
