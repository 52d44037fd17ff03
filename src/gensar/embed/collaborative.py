"""Collaborative item embeddings: train SASRec on unified user sequences, evaluate it, keep its table.

A user's *unified sequence* is every item the user clicked, recommended or searched, in time
order. Item indices here are 0-based rows of ``PreparedData.items``; the model's padding shift
(+1) stays inside ``SASRec``.

Two evaluation protocols:

``gensar``  the project's splits: train on events that are not valid/test targets (of either
            behavior); score each rec valid/test example's prepared candidate list, the input
            being every item of the user's events strictly before the target event.
``sasrec``  the public SASRec protocol (pmixer/SASRec.pytorch): leave-one-out on the whole
            unified sequence (last item = test, second-last = valid, train on the rest; users with
            fewer than 3 items train only); candidates = target + ``eval_negatives`` random items
            the user never interacted with (seeded).

Ranks are 0-based and count ties pessimistically (rank = #candidates scoring >= the target,
minus one), so a constant scorer gets no credit.
"""

from __future__ import annotations

import copy
import io
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from gensar.config import from_dict, to_dict
from gensar.data.prepared import PreparedData
from gensar.data.schema import REC
from gensar.embed.sasrec import SASRec, SASRecConfig
from gensar.errors import ConfigError, GensarError
from gensar.io import atomic_write_bytes
from gensar.metrics import METRIC_KEYS, rank_of_target, summarize
from gensar.runtime import seed_everything
from gensar.train_utils import param_groups, pooled_batches

Protocol = Literal["gensar", "sasrec"]
PROTOCOLS: tuple[str, ...] = ("gensar", "sasrec")


# ---- metrics ---------------------------------------------------------------------------------

def target_ranks(scores: np.ndarray) -> np.ndarray:
    """0-based rank of column 0 (the target) in each row of ``scores`` [n, C], ties against it."""
    return rank_of_target(scores, np.zeros(len(scores), dtype=np.int64))


def sampled_metrics(ranks: np.ndarray) -> dict[str, float]:
    """hr@1, hr@5, hr@10, ndcg@5, ndcg@10 of 0-based target ranks (all 0.0 with no examples)."""
    if len(ranks) == 0:
        return dict.fromkeys(METRIC_KEYS, 0.0)
    return summarize(ranks)


# ---- data ------------------------------------------------------------------------------------
@dataclass
class EvalSet:
    """Ranking examples: each history (item indices, oldest first) and its candidates, target first."""

    histories: list[list[int]]
    candidates: np.ndarray  # [n, C] int64, column 0 = target

    def __post_init__(self) -> None:
        if len(self.histories) != len(self.candidates):
            raise ValueError(f"{len(self.histories)} histories but {len(self.candidates)} candidate rows")

    def __len__(self) -> int:
        return len(self.histories)


@dataclass
class ProtocolData:
    """Training sequences and the valid/test examples of one evaluation protocol."""

    name: str
    train_seqs: list[list[int]]
    valid: EvalSet
    test: EvalSet


def unified_sequences(data: PreparedData, drop_events: AbstractSet[int] | None = None) -> dict[str, list[int]]:
    """user_id -> item indices of the user's events (rec and search) in time order.

    Events whose ``event_id`` is in ``drop_events`` are left out. A search event contributes
    all its clicked items, in their listed order.
    """
    index = data.item_index
    drop = drop_events or frozenset()
    seqs: dict[str, list[int]] = {}
    ev = data.events
    for user, event_id, items in zip(ev["user_id"], ev["event_id"], ev["items"], strict=True):
        seq = seqs.setdefault(user, [])
        if int(event_id) not in drop:
            seq.extend(index[i] for i in items)
    return seqs


def gensar_protocol(data: PreparedData) -> ProtocolData:
    seqs = unified_sequences(data, data.held_out_event_ids)
    train_seqs = [s for s in seqs.values() if s]
    return ProtocolData("gensar", train_seqs, _gensar_eval_set(data, "valid"), _gensar_eval_set(data, "test"))


def _gensar_eval_set(data: PreparedData, split: str) -> EvalSet:
    index = data.item_index
    cands = data.candidate_lists
    ev = data.events
    ev_user = ev["user_id"].to_numpy()
    ev_time = ev["timestamp"].to_numpy()
    ev_items = ev["items"].tolist()
    # events are sorted by (user, timestamp): each user's events form one contiguous slice
    starts: dict[str, int] = {}
    for pos, user in enumerate(ev_user):
        starts.setdefault(user, pos)
    histories, rows = [], []
    for ex in data.split(split, REC).itertuples(index=False):
        if ex.example_id not in cands:
            raise GensarError(f"{split} example {ex.example_id} has no candidate list (candidates.parquet)")
        target_pos = int(ex.event_id)
        start = starts[ex.user_id]
        t = ev_time[target_pos]
        history: list[int] = []
        for pos in range(start, target_pos + 1):
            if ev_time[pos] < t:
                history.extend(index[i] for i in ev_items[pos])
        row = [index[i] for i in cands[ex.example_id]]
        if row[0] != index[ex.target]:
            raise GensarError(f"{split} example {ex.example_id}: candidate list does not start with its target")
        histories.append(history)
        rows.append(row)
    width = max((len(r) for r in rows), default=0)  # small catalogs can give shorter lists: pad with -1
    matrix = np.full((len(rows), width), -1, dtype=np.int64)
    for k, row in enumerate(rows):
        matrix[k, : len(row)] = row
    return EvalSet(histories, matrix)


def sasrec_protocol(data: PreparedData, negatives: int, seed: int) -> ProtocolData:
    seqs = list(unified_sequences(data).values())
    return whole_sequence_split(seqs, len(data.items), negatives, seed)


def whole_sequence_split(seqs: Sequence[list[int]], n_items: int, negatives: int, seed: int) -> ProtocolData:
    """The public SASRec split of whole sequences, with seeded negative candidates."""
    rng = np.random.default_rng(seed)
    train_seqs: list[list[int]] = []
    valid_h, valid_c, test_h, test_c = [], [], [], []
    for seq in seqs:
        if len(seq) < 3:
            train_seqs.append(list(seq))
            continue
        train_seqs.append(list(seq[:-2]))
        seen = np.unique(np.asarray(seq, dtype=np.int64))
        valid_h.append(list(seq[:-2]))
        valid_c.append([seq[-2], *_sample_unseen(rng, n_items, seen, negatives)])
        test_h.append(list(seq[:-1]))
        test_c.append([seq[-1], *_sample_unseen(rng, n_items, seen, negatives)])
    valid = EvalSet(valid_h, np.asarray(valid_c, dtype=np.int64).reshape(len(valid_c), negatives + 1))
    test = EvalSet(test_h, np.asarray(test_c, dtype=np.int64).reshape(len(test_c), negatives + 1))
    return ProtocolData("sasrec", train_seqs, valid, test)


def _sample_unseen(rng: np.random.Generator, n_items: int, seen: np.ndarray, k: int) -> np.ndarray:
    """``k`` distinct items not in ``seen`` (sorted unique), uniformly at random."""
    if n_items - len(seen) < k:
        raise ConfigError(
            f"config key 'eval_negatives': {k} negatives asked but a user has only "
            f"{n_items - len(seen)} unseen items"
        )
    picked = np.empty(0, dtype=np.int64)
    while len(picked) < k:
        draw = rng.integers(n_items, size=2 * k + 8)
        draw = draw[~np.isin(draw, seen)]
        _, first = np.unique(np.concatenate([picked, draw]), return_index=True)
        picked = np.concatenate([picked, draw])[np.sort(first)]  # keep draw order, drop repeats
    return picked[:k]


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


def pad_histories(histories: Sequence[list[int]], max_len: int) -> np.ndarray:
    """Left-padded tokens [n, T] of each history's newest ``max_len`` items, T = longest kept."""
    width = max(1, min(max_len, max((len(h) for h in histories), default=1)))
    out = np.zeros((len(histories), width), dtype=np.int64)
    for row, h in enumerate(histories):
        h = h[-width:]
        if h:
            out[row, width - len(h) :] = np.asarray(h, dtype=np.int64) + 1
    return out


# ---- training --------------------------------------------------------------------------------
@dataclass
class TrainedSASRec:
    model: SASRec
    config: SASRecConfig
    best_epoch: int  # 1-based epoch whose weights were kept (last epoch without validation)
    best_valid_ndcg10: float | None
    train_seconds: float
    log: list[dict[str, float]] = field(default_factory=list)  # one row per epoch

    def save(self, path: str | Path) -> None:
        """Checkpoint: state_dict + config + item count (atomic write)."""
        buf = io.BytesIO()
        torch.save(
            {
                "config": to_dict(self.config),
                "n_items": self.model.n_items,
                "state_dict": self.model.state_dict(),
                "best_epoch": self.best_epoch,
                "best_valid_ndcg10": self.best_valid_ndcg10,
                "train_seconds": self.train_seconds,
            },
            buf,
        )
        atomic_write_bytes(path, buf.getvalue())


def load_sasrec(path: str | Path) -> TrainedSASRec:
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as err:
        raise GensarError(f"{path}: not a SASRec checkpoint ({str(err).splitlines()[0]})") from None
    cfg = from_dict(SASRecConfig, ckpt["config"])
    model = SASRec(int(ckpt["n_items"]), cfg)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return TrainedSASRec(model, cfg, int(ckpt["best_epoch"]), ckpt["best_valid_ndcg10"], float(ckpt["train_seconds"]))


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
    optimizer = _adamw(model, cfg)
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


def _adamw(model: SASRec, cfg: SASRecConfig) -> torch.optim.Optimizer:
    # nanoGPT's rule: decay matrices and embeddings, not biases or LayerNorm gains
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98))


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


# ---- evaluation ------------------------------------------------------------------------------
Scorer = Callable[[list[list[int]], np.ndarray], np.ndarray]


@torch.no_grad()
def sasrec_scores(model: SASRec, histories: list[list[int]], candidates: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Scores [n, C] of each candidate row after its history."""
    model.eval()
    out = np.empty(candidates.shape, dtype=np.float32)
    order = np.argsort([len(h) for h in histories], kind="stable")  # similar lengths, less padding
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        seq = torch.from_numpy(pad_histories([histories[i] for i in idx], model.cfg.max_len))  # [B, T]
        cand = torch.from_numpy(candidates[idx])  # [B, C], -1 = padding
        out[idx] = model.score(seq, cand.clamp_min(0)).masked_fill(cand < 0, float("-inf")).numpy()
    return out


def evaluate(model: SASRec, eval_set: EvalSet) -> dict[str, float]:
    """hr@{1,5,10}, ndcg@{5,10} of ranking each example's target among its candidates."""
    if len(eval_set) == 0:
        return sampled_metrics(np.zeros(0))
    return sampled_metrics(target_ranks(sasrec_scores(model, eval_set.histories, eval_set.candidates)))


def popularity_metrics(train_seqs: Sequence[list[int]], n_items: int, eval_set: EvalSet) -> dict[str, float]:
    """The same metrics for ranking candidates by training interaction counts (a floor)."""
    counts = np.bincount(np.concatenate([np.asarray(s, dtype=np.int64) for s in train_seqs] or [np.zeros(0, np.int64)]), minlength=n_items)
    cands = eval_set.candidates
    scores = np.where(cands >= 0, counts[np.maximum(cands, 0)].astype(np.float64), -np.inf)
    return sampled_metrics(target_ranks(scores))


# ---- the embedding the RQ-VAE consumes --------------------------------------------------------
def collaborative_embeddings(data: PreparedData, cfg: SASRecConfig, progress: bool = True) -> np.ndarray:
    """float32 [n_items, hidden]: SASRec's item table, row i = ``data.items`` row i.

    Trained on the ``gensar`` protocol's sequences (training events only), early-stopped on its
    rec validation examples.
    """
    proto = gensar_protocol(data)
    trained = train_sasrec(proto.train_seqs, len(data.items), cfg, valid=proto.valid, progress=progress)
    return trained.model.item_embeddings().numpy().astype(np.float32)
