"""Training SASRec on item sequences (0-based item indices, oldest first), early-stopped on an
``EvalSet``; the result is a ``TrainedSASRec`` (``gensar.embed.sasrec_checkpoint``)."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from gensar.embed.sasrec import SASRec, SASRecConfig
from gensar.embed.sasrec_checkpoint import TrainedSASRec
from gensar.embed.sasrec_eval import evaluate
from gensar.embed.sasrec_protocols import EvalSet
from gensar.errors import GensarError
from gensar.runtime import seed_everything
from gensar.train_utils import adamw, pooled_batches


def training_windows(seqs: Sequence[list[int]], max_len: int) -> np.ndarray:
    """Left-padded token windows [N, max_len + 1] (token = item + 1, 0 = pad).

    A sequence longer than ``max_len + 1`` is cut into windows that overlap by one item, so
    every item after the first is a prediction target exactly once.
    """
    rows = []
    for seq in seqs:
        end = len(seq)
        while end >= 2:
            window = seq[max(0, end - max_len - 1) : end]
            row = np.zeros(max_len + 1, dtype=np.int64)
            row[max_len + 1 - len(window) :] = np.asarray(window, dtype=np.int64) + 1
            rows.append(row)
            end -= max_len
    return np.stack(rows) if rows else np.zeros((0, max_len + 1), dtype=np.int64)


def train_sasrec(
    train_seqs: Sequence[list[int]],
    n_items: int,
    cfg: SASRecConfig,
    valid: EvalSet | None = None,
    progress: bool = True,
) -> TrainedSASRec:
    """Train SASRec on item sequences (0-based item indices, oldest first).

    With ``valid``, NDCG@10 is measured every ``eval_every`` epochs; training stops after
    ``patience`` evaluations without improvement and the best weights are restored.
    """
    cfg.validate()
    windows = training_windows(train_seqs, cfg.max_len)  # [N, L+1]
    if len(windows) == 0:
        raise GensarError("no training sequence has two or more items")
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = SASRec(n_items, cfg)
    optimizer = adamw(model, cfg.weight_decay, cfg.lr, betas=(0.9, 0.98))
    lengths = (windows > 0).sum(axis=1)  # [N]

    best_ndcg, best_epoch, best_state, bad_evals = -1.0, cfg.epochs, None, 0
    log: list[dict[str, float]] = []
    start = time.perf_counter()
    bar = tqdm(range(1, cfg.epochs + 1), desc="sasrec", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        total, count = 0.0, 0
        for batch in _length_batches(lengths, cfg.batch_size, rng):
            width = int(lengths[batch].max())
            chunk = torch.from_numpy(windows[batch][:, -width:])  # [B, W]
            loss = _loss(model, chunk[:, :-1], chunk[:, 1:], cfg, n_items)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
            count += len(batch)
        row = {"epoch": float(epoch), "loss": total / count}
        if valid is not None and len(valid) and epoch % cfg.eval_every == 0:
            ndcg = evaluate(model, valid)["ndcg@10"]
            row["valid_ndcg@10"] = ndcg
            if ndcg > best_ndcg:
                best_ndcg, best_epoch, bad_evals = ndcg, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad_evals += 1
            bar.set_postfix(loss=f"{row['loss']:.4f}", ndcg10=f"{ndcg:.4f}", best=best_epoch)
        else:
            bar.set_postfix(loss=f"{row['loss']:.4f}")
        log.append(row)
        if bad_evals >= cfg.patience:
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = len(log)
    model.eval()
    seconds = time.perf_counter() - start
    return TrainedSASRec(model, cfg, best_epoch, best_ndcg if best_state is not None else None, seconds, log)


def _length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of windows with similar lengths (pools of 50 batches), short ones included.

    Positions and attention ignore padding, so trimming a batch to its longest window changes
    nothing but speed.
    """
    batches = pooled_batches(rng.permutation(len(lengths)), lengths, batch_size, pool=50)
    return [batches[i] for i in rng.permutation(len(batches))]


def _loss(model: SASRec, inputs: torch.Tensor, targets: torch.Tensor, cfg: SASRecConfig, n_items: int) -> torch.Tensor:
    """Next-item loss at every real target position. inputs, targets: [B, T] tokens."""
    h = model(inputs)  # [B, T, D]
    mask = (targets > 0) & (inputs > 0)  # [B, T] a target needs at least one input item
    h = h[mask]  # [N, D]
    pos = targets[mask]  # [N] tokens
    if cfg.loss == "full_ce":
        logits = model.item_logits(h)  # [N, n_items]
        return F.cross_entropy(logits, pos - 1)
    if cfg.loss == "sampled_ce":
        neg = torch.randint(1, n_items + 1, (len(pos), cfg.negatives))  # [N, K] tokens
        cand = torch.cat([pos[:, None], neg], dim=1)  # [N, 1+K]
        logits = torch.einsum("nd,nkd->nk", h, model.item_emb(cand))  # [N, 1+K]
        logits[:, 1:] = logits[:, 1:].masked_fill(neg == pos[:, None], float("-inf"))
        return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long))
    # bce (the original SASRec loss): one uniform negative per position
    neg = torch.randint(1, n_items + 1, (len(pos),))  # [N]
    pos_logit = (h * model.item_emb(pos)).sum(-1)  # [N]
    neg_logit = (h * model.item_emb(neg)).sum(-1)  # [N]
    keep = (neg != pos).float()  # [N]
    return F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit)) + (
        F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit), weight=keep)
    )
