"""Task samples: each task's pool of ``Sample``s, pseudo-queries, and the seeded per-epoch mix.

Pseudo-queries and the task mix are described in ``gensar.model.tasks``'s overview.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from gensar.data.prepared import PreparedData
from gensar.data.queries import build_item_queries, clean_words, words
from gensar.data.schema import REC, SEARCH
from gensar.model.task_config import TASKS, TaskConfig


@dataclass(frozen=True)
class Sample:
    """One task instance, before rendering.

    ``query`` is the current query for ``search``/``adhoc`` and the target for ``next_query``;
    ``item`` is the target item (rec, search, adhoc, text2*) or the source item (*2text).
    """

    task: str
    item: str = ""
    query: str = ""
    history: tuple[int, ...] = ()  # event ids, oldest first
    example_id: int = -1  # row of the prepared examples, -1 for item-level tasks


def example_samples(examples) -> list[Sample]:
    """``rec``/``search`` samples of prepared example rows (any split), in row order."""
    return [
        Sample(
            task=b,
            item=t,
            query=q if b == SEARCH else "",
            history=tuple(int(e) for e in h),
            example_id=int(x),
        )
        for b, t, q, h, x in zip(
            examples["behavior"],
            examples["target"],
            examples["query"],
            examples["history"],
            examples["example_id"],
            strict=True,
        )
    ]


def title_query_share(data: PreparedData) -> float:
    """Share of the training split's logged queries that take more words from the clicked item's
    title than from its catalog query (0.0 without a search log; a category-path log gives 0.0)."""
    search = data.split("train", SEARCH)
    if search.empty:
        return 0.0
    row = {item: i for i, item in enumerate(data.items["item_id"])}
    catalog = build_item_queries(data.items).queries
    titles = data.items["title"].tolist()
    title_like = counted = 0
    for query, target in zip(search["query"], search["target"], strict=True):
        i = row.get(target)
        if i is None:  # a cold item, outside the training catalog
            continue
        q = set(words(query))
        title_like += len(q & set(words(titles[i]))) > len(q & set(words(catalog[i])))
        counted += 1
    return title_like / counted if counted else 0.0


def pseudo_queries(data: PreparedData, n: int, seed: int, source: str = "category") -> list[list[str]]:
    """Up to ``n`` pseudo-queries per item (row order of ``data.items``); see the module doc.

    ``source``: "category" leads with the catalog query, "title" uses title windows only (the catalog
    query only for an item without title words), "auto" picks "title" for a seeded share of the
    items equal to ``title_query_share`` (the log's own kind of query; all "category" on a
    category-path log)."""
    catalog = build_item_queries(data.items).queries
    if source == "auto":
        # a generator of its own: the per-item windows below draw the same with or without it
        title_mode = np.random.default_rng([seed, 1]).random(len(catalog)) < title_query_share(data)
    else:
        title_mode = np.full(len(catalog), source == "title")
    out = []
    for index, (title, first) in enumerate(zip(data.items["title"], catalog, strict=True)):
        rng = np.random.default_rng([seed, index])
        title_words = clean_words(words(title))
        found: list[str] = [first] if first and not (title_mode[index] and title_words) else []
        for _ in range(4 * n):  # a few more draws than needed: short titles repeat windows
            if len(found) >= n or len(title_words) < 2:
                break
            size = int(rng.integers(2, 5))
            start = int(rng.integers(0, max(1, len(title_words) - size + 1)))
            q = " ".join(title_words[start : start + size])
            if q not in found:
                found.append(q)
        if not found and title_words:
            found.append(title_words[0])
        out.append(found[:n])
    return out


def build_samples(data: PreparedData, cfg: TaskConfig, seed: int) -> dict[str, list[Sample]]:
    """The pool of every task (train split only for user tasks), task -> samples in a fixed order."""
    rec = data.split("train", REC)
    search = data.split("train", SEARCH)
    items = data.items["item_id"].tolist()
    pools: dict[str, list[Sample]] = {t: [] for t in TASKS}
    pools["rec"] = example_samples(rec)
    pools["search"] = example_samples(search)
    pools["next_query"] = [
        Sample(task="next_query", query=s.query, history=s.history, example_id=s.example_id)
        for s in pools["search"]
    ]
    pools["next_item"] = [
        Sample(task="next_item", item=s.item, history=s.history, example_id=s.example_id)
        for s in pools["search"]
    ]
    pools["adhoc_logged"] = [
        Sample(task="adhoc_logged", item=s.item, query=s.query, example_id=s.example_id) for s in pools["search"]
    ]
    for task in ("text2sem", "text2col", "sem2text", "col2text"):
        pools[task] = [Sample(task=task, item=i) for i in items]
    if cfg.adhoc > 0:
        pools["adhoc"] = [
            Sample(task="adhoc", item=i, query=q)
            for i, qs in zip(items, pseudo_queries(data, cfg.pseudo_queries, seed, cfg.pseudo_query_source), strict=True)
            for q in qs
        ]
    return {t: (p if cfg.weight(t) > 0 else []) for t, p in pools.items()}


@dataclass(frozen=True)
class KnownSamples:
    """What a refresh's previous run trained on (``gensar.refresh``), and the share of it each
    refresh epoch draws again: of the examples whose target event it trained on
    (``examples_share``), of the item-level samples of the items it trained with (``items_share``).
    The rest (the new events, new items) is drawn in full."""

    examples: frozenset[int]  # example ids of this data
    items: frozenset[str]
    examples_share: float = 1.0  # of the known samples' usual draws, in [0, 1]
    items_share: float = 1.0

    def share(self, sample: Sample) -> float:
        """1 for a sample the previous run never trained on, else its kind's share."""
        if sample.example_id >= 0:
            return self.examples_share if sample.example_id in self.examples else 1.0
        return self.items_share if sample.item in self.items else 1.0

    @property
    def full(self) -> bool:
        return self.examples_share == 1 and self.items_share == 1

    def fingerprint(self) -> dict[str, object]:
        """What a resumed training must find unchanged."""
        body = json.dumps([sorted(self.examples), sorted(self.items)]).encode()
        return {"examples_share": self.examples_share, "items_share": self.items_share,
                "examples": len(self.examples), "items": len(self.items),
                "sha256": hashlib.sha256(body).hexdigest()[:16]}


@dataclass(frozen=True)
class Segment:
    """A run of ``TaskMix.samples`` of one task drawn with one weight (expected passes per epoch)."""

    task: str
    start: int
    end: int
    weight: float
    # a refresh's new samples: a fraction of a draw rounds up, so that a few new items of a task
    # weighted below 1 are still drawn every epoch
    round_up: bool = False

    def count(self) -> int:
        """Samples drawn per epoch."""
        n = self.end - self.start
        whole = int(np.floor(self.weight))
        rest = (self.weight - whole) * n
        return whole * n + (math.ceil(rest - 1e-9) if self.round_up else round(rest))


@dataclass(frozen=True)
class TaskMix:
    """All tasks' samples in one list, and the seeded per-epoch plan over them."""

    samples: list[Sample]
    segments: tuple[Segment, ...]  # in ``TASKS`` order; a task's new samples before its known ones

    @classmethod
    def build(cls, pools: dict[str, list[Sample]], cfg: TaskConfig,
              replay: KnownSamples | None = None) -> TaskMix:
        """One segment per task at its weight; with ``replay``, one per share of it (``KnownSamples.share``:
        the new samples first, at the task's full weight)."""
        samples: list[Sample] = []
        segments = []
        for task in TASKS:
            pool, weight = pools[task], cfg.weight(task)
            parts = [(pool, 1.0)]
            if replay is not None and not replay.full:  # full shares: one segment, as without
                shares = [replay.share(s) for s in pool]
                parts = [([s for s, f in zip(pool, shares, strict=True) if f == share], share)
                         for share in sorted(set(shares), reverse=True)]
            for part, share in parts:
                new = replay is not None and share == 1 and len(parts) > 1
                end = len(samples) + len(part)
                segments.append(Segment(task, len(samples), end, weight * share, round_up=new))
                samples.extend(part)
        return cls(samples, tuple(segments))

    def counts(self) -> dict[str, int]:
        """Samples of each task drawn per epoch."""
        out = dict.fromkeys(TASKS, 0)
        for seg in self.segments:
            out[seg.task] += seg.count()
        return out

    def epoch_size(self) -> int:
        return sum(self.counts().values())

    def epoch_plan(self, seed: int, epoch: int) -> np.ndarray:
        """Indices into ``samples`` for one epoch, shuffled; a pure function of (seed, epoch)."""
        rng = np.random.default_rng([seed, epoch, 0x7A5C])
        parts = []
        for seg in self.segments:
            n, w = seg.end - seg.start, seg.weight
            if n == 0 or w == 0:
                continue
            whole = int(np.floor(w))
            extra = seg.count() - whole * n
            parts.append(np.tile(np.arange(seg.start, seg.end), whole))
            parts.append(seg.start + rng.choice(n, size=extra, replace=False))
        plan = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return plan[rng.permutation(len(plan))].astype(np.int64)
