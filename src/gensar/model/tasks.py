"""Training tasks of the generative model, their mix per epoch, and how samples become tokens.

Tasks (GenSAR, section 3.3), each a ``Sample`` -> (input tokens, target tokens):

==============  ============================================  ==================================
task            input (compact style)                         target
==============  ============================================  ==================================
rec             ``<t_rec>`` H                                  ``<rec>`` collaborative ID
next_item       ``<t_rec>`` H                                  ``<rec>`` collaborative ID of an
                                                               item clicked in search
adhoc_logged    ``<t_search>`` ``<search>`` logged query        ``<search>`` semantic ID
search          ``<t_search>`` H ``<search>`` query words      ``<search>`` semantic ID
next_query      ``<t_query>`` H                                ``<query>`` query words
text2sem        ``<t_text2sem>`` item text                     ``<search>`` semantic ID
text2col        ``<t_text2col>`` item text                     ``<rec>`` collaborative ID
sem2text        ``<t_sem2text>`` semantic ID                   ``<text>`` item text
col2text        ``<t_col2text>`` collaborative ID              ``<text>`` item text
adhoc           ``<t_search>`` ``<search>`` pseudo-query       ``<search>`` semantic ID
==============  ============================================  ==================================

Every input and target ends with ``</s>``. The first target token names what is generated
(``<rec>``: a collaborative ID, ``<search>``: a semantic ID, ``<query>``/``<text>``: words), so a
semantic ID is always preceded by ``<search>`` and a collaborative ID by ``<rec>``, in targets
and in histories alike. The history H interleaves, in time order, rec interactions
(``<rec>`` + collaborative ID) and search sessions (``<search>`` + query words + the semantic
IDs of the clicked items). ``next_item`` (off by default; not in the paper) turns each training
search click into a recommendation sample as well, without its query: the model learns the
user's next item from every interaction, as a sequential recommender such as SASRec does from the
unified sequence. ``adhoc_logged`` (off by default; not in the paper) is history dropout for
search: each training search session once more as ad-hoc search, its query and clicked item
without the history, so the model learns to read the query rather than lean on the history.
When an input is longer than ``max_input_len`` the oldest history
events are dropped whole. Ad-hoc search is search without a history, so it shares the search
task marker and transfers directly to personalized search.

``prompt_style="paper"`` renders the same samples as English prompts in the spirit of the
paper's code ("The user has the following interaction history ... Please predict ..."), with
the same targets; it exists to measure what long prompts cost (see the README benchmark).

Pseudo-queries (the paper's doc2query step; no doc2query model exists offline), per item, in
this order, duplicates and empty ones skipped, at most ``pseudo_queries``:

1. the item's catalog query: its category-path words without the catalog root and stop words
   (``gensar.data.queries.build_item_queries``, the same rule that makes the semi-synthetic
   search log, so on such data it is exactly a query users issue);
2. then title n-grams: a window of 2-4 consecutive title words (stop words removed) at a start
   drawn from ``default_rng([seed, item_index])``, i.e. what a user who remembers part of a
   product name would type.

Task mix: each task's weight is the expected number of times each of its samples is seen per
epoch. Weight 1.5 means every sample once plus a seeded half of them again; 0 turns the task
off. The epoch size is fixed, so a cosine schedule knows its length in advance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from gensar.config import require
from gensar.data.prepared import PreparedData
from gensar.data.queries import build_item_queries, clean_words, words
from gensar.data.schema import REC, SEARCH
from gensar.ids.item_ids import COLLABORATIVE, SEMANTIC, IdKind, IdMaps  # noqa: F401 (re-exported)

TASKS = (
    "rec", "search", "next_query", "text2sem", "text2col", "sem2text", "col2text", "adhoc", "next_item",
    "adhoc_logged",
)
Task = Literal[
    "rec", "search", "next_query", "text2sem", "text2col", "sem2text", "col2text", "adhoc", "next_item",
    "adhoc_logged",
]

# Behavior tokens: the first target token, and the head of each history event.
REC_TOKEN, SEARCH_TOKEN, QUERY_TOKEN, TEXT_TOKEN = "<rec>", "<search>", "<query>", "<text>"
BEHAVIOR_TOKENS = (REC_TOKEN, SEARCH_TOKEN, QUERY_TOKEN, TEXT_TOKEN)
TASK_TOKENS: dict[str, str] = {
    "rec": "<t_rec>",
    "search": "<t_search>",
    "next_query": "<t_query>",
    "text2sem": "<t_text2sem>",
    "text2col": "<t_text2col>",
    "sem2text": "<t_sem2text>",
    "col2text": "<t_col2text>",
    "adhoc": "<t_search>",
    "next_item": "<t_rec>",
    "adhoc_logged": "<t_search>",
}
MARKER_TOKENS: tuple[str, ...] = BEHAVIOR_TOKENS + tuple(dict.fromkeys(TASK_TOKENS.values()))

@dataclass(frozen=True)
class TaskConfig:
    prompt_style: Literal["compact", "paper"] = "compact"
    # Sampling weights: expected passes over each task's samples per epoch (0 = off).
    rec: float = 1.0
    search: float = 1.0
    next_query: float = 0.5
    text2sem: float = 0.5
    text2col: float = 0.5
    sem2text: float = 0.25
    col2text: float = 0.25
    adhoc: float = 0.5
    next_item: float = 0.0  # search clicks as extra recommendation targets (see the module doc)
    adhoc_logged: float = 0.0  # training search sessions without their history (see the module doc)
    pseudo_queries: int = 3  # per item, for adhoc
    max_text_tokens: int = 48  # item texts and queries are cut to this many word pieces

    def validate(self) -> None:
        for task in TASKS:
            require(self.weight(task) >= 0, f"tasks.{task}", "sampling weight must be >= 0")
        require(any(self.weight(t) > 0 for t in TASKS), "tasks", "at least one task needs a weight > 0")
        require(self.pseudo_queries >= 1, "tasks.pseudo_queries", "must be >= 1")
        require(self.max_text_tokens >= 1, "tasks.max_text_tokens", "must be >= 1")

    def weight(self, task: str) -> float:
        return float(getattr(self, task))


# ---- samples -------------------------------------------------------------------------------------
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


def pseudo_queries(data: PreparedData, n: int, seed: int) -> list[list[str]]:
    """Up to ``n`` pseudo-queries per item (row order of ``data.items``); see the module doc."""
    catalog = build_item_queries(data.items).queries
    out = []
    for index, (title, first) in enumerate(zip(data.items["title"], catalog, strict=True)):
        rng = np.random.default_rng([seed, index])
        title_words = clean_words(words(title))
        found: list[str] = [first] if first else []
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
            for i, qs in zip(items, pseudo_queries(data, cfg.pseudo_queries, seed), strict=True)
            for q in qs
        ]
    return {t: (p if cfg.weight(t) > 0 else []) for t, p in pools.items()}


@dataclass(frozen=True)
class TaskMix:
    """All tasks' samples in one list, and the seeded per-epoch plan over them."""

    samples: list[Sample]
    task_ranges: dict[str, tuple[int, int]]  # task -> [start, end) in ``samples``
    weights: dict[str, float]

    @classmethod
    def build(cls, pools: dict[str, list[Sample]], cfg: TaskConfig) -> TaskMix:
        samples: list[Sample] = []
        ranges = {}
        for task in TASKS:
            ranges[task] = (len(samples), len(samples) + len(pools[task]))
            samples.extend(pools[task])
        return cls(samples, ranges, {t: cfg.weight(t) for t in TASKS})

    def counts(self) -> dict[str, int]:
        """Samples of each task drawn per epoch."""
        return {t: _epoch_count(e - s, self.weights[t]) for t, (s, e) in self.task_ranges.items()}

    def epoch_size(self) -> int:
        return sum(self.counts().values())

    def epoch_plan(self, seed: int, epoch: int) -> np.ndarray:
        """Indices into ``samples`` for one epoch, shuffled; a pure function of (seed, epoch)."""
        rng = np.random.default_rng([seed, epoch, 0x7A5C])
        parts = []
        for task in TASKS:
            start, end = self.task_ranges[task]
            n, w = end - start, self.weights[task]
            if n == 0 or w == 0:
                continue
            whole = int(np.floor(w))
            extra = _epoch_count(n, w) - whole * n
            parts.append(np.tile(np.arange(start, end), whole))
            parts.append(start + rng.choice(n, size=extra, replace=False))
        plan = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return plan[rng.permutation(len(plan))].astype(np.int64)


def _epoch_count(n: int, weight: float) -> int:
    whole = int(np.floor(weight))
    return whole * n + round((weight - whole) * n)


# ---- rendering -----------------------------------------------------------------------------------
_PAPER_HEAD = "The user has the following interaction history in chronological order:"
_PAPER_TAIL = {
    "rec": "Please recommend the next item that the user will click. Answer with the collaborative "
    "identifier of the item.",
    "search": "Please predict the item that the user will click for this query. Answer with the semantic "
    "identifier of the item.",
    "next_query": "Please predict the next query that the user will search for.",
}


_PAPER_FRAGMENTS = (
    _PAPER_HEAD,
    *_PAPER_TAIL.values(),
    "the user clicked the recommended item;",
    'the user searched for "" and clicked;',
    'Now the user searches for "".',
    (
        'A user searches for "". Please predict the item that matches the query. Answer with the semantic '
        "identifier of the item."
    ),
    (
        'Here is the description of an item: "". What is the semantic identifier of this item? What is the '
        "collaborative identifier of this item?"
    ),
    "An item has the semantic identifier . Please describe this item.",
    "An item has the collaborative identifier",
)


def tokenizer_corpus(data: PreparedData, style: str) -> list[str]:
    """Texts to train the WordPiece on: item texts, distinct queries, and the prompt templates.

    Paper-style templates are repeated so that their words become whole word pieces (they occur
    in every sample, far more often than any item word).
    """
    corpus = list(data.item_texts) + sorted(set(data.events["query"]) - {""})
    if style == "paper":
        corpus += list(_PAPER_FRAGMENTS) * 100
    return corpus


@dataclass(frozen=True)
class DecodedTarget:
    """What a target sequence says: its behavior token, and the item or the words it names."""

    behavior: str  # "<rec>", "<search>", "<query>" or "<text>"
    item: str | None  # for ID targets: the item (None if no item has that ID)
    text: str  # for word targets: the decoded words


class SampleEncoder:
    """Renders samples as token ids under one prompt style (cached per event and text)."""

    def __init__(
        self, tokenizer, ids: IdMaps, data: PreparedData, cfg: TaskConfig, max_input_len: int
    ) -> None:
        self.tokenizer = tokenizer
        self.ids = ids
        self.style = cfg.prompt_style
        self.max_text_tokens = cfg.max_text_tokens
        self.max_input_len = max_input_len
        self.eos = int(tokenizer.eos_token_id)
        self._events_behavior = data.events["behavior"].tolist()
        self._events_query = data.events["query"].tolist()
        self._events_items = [list(x) for x in data.events["items"]]
        self._item_text = dict(zip(data.items["item_id"], data.item_texts, strict=True))
        self._token_id = {t: tokenizer.convert_tokens_to_ids(t) for t in MARKER_TOKENS}
        self._text_cache: dict[str, list[int]] = {}
        self._event_cache: dict[int, list[int]] = {}
        self._id_cache: dict[tuple[str, str], list[int]] = {}
        self._reverse_markers = {v: k for k, v in self._token_id.items()}

    # -- pieces --
    def token(self, token: str) -> list[int]:
        return [self._token_id[token]]

    def text(self, text: str, cap: int | None = None) -> list[int]:
        ids = self._text_cache.get(text)
        if ids is None:
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            self._text_cache[text] = ids
        return ids[: cap if cap is not None else len(ids)]

    def item_id(self, kind: str, item: str) -> list[int]:
        key = (kind, item)
        ids = self._id_cache.get(key)
        if ids is None:
            ids = self.tokenizer.convert_tokens_to_ids(list(self.ids.of(kind)[item]))
            self._id_cache[key] = ids
        return list(ids)

    def _event(self, event_id: int) -> list[int]:
        ids = self._event_cache.get(event_id)
        if ids is None:
            items = self._events_items[event_id]
            if self._events_behavior[event_id] == REC:
                if self.style == "compact":
                    ids = self.token(REC_TOKEN) + self.item_id(COLLABORATIVE, items[0])
                else:
                    ids = (
                        self.text("the user clicked the recommended item")
                        + self.item_id(COLLABORATIVE, items[0])
                        + self.text(";")
                    )
            else:
                query = self.text(self._events_query[event_id], self.max_text_tokens)
                clicked = [t for it in items for t in self.item_id(SEMANTIC, it)]
                if self.style == "compact":
                    ids = self.token(SEARCH_TOKEN) + query + clicked
                else:
                    ids = (
                        self.text('the user searched for "')
                        + query
                        + self.text('" and clicked')
                        + clicked
                        + self.text(";")
                    )
            self._event_cache[event_id] = ids
        return ids

    # -- samples --
    def target(self, sample: Sample) -> list[int]:
        """Target ids, ``</s>`` included."""
        task = sample.task
        if task in ("rec", "next_item", "text2col"):
            body = self.item_target(REC, sample.item)
        elif task in ("search", "text2sem", "adhoc", "adhoc_logged"):
            body = self.item_target(SEARCH, sample.item)
        elif task == "next_query":
            body = self.token(QUERY_TOKEN) + self.text(sample.query, self.max_text_tokens) + [self.eos]
        else:  # sem2text, col2text
            body = (
                self.token(TEXT_TOKEN)
                + self.text(self._item_text[sample.item], self.max_text_tokens)
                + [self.eos]
            )
        return body

    def item_target(self, behavior: str, item: str) -> list[int]:
        """``<rec>`` + collaborative ID + ``</s>``, or ``<search>`` + semantic ID + ``</s>``."""
        if behavior == REC:
            return self.token(REC_TOKEN) + self.item_id(COLLABORATIVE, item) + [self.eos]
        return self.token(SEARCH_TOKEN) + self.item_id(SEMANTIC, item) + [self.eos]

    def input(self, sample: Sample) -> list[int]:
        """Input ids, ``</s>`` included, at most ``max_input_len`` (oldest events dropped first)."""
        head, tail = self._frame(sample)
        events = [self._event(e) for e in sample.history]
        budget = self.max_input_len - 1 - len(head) - len(tail)
        kept: list[list[int]] = []
        for ev in reversed(events):  # newest first, while it fits
            if len(ev) > budget:
                break
            kept.append(ev)
            budget -= len(ev)
        ids = head + [t for ev in reversed(kept) for t in ev] + tail
        return ids[: self.max_input_len - 1] + [self.eos]

    def encode(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """(input ids [L], target ids [T]) as int64 arrays."""
        return np.asarray(self.input(sample), dtype=np.int64), np.asarray(self.target(sample), dtype=np.int64)

    def input_text(self, sample: Sample) -> str:
        """The rendered input as text (for inspection and docs)."""
        return self.tokenizer.decode(self.input(sample))

    def _frame(self, sample: Sample) -> tuple[list[int], list[int]]:
        """Input ids before and after the history."""
        task, cap = sample.task, self.max_text_tokens
        compact = self.style == "compact"
        if task in ("rec", "next_item", "next_query"):
            if compact:
                return self.token(TASK_TOKENS[task]), []
            return self.text(_PAPER_HEAD), self.text(_PAPER_TAIL["rec" if task == "next_item" else task])
        if task == "search":
            query = self.text(sample.query, cap)
            if compact:
                return self.token(TASK_TOKENS[task]), self.token(SEARCH_TOKEN) + query
            return self.text(_PAPER_HEAD), (
                self.text('Now the user searches for "')
                + query
                + self.text('".')
                + self.text(_PAPER_TAIL["search"])
            )
        if task in ("adhoc", "adhoc_logged"):
            query = self.text(sample.query, cap)
            if compact:
                return self.token(TASK_TOKENS[task]) + self.token(SEARCH_TOKEN) + query, []
            return (
                self.text('A user searches for "')
                + query
                + self.text(
                    '". Please predict the item that '
                    "matches the query. Answer with the semantic identifier of the item."
                )
            ), []
        if task in ("text2sem", "text2col"):
            text = self.text(self._item_text[sample.item], cap)
            if compact:
                return self.token(TASK_TOKENS[task]) + text, []
            kind = "semantic" if task == "text2sem" else "collaborative"
            return (
                self.text('Here is the description of an item: "')
                + text
                + self.text(f'". What is the {kind} identifier of this item?')
            ), []
        if task in ("sem2text", "col2text"):
            kind = SEMANTIC if task == "sem2text" else COLLABORATIVE
            ident = self.item_id(kind, sample.item)
            if compact:
                return self.token(TASK_TOKENS[task]) + ident, []
            return (
                self.text(f"An item has the {kind} identifier")
                + ident
                + self.text(". Please describe this item.")
            ), []
        raise ValueError(f"unknown task '{task}'")

    # -- decoding --
    def decode_target(self, ids: Sequence[int]) -> DecodedTarget:
        """Invert ``target``: the behavior token, then the item (ID targets) or the words."""
        ids = [int(i) for i in ids]
        if ids and ids[-1] == self.eos:
            ids = ids[:-1]
        if not ids or ids[0] not in self._reverse_markers:
            raise ValueError("a target starts with a behavior token")
        behavior = self._reverse_markers[ids[0]]
        body = ids[1:]
        if behavior in (REC_TOKEN, SEARCH_TOKEN):
            kind = COLLABORATIVE if behavior == REC_TOKEN else SEMANTIC
            return DecodedTarget(
                behavior, self.ids.item_of(kind, self.tokenizer.convert_ids_to_tokens(body)), ""
            )
        return DecodedTarget(behavior, None, self.tokenizer.decode(body))
