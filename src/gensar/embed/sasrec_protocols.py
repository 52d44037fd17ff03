"""Evaluation protocols of SASRec: unified user sequences, and the training sequences plus valid/test
ranking examples of each protocol.

A user's *unified sequence* is every item the user clicked, recommended or searched, in time
order, each interaction once (a search twin of a rec event is the same click: ``gensar.data.twins``).
Item indices here are 0-based rows of ``PreparedData.items``; the model's padding shift (+1) stays
inside ``SASRec``.

Two evaluation protocols:

``gensar``  the project's splits: train on events that are not valid/test targets (of either
            behavior) or cold (``gensar.data.cold``); score each rec valid/test example's prepared
            candidate list, the input being every item of the user's events strictly before the
            target event, cold events and search twins (``gensar.data.twins``) left out.
``sasrec``  the public SASRec protocol (pmixer/SASRec.pytorch): leave-one-out on the whole
            unified sequence (last item = test, second-last = valid, train on the rest; users with
            fewer than 3 items train only); candidates = target + ``eval_negatives`` random items
            the user never interacted with (seeded).

Scoring a SASRec on these examples: ``gensar.embed.sasrec_eval``.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Literal

import numpy as np

from gensar.data.prepared import PreparedData
from gensar.data.schema import REC
from gensar.errors import ConfigError, GensarError

Protocol = Literal["gensar", "sasrec"]
PROTOCOLS: tuple[str, ...] = ("gensar", "sasrec")


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

    Events whose ``event_id`` is in ``drop_events`` are left out, and search twins (one
    interaction logged twice, ``gensar.data.twins``). A search event contributes all its clicked
    items, in their listed order.
    """
    index = data.item_index
    drop = (drop_events or frozenset()) | data.twin_event_ids
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
    skipped = data.cold_event_ids | data.twin_event_ids
    histories, rows = [], []
    for ex in data.split(split, REC).itertuples(index=False):
        if ex.example_id not in cands:
            raise GensarError(f"{split} example {ex.example_id} has no candidate list (candidates.parquet)")
        target_pos = int(ex.event_id)
        start = starts[ex.user_id]
        t = ev_time[target_pos]
        history: list[int] = []
        for pos in range(start, target_pos + 1):
            if ev_time[pos] < t and pos not in skipped:
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
    seqs = list(unified_sequences(data, data.cold_event_ids).values())
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
