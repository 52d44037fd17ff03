"""Decoding benchmark: our trie-constrained beam search vs transformers' generate().

Same randomly initialised T5 for every decoder (default: gensar's ``cpu`` backbone shape); synthetic
4-token identifiers (one codebook of ``--codebook`` tokens per level, appended after a word
vocabulary of ``--word-vocab`` pieces). Measures

  (a) agreement: our top-k items == generate(num_beams, prefix_allowed_tokens_fn over a Python dict
      trie) top-k items, up to ties (|score difference| <= --tie-tol),
  (b) speed-up over that reference,
  (c) constraint overhead: constrained vs our own unconstrained beam search of the same length,
  (d) catalog scaling (e.g. 4K, 100K, 1M identifiers): trie build time, trie memory, decode time,
      plus a per-example candidate-list forest (batch x 100 items).

Ratios are taken against reference runs in the same process. Prints a table and writes JSON:

    flock /tmp/gensar-cpu.lock env GENSAR_THREADS=2 python benchmarks/bench_decode.py
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import T5Config, T5ForConditionalGeneration

from gensar.decode.beam import beam_search, constrained_beam_search
from gensar.decode.reference import DictTrie, hf_constrained_generate
from gensar.ids.trie import IdTrie
from gensar.io import atomic_write_json
from gensar.runtime import configure_threads, seed_everything


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=4000, help="catalog for the agreement/speed comparison")
    p.add_argument("--id-length", type=int, default=4)
    p.add_argument("--codebook", type=int, default=256, help="tokens per identifier level")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--beam", type=int, default=30)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--input-length", type=int, default=64, help="encoder tokens per example")
    p.add_argument("--batches", type=int, default=3, help="timed batches for our decoder")
    p.add_argument("--hf-batches", type=int, default=1, help="timed batches for generate() (slow)")
    p.add_argument("--catalog-sizes", default="4000,100000,1000000", help="comma-separated; empty to skip")
    p.add_argument("--candidates", type=int, default=100, help="items per candidate list (forest)")
    p.add_argument(
        "--word-vocab",
        type=int,
        default=6000,
        help="word pieces before the identifier tokens (gensar's pruned vocabulary: ~6k; T5's: 32100)",
    )
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--d-ff", type=int, default=512)
    p.add_argument("--layers", type=int, default=4, help="encoder and decoder layers each")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--tie-tol", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default $GENSAR_THREADS or all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-hf", action="store_true", help="skip the generate() reference")
    p.add_argument("--out", default="runs/bench_decode.json")
    return p.parse_args()


def make_model(args: argparse.Namespace) -> T5ForConditionalGeneration:
    vocab = args.word_vocab + 1 + args.id_length * args.codebook  # words, <rec>, identifier tokens
    cfg = T5Config(
        vocab_size=vocab,
        d_model=args.d_model,
        d_ff=args.d_ff,
        d_kv=args.d_model // args.heads,
        num_heads=args.heads,
        num_layers=args.layers,
        num_decoder_layers=args.layers,
        dropout_rate=0.0,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5ForConditionalGeneration(cfg).eval()


def synthetic_codes(n: int, args: argparse.Namespace, rng: np.random.Generator) -> np.ndarray:
    """[n, id_length] unique identifiers; level l uses tokens offset + l * codebook + [0, codebook)."""
    codes = np.unique(rng.integers(0, args.codebook, size=(int(n * 1.01) + 16, args.id_length)), axis=0)
    codes = codes[rng.permutation(len(codes))[:n]]
    assert len(codes) == n, "codebook too small for the catalog"
    return codes + (args.word_vocab + 1) + np.arange(args.id_length) * args.codebook


def timed(fn: Callable[[], object], repeats: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def same_up_to_ties(ours_items, ours_scores, ref_items, ref_scores, tol: float) -> bool:
    """Same items in the same order, except where the two lists' scores tie within ``tol``."""
    if not torch.allclose(ours_scores, ref_scores, atol=tol, rtol=0):
        return False
    for pos in range(len(ours_items)):
        if ours_items[pos] != ref_items[pos]:
            near = (ref_scores - ours_scores[pos]).abs() <= tol
            if int(ours_items[pos]) not in set(ref_items[near].tolist()):
                return False
    return True


def trie_query_seconds(trie: IdTrie, rows: int, rng: np.random.Generator) -> float:
    """Time of the trie work in one constrained search: children of ``rows`` nodes at every depth
    (what each step asks) plus the final leaf -> item lookup."""
    depth = trie.depth_of(torch.arange(trie.num_nodes))
    total = 0.0
    for d in range(trie.max_depth):
        level = (depth == d).nonzero().squeeze(1)
        nodes = level[torch.from_numpy(rng.integers(0, len(level), size=rows))]
        t0 = time.perf_counter()
        trie.children(nodes)
        total += time.perf_counter() - t0
    leaves = (depth == trie.max_depth).nonzero().squeeze(1)[:rows]
    t0 = time.perf_counter()
    trie.item_at(leaves)
    return total + time.perf_counter() - t0


def hardware(threads: int) -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": threads,
        "python": platform.python_version(),
    }


def main() -> None:
    args = parse_args()
    threads = configure_threads(args.threads)
    seed_everything(args.seed)
    rng = np.random.default_rng(args.seed)
    model = make_model(args)
    n_batches = max(args.batches, args.hf_batches)
    inputs = [torch.randint(2, args.word_vocab, (args.batch, args.input_length)) for _ in range(n_batches)]
    mask = torch.ones(args.batch, args.input_length, dtype=torch.long)
    prefix = [args.word_vocab]  # the behavior token, e.g. <rec>
    result: dict = {
        "hardware": hardware(threads),
        "args": vars(args),
        "model": {"vocab": model.config.vocab_size, "params": sum(p.numel() for p in model.parameters())},
    }

    # ---- (a)-(c) on the --items catalog ------------------------------------------------------------
    codes = synthetic_codes(args.items, args, rng)
    trie = IdTrie.build(codes)

    def ours(i: int):
        return constrained_beam_search(
            model, inputs[i], mask, trie, prefix, beam_size=args.beam, top_k=args.top_k
        )

    def unconstrained(i: int):
        return beam_search(
            model, inputs[i], mask, prefix, args.id_length, beam_size=args.beam, top_k=args.top_k
        )

    dict_trie, dict_build = None, 0.0
    if not args.skip_hf:
        t0 = time.perf_counter()
        dict_trie = DictTrie(codes.tolist())
        dict_build = time.perf_counter() - t0

    def reference(i: int):
        return hf_constrained_generate(
            model, inputs[i], mask, dict_trie, torch.tensor(prefix), args.id_length, args.beam, args.top_k
        )

    ours(0), unconstrained(0)  # warm-up (allocator, lazy init)
    # Interleave the decoders batch by batch so that they see the same machine load (shared CPUs).
    ours_times, unc_times, hf_times, paired_ours = [], [], [], []
    agree = total = 0
    for i in range(n_batches):
        t, out = timed(lambda i=i: ours(i), 1)
        ours_times += t
        unc_times += timed(lambda i=i: unconstrained(i), 1)[0]
        if dict_trie is not None and i < args.hf_batches:
            t_ref, (items, scores) = timed(lambda i=i: reference(i), 1)
            hf_times += t_ref
            paired_ours += t
            for b in range(args.batch):
                total += 1
                agree += same_up_to_ties(out.items[b], out.scores[b], items[b], scores[b], args.tie_tol)
    t_ours, t_unc = statistics.median(ours_times), statistics.median(unc_times)
    trie_s = trie_query_seconds(trie, args.batch * args.beam, rng)
    result["ours"] = {
        "batch_s": ours_times,
        "median_batch_s": t_ours,
        "per_query_ms": 1e3 * t_ours / args.batch,
        "trie_query_s": trie_s,
        "trie_query_share": trie_s / t_ours,
    }
    result["unconstrained"] = {
        "batch_s": unc_times,
        "median_batch_s": t_unc,
        "per_query_ms": 1e3 * t_unc / args.batch,
        "constraint_overhead": sum(ours_times) / sum(unc_times) - 1.0,
    }
    if hf_times:
        t_hf = statistics.median(hf_times)
        result["hf_generate"] = {
            "batch_s": hf_times,
            "median_batch_s": t_hf,
            "per_query_ms": 1e3 * t_hf / args.batch,
            "dict_trie_build_s": dict_build,
            "speedup": sum(hf_times) / sum(paired_ours),  # same batches, run back to back
            "agree_examples": agree,
            "compared_examples": total,
        }

    # ---- (d) catalog scaling ----------------------------------------------------------------------
    scaling = []
    sizes = [int(s) for s in args.catalog_sizes.split(",") if s.strip()]
    for n in sizes:
        cat = synthetic_codes(n, args, rng)
        build_s, big = timed(lambda cat=cat: IdTrie.build(cat), 1)
        t, _ = timed(
            lambda big=big: constrained_beam_search(
                model, inputs[0], mask, big, prefix, beam_size=args.beam, top_k=args.top_k
            ),
            3,
        )
        scaling.append(
            {
                "items": n,
                "build_s": build_s[0],
                "nodes": big.num_nodes,
                "trie_mb": big.nbytes / 2**20,
                "decode_batch_s": min(t),
                "per_query_ms": 1e3 * min(t) / args.batch,
            }
        )
        del big, cat
    result["scaling"] = scaling

    # Per-example candidate lists: a forest of batch x candidates items, built per batch.
    cands = np.stack([rng.choice(len(codes), size=args.candidates, replace=False) for _ in range(args.batch)])
    forest_build, forest = timed(lambda: IdTrie.build_forest(codes, cands), 5)
    t, _ = timed(
        lambda: constrained_beam_search(
            model, inputs[0], mask, forest, prefix, beam_size=args.beam, top_k=args.top_k
        ),
        3,
    )
    result["forest"] = {
        "lists": args.batch,
        "per_list": args.candidates,
        "build_s": min(forest_build),
        "trie_mb": forest.nbytes / 2**20,
        "decode_batch_s": min(t),
        "per_query_ms": 1e3 * min(t) / args.batch,
    }

    print_table(result, args)
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


def print_table(r: dict, args: argparse.Namespace) -> None:
    h = r["hardware"]
    print(
        f"{h['cpu']} | {h['cores']} cores | torch {h['torch']} | transformers {h['transformers']} "
        f"| threads {h['torch_threads']}"
    )
    print(
        f"model: {r['model']['params'] / 1e6:.1f}M params, vocab {r['model']['vocab']}; batch {args.batch}, "
        f"beam {args.beam}, top-{args.top_k}, {args.id_length}-token ids, input {args.input_length} tokens"
    )
    print(f"\n{'decoder':<42}{'s/batch':>10}{'ms/query':>10}")
    rows = [
        ("ours: trie-constrained beam search", r["ours"]),
        ("ours: unconstrained beam search", r["unconstrained"]),
    ]
    if "hf_generate" in r:
        rows.append(("generate(prefix_allowed_tokens_fn, dict)", r["hf_generate"]))
    for name, m in rows:
        print(f"{name:<42}{m['median_batch_s']:>10.3f}{m['per_query_ms']:>10.2f}")
    print(
        f"constraint overhead vs unconstrained: {100 * r['unconstrained']['constraint_overhead']:+.1f}% "
        f"(trie queries: {1e3 * r['ours']['trie_query_s']:.1f} ms/batch = "
        f"{100 * r['ours']['trie_query_share']:.1f}% of constrained decoding)"
    )
    if "hf_generate" in r:
        g = r["hf_generate"]
        print(f"speed-up vs generate(): {g['speedup']:.1f}x ({args.hf_batches} batch(es) of generate timed)")
        print(
            f"top-{args.top_k} agreement with generate() up to ties: "
            f"{g['agree_examples']}/{g['compared_examples']} examples"
        )
    print(f"\n{'catalog':>10}{'build s':>10}{'nodes':>12}{'trie MB':>10}{'ms/query':>10}")
    for s in r["scaling"]:
        print(
            f"{s['items']:>10}{s['build_s']:>10.3f}{s['nodes']:>12}"
            f"{s['trie_mb']:>10.2f}{s['per_query_ms']:>10.2f}"
        )
    f = r["forest"]
    print(
        f"candidate forest {f['lists']}x{f['per_list']}: build {1e3 * f['build_s']:.1f} ms, "
        f"{f['trie_mb']:.2f} MB, {f['per_query_ms']:.2f} ms/query"
    )


if __name__ == "__main__":
    main()
