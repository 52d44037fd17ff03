"""Evaluating a trained generative model on the paper's protocol and on the whole catalog.

Sampled protocol (default, the paper's): each valid/test example ranks its saved candidate list
(target + 99 negatives) by constrained beam search restricted to those 100 identifiers (beam 30);
the target's rank is its position in the beam's output (not found = not ranked). ``likelihood``
instead scores all 100 candidates' identifiers exactly (no beam can miss the target).

Full ranking (``--full-ranking``): beam search over the whole catalog's trie; recall@5/10/20 and
ndcg@5/10/20 of the target among the top ``beam_size`` items.

With cold items (``gensar prepare --cold-items``) the catalog holds them with the identifiers the
cold stage gave them after training, and each behavior is also measured on its cold and warm
targets (``rec_cold``, ``rec_warm``, ...; ``gensar.eval.groups``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from gensar.data.prepared import PreparedData
from gensar.data.schema import BEHAVIORS
from gensar.decode.beam import constrained_beam_search
from gensar.eval.candidates import candidate_matrix, eval_examples
from gensar.eval.config import EvalConfig
from gensar.eval.groups import grouped, target_groups
from gensar.metrics import FULL_KS, ndcg_at_k, rank_from_retrieved, recall_at_k, summarize
from gensar.ids.trie import IdTrie
from gensar.model.scoring import pad_batch, rank_examples
from gensar.model.samples import example_samples
from gensar.model.trained import ID_KIND, TrainedModel, load_run


def evaluate_model(trained: TrainedModel, data: PreparedData, split: str, method: str = "beam",
                   beam_size: int = 30, batch_size: int = 32, max_examples: int = 0,
                   full_ranking: bool = False, progress: bool = True) -> dict[str, dict[str, float]]:
    """``{"rec": {metric: value, "n": count}, "search": {...}}`` for one split (with cold items
    also ``rec_cold``, ``rec_warm``, ``search_cold``, ``search_warm``)."""
    encoder = trained.encoder(data)
    item_ids = data.items["item_id"].tolist()
    out: dict[str, dict[str, float]] = {}
    for behavior in BEHAVIORS:
        examples = eval_examples(data, split, behavior, max_examples or None)
        if examples.empty:
            continue
        samples = example_samples(examples)
        start = time.perf_counter()
        if full_ranking:
            targets = np.array([data.item_index[t] for t in examples["target"]], dtype=np.int64)
            ranks = _beam_ranks(trained, encoder, samples, behavior, item_ids, None,
                                targets, beam_size, batch_size, progress)
            summary = _full_metrics
        else:
            cands = candidate_matrix(data, examples)  # [n, C], target first
            if method == "likelihood":
                lists = [data.candidate_lists[int(e)] for e in examples["example_id"]]
                ranks = rank_examples(trained.model, encoder, samples, lists, batch_examples=max(1, batch_size // 8))
            else:
                ranks = _beam_ranks(trained, encoder, samples, behavior, item_ids, cands,
                                    cands[:, 0], beam_size, batch_size, progress)
            summary = summarize
        seconds = round(time.perf_counter() - start, 2)

        def metrics(mask: np.ndarray | None, ranks=ranks, summary=summary, seconds=seconds) -> dict:
            if mask is None:
                return summary(ranks) | {"n": len(ranks), "seconds": seconds}
            return summary(ranks[mask]) | {"n": int(mask.sum())}

        out |= grouped(behavior, target_groups(data, examples), metrics)
    return out


def _full_metrics(ranks: np.ndarray) -> dict[str, float]:
    metrics = {f"recall@{k}": recall_at_k(ranks, k) for k in FULL_KS}
    return metrics | {f"ndcg@{k}": ndcg_at_k(ranks, k) for k in FULL_KS}


def _beam_ranks(trained: TrainedModel, encoder, samples, behavior: str, item_ids: list[str],
                cands: np.ndarray | None, targets: np.ndarray, beam_size: int, batch_size: int,
                progress: bool) -> np.ndarray:
    """0-based rank of each target in the beam's output (np.inf when the beam missed it)."""
    retrieved = beam_retrieve(trained, encoder, samples, behavior, item_ids, cands, beam_size, batch_size, progress)
    return rank_from_retrieved(retrieved, targets)


def beam_retrieve(trained: TrainedModel, encoder, samples, behavior: str, item_ids: list[str],
                  cands: np.ndarray | None, beam_size: int = 30, batch_size: int = 32,
                  progress: bool = False) -> np.ndarray:
    """int64 [n, beam_size]: item rows (of ``item_ids``) each sample's beam ranked, best first; -1 pads.

    ``cands`` [n, C] restricts each sample to its own candidate rows; None = the whole catalog.
    """
    codes = trained.id_codes(ID_KIND[behavior], item_ids)  # [n_items, L]
    catalog = IdTrie.build(codes) if cands is None else None
    prefix = trained.prefix(behavior)
    out = np.full((len(samples), beam_size), -1, dtype=np.int64)
    bar = tqdm(total=len(samples), desc=f"decode {behavior}", disable=not progress, leave=False)
    for lo in range(0, len(samples), batch_size):
        chunk = samples[lo : lo + batch_size]
        inputs = pad_batch([encoder.input(s) for s in chunk], trained.pad_id)  # [B, L]
        trie = catalog if cands is None else IdTrie.build_forest(codes, cands[lo : lo + len(chunk)])
        ranked = constrained_beam_search(trained.model, inputs, inputs != trained.pad_id, trie, prefix,
                                         beam_size=beam_size, top_k=beam_size)
        items = ranked.items.numpy()  # [B, <= beam_size]
        out[lo : lo + len(chunk), : items.shape[1]] = items
        bar.update(len(chunk))
    bar.close()
    return out


def evaluate_run(run_dir: str | Path, split: str, cfg: EvalConfig, full_ranking: bool = False) -> dict:
    """Evaluate ``RUN_DIR/model`` on ``RUN_DIR/data`` with ``cfg``'s method, beam and batch sizes."""
    data, trained = load_run(run_dir)
    with torch.inference_mode():
        return evaluate_model(trained, data, split, cfg.method, cfg.beam_size, cfg.batch_size,
                              cfg.max_examples, full_ranking)
