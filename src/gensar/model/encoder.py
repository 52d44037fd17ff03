"""``SampleEncoder``: samples -> token ids (input and target) under one prompt style, and back.

Targets do not depend on the prompt style: ``<rec>`` + collaborative ID, ``<search>`` + semantic
ID, ``<query>``/``<text>`` + words, each ending with ``</s>``. Inputs are rendered by the style's
``gensar.model.prompts`` renderer; the oldest history events are dropped whole to fit.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from gensar.data.prepared import PreparedData
from gensar.data.schema import REC, SEARCH
from gensar.ids.item_ids import COLLABORATIVE, SEMANTIC, IdMaps
from gensar.model.prompts import (
    MARKER_TOKENS,
    QUERY_TOKEN,
    REC_TOKEN,
    SEARCH_TOKEN,
    TEXT_TOKEN,
    select_renderer,
)
from gensar.model.samples import Sample
from gensar.model.task_config import TaskConfig


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
        item_text = dict(zip(data.items["item_id"], data.item_texts, strict=True))
        self._setup(tokenizer, ids, data.events, item_text, cfg, max_input_len)

    @classmethod
    def for_events(
        cls, tokenizer, ids: IdMaps, events: pd.DataFrame, cfg: TaskConfig, max_input_len: int
    ) -> SampleEncoder:
        """An encoder over an events table alone (``behavior``, ``query``, ``items`` columns) and
        no item texts: enough for the rec, search and next_query inputs of live histories."""
        encoder = cls.__new__(cls)
        encoder._setup(tokenizer, ids, events, {}, cfg, max_input_len)
        return encoder

    def with_events(self, behavior: list[str], query: list[str], items: list[list[str]]) -> SampleEncoder:
        """This encoder over another events table given as columns: the marker and identifier token
        caches are kept (they depend on the tokenizer and the IDs only), the per-event and text
        caches start empty. A server renders each request this way without rebuilding them."""
        new = copy.copy(self)
        new._events_behavior, new._events_query, new._events_items = behavior, query, items
        new._event_cache, new._text_cache = {}, {}
        return new

    def _setup(self, tokenizer, ids: IdMaps, events: pd.DataFrame, item_text: dict[str, str], cfg: TaskConfig,
               max_input_len: int) -> None:
        self.tokenizer = tokenizer
        self.ids = ids
        self.style = cfg.prompt_style
        self.renderer = select_renderer(cfg.prompt_style)  # chosen once, not per piece
        self.max_text_tokens = cfg.max_text_tokens
        self.max_input_len = max_input_len
        self.eos = int(tokenizer.eos_token_id)
        self._events_behavior = events["behavior"].tolist()
        self._events_query = events["query"].tolist()
        self._events_items = [list(x) for x in events["items"]]
        self._item_text = item_text
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

    def item_text(self, item: str) -> str:
        return self._item_text[item]

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
                ids = self.renderer.rec_event(self, self.item_id(COLLABORATIVE, items[0]))
            else:
                query = self.text(self._events_query[event_id], self.max_text_tokens)
                clicked = [t for it in items for t in self.item_id(SEMANTIC, it)]
                ids = self.renderer.search_event(self, query, clicked)
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
        head, tail = self.renderer.frame(self, sample, self.max_text_tokens)
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

    def input_text(self, sample: Sample) -> str:
        """The rendered input as text (for inspection and docs)."""
        return self.tokenizer.decode(self.input(sample))

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
