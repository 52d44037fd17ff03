"""Cost curves: wall time and peak memory of every stage as the data grows (issue 18 section 1).

For each size (events, catalog items) the benchmark builds a world, then runs each stage as its own
process and records its wall time and peak resident memory (``ru_maxrss`` of that process, from
``os.wait4``), so one stage's memory never hides another's:

    world      the interaction log (not a gensar stage: the input every stage below reads)
    prepare    ``gensar prepare`` (k-core, semi-synthetic search, leave-one-out, BM25 candidates)
    semantic   the sentence encoder over every item's text (``encode_items``)
    sasrec     SASRec's collaborative embeddings, ``--sasrec-epochs`` epochs (per-epoch figure too)
    ids        ``gensar ids`` on those embeddings: RQ-VAE (``--rqvae-epochs``) + unique ID assignment
    train      ``gensar train`` capped at ``--train-steps`` steps (``train.steps_per_epoch``):
               samples/s of the steps, and the set-up before them (tokenizer, samples, encoding)
    eval       ``gensar evaluate --ranker generative`` on ``--eval-examples`` test examples per
               behavior: sampled candidates, then the whole catalog (``--full-ranking``)
    serve      loading the serving engine (its two identifier tries timed on their own) and
               single-request p50 / p95 of ``/recommend`` and ``/search`` (in process, no HTTP)

The world: items from ``gensar synth``'s catalogue (titles, category paths, brands), events drawn
here, vectorized: each user (10-20 clicks) has two preferred leaf categories and clicks in them with
probability 0.8, else anywhere, popularity-weighted (log-normal). ``gensar synth``'s own story
draws every event over the whole catalogue (O(events x items)), so at 1.7M events and 63K items it
alone would take hours; the stages' costs depend on sizes, not on that story. Events are
recommendation clicks only: ``gensar prepare`` turns half into category-query search sessions, as
it does for any public log (the ``mixed`` protocol).

Sizes are ``EVENTS:ITEMS`` (``60k:4k``) or the named ones of the issue: ``60k`` (60K events,
4K items), ``600k`` (600K, 20K), ``1.7m`` (1.7M, 63K: the paper's Amazon Electronics) and ``6m``
(6M, 200K). Per stage the table gives seconds and peak MiB, and the growth from the smallest size
as a ratio (time and memory x) and a log-log slope against events (1 = linear). A figure comes
from one run on a shared machine: the ratios and slopes mean more than the absolute numbers.

    flock /tmp/gensar-cpu.lock env GENSAR_THREADS=2 python benchmarks/bench_scale.py \\
        --sizes 60k,600k --out runs/bench-scale
    python benchmarks/bench_scale.py --sizes 20k:2k,60k:4k --out runs/bench-scale-smoke \\
        --train-steps 5 --eval-examples 50 --sasrec-epochs 1 --rqvae-epochs 2
    python benchmarks/bench_scale.py --sizes 1.7m,6m --until prepare --out runs/bench-scale-prepare

Writes ``OUT/results.json`` (atomic; after every stage, so a killed run keeps what it measured),
``OUT/scale.png`` (log-log, time and memory per stage) and one work directory per size
(``OUT/SIZE/``, a run directory ``gensar evaluate`` and ``gensar serve`` read). An existing
non-empty ``OUT`` that this benchmark did not write is refused (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from gensar.io import atomic_write_json

NAMED_SIZES = {"60k": (60_000, 4_000), "600k": (600_000, 20_000), "1.7m": (1_700_000, 63_000),
               "6m": (6_000_000, 200_000)}
STAGES = ("world", "prepare", "semantic", "sasrec", "ids", "train", "eval", "serve")
MARKER = "bench_scale.json"  # names OUT as this benchmark's own
EVENTS_PER_USER = (10, 20)  # uniform, inclusive
PREFERRED_PROB = 0.8


# ---- sizes -----------------------------------------------------------------------------------------
def parse_size(text: str) -> tuple[str, int, int]:
    """``60k`` -> ("60k", 60000, 4000); ``20k:2k`` -> ("20k-2k", 20000, 2000)."""
    text = text.strip().lower()
    if text in NAMED_SIZES:
        return (text, *NAMED_SIZES[text])
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?[km]?):([0-9]+(?:\.[0-9]+)?[km]?)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected one of {', '.join(NAMED_SIZES)} or EVENTS:ITEMS")
    events, items = (_count(g) for g in m.groups())
    if items < 200 or events < 2 * items:
        raise argparse.ArgumentTypeError(f"size {text!r}: needs >= 200 items and >= 2 events per item")
    return (text.replace(":", "-"), events, items)


def _count(text: str) -> int:
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(round(float(text.rstrip("km")) * scale))


# ---- the world (child process) ---------------------------------------------------------------------
def build_world(n_events: int, n_items: int, seed: int, out: Path) -> dict:
    import pandas as pd

    from gensar.data.canonical_writer import write_tables
    from gensar.data.synth import SynthConfig, generate_world

    # The catalogue of gensar synth (one user: its story's events are not used).
    catalog = generate_world(SynthConfig(seed=seed, n_users=1, n_items=n_items, min_events=1, max_events=1),
                             progress=False)
    items = catalog.items
    leaf = np.asarray(catalog.info["item_leaf"])
    rng = np.random.default_rng([seed, 0x5CA1E])
    popularity = rng.lognormal(0.0, 0.8, n_items)
    lo, hi = EVENTS_PER_USER
    n_users = max(1, round(n_events / ((lo + hi) / 2)))
    lengths = rng.integers(lo, hi + 1, n_users)
    users = np.repeat(np.arange(n_users), lengths)
    n = len(users)
    # popularity-weighted draws by inverse CDF: over the catalogue, or within one leaf
    order = np.lexsort((np.arange(n_items), leaf))  # items grouped by leaf
    leaves, leaf_start = np.unique(leaf[order], return_index=True)
    leaf_end = np.append(leaf_start[1:], n_items)
    cum = np.cumsum(popularity[order])
    before = np.where(leaf_start > 0, cum[np.maximum(leaf_start - 1, 0)], 0.0)
    preferred = rng.integers(len(leaves), size=(n_users, 2))
    chosen_leaf = preferred[users, rng.integers(2, size=n)]
    u = rng.random(n)
    lo_cum, hi_cum = before[chosen_leaf], cum[leaf_end[chosen_leaf] - 1]
    in_leaf = np.searchsorted(cum, lo_cum + u * (hi_cum - lo_cum), side="right")
    in_leaf = np.clip(in_leaf, leaf_start[chosen_leaf], leaf_end[chosen_leaf] - 1)
    anywhere = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), n_items - 1)
    pick = order[np.where(rng.random(n) < PREFERRED_PROB, in_leaf, anywhere)]
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    position = np.arange(n) - first
    timestamp = (1_600_000_000 + np.repeat(rng.integers(0, 30 * 86_400, n_users), lengths)
                 + position * 86_400 + rng.integers(0, 86_400, n))
    width = len(str(n_users - 1))
    item_ids = items["item_id"].to_numpy()
    events = pd.DataFrame({
        "event_id": np.arange(n, dtype=np.int64),
        "user_id": [f"U{x:0{width}d}" for x in users],
        "timestamp": timestamp.astype(np.int64),
        "behavior": "rec",
        "query": "",
        "items": [[x] for x in item_ids[pick]],
    })
    out.mkdir(parents=True, exist_ok=True)
    write_tables(items, events, out, "parquet")
    return {"users": int(n_users), "events": int(n), "items": int(n_items)}


# ---- in-process stages (child process) -------------------------------------------------------------
def child(stage: str, work: Path, opts: dict) -> dict:
    t0 = time.perf_counter()
    if stage == "world":
        info = build_world(opts["events"], opts["items"], opts["seed"], work / "world")
        return {**info, "seconds": time.perf_counter() - t0}
    from gensar.data.prepared import PreparedData

    data = PreparedData.load(work / "data")
    loaded = time.perf_counter()
    if stage == "semantic":
        from gensar.embed.semantic import SemanticConfig, encode_items

        emb = encode_items(data.training_view().item_texts, SemanticConfig(), None)
        np.save(work / "semantic_emb.npy", np.asarray(emb, dtype=np.float32))
        return {"seconds": time.perf_counter() - loaded, "items_per_s": len(emb) / (time.perf_counter() - loaded)}
    if stage == "sasrec":
        from gensar.embed.collaborative import collaborative_embeddings
        from gensar.embed.sasrec import SASRecConfig

        cfg = SASRecConfig(loss=opts["sasrec_loss"], epochs=opts["sasrec_epochs"], patience=opts["sasrec_epochs"],
                           seed=opts["seed"])
        emb = collaborative_embeddings(data.training_view(), cfg, progress=False)
        np.save(work / "collaborative_emb.npy", emb)
        seconds = time.perf_counter() - loaded
        return {"seconds": seconds, "seconds_per_epoch": seconds / opts["sasrec_epochs"]}
    if stage == "serve":
        return serve_latency(work, data, opts)
    raise SystemExit(f"unknown child stage {stage!r}")


def serve_latency(work: Path, data, opts: dict) -> dict:
    import torch

    from gensar.ids.trie import IdTrie
    from gensar.serve.engine import HistoryEvent
    from gensar.serve.generative import GenerativeEngine

    t0 = time.perf_counter()
    engine = GenerativeEngine.from_run_dir(work, data)
    load_s = time.perf_counter() - t0
    item_ids = data.items["item_id"].tolist()
    t1 = time.perf_counter()
    for kind in ("collaborative", "semantic"):
        IdTrie.build(engine.id_codes(kind, item_ids))
    trie_s = time.perf_counter() - t1
    rng = np.random.default_rng(opts["seed"])
    events = data.events
    starts = np.flatnonzero(np.r_[True, events["user_id"].to_numpy()[1:] != events["user_id"].to_numpy()[:-1]])
    queries = events.loc[events["behavior"] == "search", "query"].to_numpy()

    def history() -> list[HistoryEvent]:
        s = int(starts[rng.integers(len(starts))])
        rows = events.iloc[s : s + 10]
        rows = rows[rows["user_id"] == rows["user_id"].iloc[0]]
        return [HistoryEvent(b, q, tuple(i)) for b, q, i in zip(rows["behavior"], rows["query"], rows["items"], strict=True)]

    times: dict[str, list[float]] = {"recommend": [], "search": []}
    with torch.inference_mode():
        engine.recommend([history()], 10)  # warm-up
        for _ in range(opts["requests"]):
            h, q = history(), str(queries[rng.integers(len(queries))])
            for task, call in (("recommend", lambda: engine.recommend([h], 10)),
                               ("search", lambda: engine.search([q], [h], 10))):
                start = time.perf_counter()
                call()
                times[task].append((time.perf_counter() - start) * 1000)
    out = {"seconds": time.perf_counter() - t0, "load_s": load_s, "trie_s": trie_s}
    for task, t in times.items():
        out[f"{task}_p50_ms"] = float(np.percentile(t, 50))
        out[f"{task}_p95_ms"] = float(np.percentile(t, 95))
    return out


# ---- the parent: one process per stage -------------------------------------------------------------
def measure(cmd: list[str], log: Path, env: dict[str, str], stdout: Path | None = None) -> dict:
    """Run ``cmd`` to completion (stderr, and stdout unless ``stdout`` is given, into ``log``);
    its wall time, CPU time (user + system), peak RSS (MiB) and exit code."""
    start = time.perf_counter()
    with log.open("wb") as err, open(stdout if stdout is not None else os.devnull, "wb") as answer:
        if stdout is None:
            proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT, env=env)
        else:
            proc = subprocess.Popen(cmd, stdout=answer, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    # CPU seconds beside wall time: on a shared machine the wall time also counts waiting for a core.
    return {"wall_s": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024, "rc": proc.returncode}


def stage_command(stage: str, work: Path, args: argparse.Namespace, n_events: int, n_items: int) -> list[str]:
    gensar = [sys.executable, "-m", "gensar.cli"]
    me = [sys.executable, str(Path(__file__).resolve()), "--child", stage, "--work", str(work)]
    opts = json.dumps({"events": n_events, "items": n_items, "seed": args.seed, "sasrec_epochs": args.sasrec_epochs,
                       "sasrec_loss": args.sasrec_loss,
                       "requests": args.requests})
    if stage in ("world", "semantic", "sasrec", "serve"):
        return [*me, "--opts", opts]
    if stage == "prepare":
        return [*gensar, "prepare", str(work / "world"), "--out", str(work / "data"), "--seed", str(args.seed)]
    if stage == "ids":
        return [*gensar, "ids", str(work / "data"), "--out", str(work / "ids"),
                "--set", f"semantic_emb={work / 'semantic_emb.npy'}",
                "--set", f"collaborative_emb={work / 'collaborative_emb.npy'}",
                "--set", f"rqvae.epochs={args.rqvae_epochs}", "--set", "progress=false"]
    if stage == "train":
        return [*gensar, "train", str(work / "data"), "--ids", str(work / "ids"), "--out", str(work / "model"),
                "--set", f"backbone.preset={args.preset}", "--set", "train.epochs=1",
                "--set", f"train.steps_per_epoch={args.train_steps}", "--set", "train.eval_examples=50",
                "--set", "train.progress=false", "--set", f"train.seed={args.seed}"]
    raise ValueError(stage)


def eval_command(work: Path, args: argparse.Namespace, full: bool) -> list[str]:
    return [sys.executable, "-m", "gensar.cli", "evaluate", str(work), "--split", "test", "--ranker", "generative",
            "--max-examples", str(args.eval_examples), "--json", *(["--full-ranking"] if full else [])]


def stage_details(stage: str, work: Path) -> dict:
    """What a CLI stage wrote about itself (its own timings, sizes)."""
    if stage == "prepare":
        counts = json.loads((work / "data" / "manifest.json").read_text())["counts"]
        return {"prepared": {k: counts[k] for k in ("users", "items", "events", "search_sessions")}}
    if stage == "ids":
        report = json.loads((work / "ids" / "ids_report.json").read_text())
        return {"rqvae_seconds": report.get("train_seconds")}
    if stage == "train":
        state = json.loads((work / "model" / "train_state.json").read_text())
        first = state["history"][0]
        return {"samples_per_s": first["samples_per_s"], "steps_seconds": first["train_seconds"],
                "epoch_size": state["epoch_size"], "parameters": state["parameters"]["total"],
                "epoch_minutes_est": state["epoch_size"] / first["samples_per_s"] / 60}
    return {}


def run_size(name: str, n_events: int, n_items: int, args: argparse.Namespace, result: dict) -> None:
    work = args.out / name
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    rows = result["sizes"].setdefault(name, {"events": n_events, "items": n_items, "stages": {}})
    for stage in STAGES[: STAGES.index(args.until) + 1]:
        if stage in rows["stages"] and rows["stages"][stage].get("rc") == 0:
            continue  # measured by an earlier, interrupted run into the same OUT
        log = work / f"{stage}.log"
        print(f"[{name}] {stage} ...", flush=True)
        if stage == "eval":
            row = {}
            for full in (False, True):
                key = "full" if full else "sampled"
                answer, log = work / f"eval-{key}.json", work / f"eval-{key}.log"
                m = measure(eval_command(work, args, full), log, env, stdout=answer)
                row[f"{key}_wall_s"], row[f"{key}_peak_rss_mib"], row["rc"] = m["wall_s"], m["peak_rss_mib"], m["rc"]
                if m["rc"] != 0:
                    break
                row[f"{key}_metrics"] = json.loads(answer.read_text())
            row["wall_s"] = row.get("sampled_wall_s", 0.0) + row.get("full_wall_s", 0.0)
            row["peak_rss_mib"] = max(row.get("sampled_peak_rss_mib", 0.0), row.get("full_peak_rss_mib", 0.0))
        else:
            row = measure(stage_command(stage, work, args, n_events, n_items), log, env)
            if row["rc"] == 0:
                child_json = work / f"{stage}.json"
                if child_json.is_file():
                    row.update(json.loads(child_json.read_text()))
                row.update(stage_details(stage, work))
        rows["stages"][stage] = row
        atomic_write_json(args.out / "results.json", result)
        cpu = f" ({row['cpu_s']:.1f} s CPU)" if "cpu_s" in row else ""
        print(f"[{name}] {stage}: {row['wall_s']:.1f} s{cpu}, peak {row['peak_rss_mib']:.0f} MiB"
              + ("" if row["rc"] == 0 else f", FAILED (rc {row['rc']}, see {log})"), flush=True)
        if row["rc"] != 0:
            return  # later stages need this one's output


# ---- report ----------------------------------------------------------------------------------------
def hardware() -> dict:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": os.environ.get("GENSAR_THREADS", "all"),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}


def by_events(result: dict) -> list[tuple[str, dict]]:
    return sorted(result["sizes"].items(), key=lambda kv: (kv[1]["events"], kv[1]["items"]))


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y on log x (1 = linear growth)."""
    if len(xs) < 2 or min(ys) <= 0:
        return None
    lx, ly = np.log(xs), np.log(ys)
    return float(np.polyfit(lx, ly, 1)[0])


def table(result: dict) -> str:
    sizes = by_events(result)
    head = "| stage | " + " | ".join(f"{n} s / MiB" for n, _ in sizes) + " | time x | memory x | slope |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for stage in STAGES:
        ok = [(n, s) for n, s in sizes if s["stages"].get(stage, {}).get("rc") == 0]
        cells = []
        for n, s in sizes:
            row = s["stages"].get(stage)
            cells.append("-" if not row or row.get("rc") != 0 else f"{row['wall_s']:.1f} / {row['peak_rss_mib']:.0f}")
        growth = "| - | - | - |"
        if len(ok) >= 2:
            first, last = ok[0][1], ok[-1][1]
            t = last["stages"][stage]["wall_s"] / first["stages"][stage]["wall_s"]
            m = last["stages"][stage]["peak_rss_mib"] / first["stages"][stage]["peak_rss_mib"]
            sl = slope([s["events"] for _, s in ok], [s["stages"][stage]["wall_s"] for _, s in ok])
            growth = f"| {t:.1f} | {m:.1f} | {sl:.2f} |"
        lines.append(f"| {stage} | " + " | ".join(cells) + " " + growth)
    return "\n".join(lines)


def details(result: dict) -> str:
    out = []
    for name, s in by_events(result):
        st = s["stages"]
        parts = [f"{name} ({s['events']:,} events, {s['items']:,} items)"]
        if "sasrec" in st and st["sasrec"].get("rc") == 0:
            parts.append(f"SASRec {st['sasrec']['seconds_per_epoch']:.1f} s/epoch")
        if "semantic" in st and st["semantic"].get("rc") == 0:
            parts.append(f"encoder {st['semantic']['items_per_s']:.0f} items/s")
        if "train" in st and st["train"].get("rc") == 0:
            t = st["train"]
            parts.append(f"train {t['samples_per_s']:.0f} samples/s, epoch {t['epoch_size']:,} samples "
                         f"(~{t['epoch_minutes_est']:.0f} min), rest (set-up, validation, save) "
                         f"{t['wall_s'] - t['steps_seconds']:.0f} s")
        if "eval" in st and st["eval"].get("rc") == 0:
            e = st["eval"]
            parts.append(f"eval sampled {e['sampled_wall_s']:.0f} s, full {e['full_wall_s']:.0f} s")
        if "serve" in st and st["serve"].get("rc") == 0:
            v = st["serve"]
            parts.append(f"tries {v['trie_s']:.2f} s, p50 rec {v['recommend_p50_ms']:.0f} ms / "
                         f"search {v['search_p50_ms']:.0f} ms")
        out.append("- " + "; ".join(parts))
    return "\n".join(out)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for stage in STAGES:
        ok = [s for _, s in by_events(result) if s["stages"].get(stage, {}).get("rc") == 0]
        if not ok:
            continue
        xs = [s["events"] for s in ok]
        axes[0].plot(xs, [s["stages"][stage]["wall_s"] for s in ok], marker="o", label=stage)
        axes[1].plot(xs, [s["stages"][stage]["peak_rss_mib"] for s in ok], marker="o", label=stage)
    for ax, what in zip(axes, ("wall time (s)", "peak RSS (MiB)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("events")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"gensar stage costs ({result['hardware']['cpu']}, {result['hardware']['threads']} threads)",
                 fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def refuse(message: str) -> int:
    print(f"bench_scale: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="60k,600k", help="comma-separated: 60k, 600k, 1.7m, 6m or EVENTS:ITEMS")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sasrec-epochs", type=int, default=2)
    p.add_argument("--sasrec-loss", default="full_ce", choices=("full_ce", "sampled_ce", "bce"),
                   help="SASRec's loss (full_ce, the default of gensar, is O(events x items))")
    p.add_argument("--rqvae-epochs", type=int, default=20)
    p.add_argument("--train-steps", type=int, default=50, help="optimizer steps timed")
    p.add_argument("--preset", default="cpu", choices=("tiny", "cpu", "t5-small"), help="backbone preset")
    p.add_argument("--eval-examples", type=int, default=1000, help="test examples per behavior")
    p.add_argument("--requests", type=int, default=50, help="serving requests per task")
    p.add_argument("--until", default=STAGES[-1], choices=STAGES,
                   help="last stage to run (each needs the ones before it): e.g. prepare alone at 6M events")
    p.add_argument("--child", choices=("world", "semantic", "sasrec", "serve"), help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--opts", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        atomic_write_json(args.work / f"{args.child}.json", child(args.child, args.work, json.loads(args.opts)))
        return 0
    if args.out is None:
        p.error("--out is required")
    for name in ("sasrec_epochs", "rqvae_epochs", "train_steps", "eval_examples", "requests"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    except argparse.ArgumentTypeError as err:
        p.error(str(err))
    sizes.sort(key=lambda s: s[1])
    marker = args.out / MARKER
    if args.out.exists() and not args.out.is_dir():
        return refuse(f"{args.out} is not a directory")
    if args.out.exists() and any(args.out.iterdir()) and not marker.is_file():
        return refuse(f"{args.out} is not empty and was not written by bench_scale (refusing to write there)")
    results_path = args.out / "results.json"
    result = json.loads(results_path.read_text()) if results_path.is_file() else {}
    # Stages an earlier run measured are kept, so they must have run with the same options
    # (more sizes may be added).
    options = {k: v for k, v in vars(args).items() if k not in ("out", "child", "work", "opts", "sizes", "until")}
    if result.get("options", options) != options:
        changed = sorted(k for k in options.keys() | result["options"].keys()
                         if result["options"].get(k) != options.get(k))
        return refuse(f"{args.out} holds a run with other options ({', '.join(changed)}): use another --out")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {"written_by": "benchmarks/bench_scale.py"})
    result.update({"hardware": hardware(), "options": options})
    result.setdefault("sizes", {})
    for name, n_events, n_items in sizes:
        run_size(name, n_events, n_items, args, result)
    plot(result, args.out / "scale.png")
    hw = result["hardware"]
    print(f"\n{hw['cpu']}, {hw['cores']} cores, {hw['threads']} torch threads; torch {hw['torch']}")
    print(table(result))
    print(details(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
