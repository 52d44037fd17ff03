"""The trained GenSAR model as a serving ``Engine``: constrained beam search over identifiers.

* recommend: input ``<t_rec>`` + history, decoder forced to ``<rec>``, beam search restricted to the
  trie of collaborative IDs; an item's score is ``log p(collaborative ID | input, <rec>)``.
* search: input ``<t_search>`` + history + ``<search>`` + query, decoder forced to ``<search>``, trie
  of semantic IDs. With an empty history this is exactly the ad-hoc search task's input.
* suggest_queries: input ``<t_query>`` + history, decoder forced to ``<query>``; a beam of width k
  runs over a trie of the *known* queries (distinct queries of the prepared search log, each as its word
  pieces + ``</s>``), so a suggestion is always a query someone issued and its score is the full
  ``log p(query </s> | input, <query>)``. Free generation could invent queries, but a small model
  on a few thousand distinct queries mostly invents broken ones.

Inputs are rendered by ``gensar.model.encoder.SampleEncoder`` (the training code), so serving and
training can never disagree on the prompt format. That encoder renders histories given as event
ids of an events table; live events are not in the prepared tables, so ``render`` puts each
batch's histories into a small events table of their own (``SampleEncoder.for_events``). Every call decodes the whole
batch in one encoder pass and one beam search (``gensar.decode.beam``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gensar.data.prepared import PreparedData
from gensar.data.schema import SEARCH
from gensar.decode.beam import constrained_beam_search
from gensar.decode.t5_decoder import T5BeamDecoder
from gensar.decode.t5_fused import T5Weights
from gensar.errors import GensarError
from gensar.ids.item_ids import COLLABORATIVE, SEMANTIC, IdMaps
from gensar.ids.trie import IdTrie
from gensar.model.scoring import pad_batch
from gensar.model.encoder import SampleEncoder
from gensar.model.prompts import QUERY_TOKEN, REC_TOKEN, SEARCH_TOKEN
from gensar.model.samples import Sample
from gensar.model.task_config import TaskConfig
from gensar.model.trained import TrainedModel
from gensar.serve.engine import History, RankedItem, RankedQuery


def load_trained(run_dir: str | Path) -> TrainedModel:
    """``RUN_DIR/model`` (weights, tokenizer, ``gensar_model.json``) with the item IDs it was trained
    with (``model/item_ids.json``, else ``ids/item_ids.json``)."""
    run_dir = Path(run_dir)
    model_dir = run_dir / "model"
    ids_path = model_dir / "item_ids.json"
    if not ids_path.is_file():
        ids_path = run_dir / "ids" / "item_ids.json"
    return TrainedModel.load(model_dir, ids_path)


class GenerativeEngine:
    name = "generative"

    def __init__(self, model, tokenizer, ids: IdMaps, data: PreparedData, tasks: TaskConfig, max_input_len: int,
                 beam_size: int = 30) -> None:
        """``model`` in eval mode on CPU; ``ids`` the identifiers it was trained with."""
        item_ids = data.items["item_id"].tolist()
        ids.require_items(item_ids)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.ids = ids
        self.tasks = tasks
        self.max_input_len = max_input_len
        self.beam_size = beam_size
        self.num_items = len(item_ids)
        self.item_ids = item_ids
        self.pad = int(tokenizer.pad_token_id)
        probe = self._base_encoder = self._encoder()
        with torch.no_grad():
            self._weights = T5Weights.of(self.model)  # the model is frozen here: regrouped once
        self._prefix = {kind: probe.token(tok) for kind, tok in
                        ((COLLABORATIVE, REC_TOKEN), (SEMANTIC, SEARCH_TOKEN), ("query", QUERY_TOKEN))}
        self._tries = {kind: IdTrie.build(self.id_codes(kind, item_ids)) for kind in (COLLABORATIVE, SEMANTIC)}
        self.queries, query_tokens = self._known_queries(probe, data)
        self._query_trie = IdTrie.build(query_tokens) if query_tokens else None

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, data: PreparedData | None = None, beam_size: int = 30) -> GenerativeEngine:
        run_dir = Path(run_dir)
        data = data if data is not None else PreparedData.load(run_dir / "data")
        return cls.from_trained(load_trained(run_dir), data, beam_size)

    @classmethod
    def from_trained(cls, t: TrainedModel, data: PreparedData, beam_size: int = 30) -> GenerativeEngine:
        return cls(t.model, t.tokenizer, t.ids, data, t.config.tasks, t.config.train.max_input_len, beam_size)

    # ---- Engine ------------------------------------------------------------------------
    def recommend(self, histories: Sequence[History], k: int) -> list[list[RankedItem]]:
        return self._decode_items("rec", histories, [""] * len(histories), COLLABORATIVE, k)

    def search(self, queries: Sequence[str], histories: Sequence[History], k: int) -> list[list[RankedItem]]:
        if len(queries) != len(histories):
            raise ValueError(f"{len(queries)} queries but {len(histories)} histories")
        return self._decode_items("search", histories, queries, SEMANTIC, k)

    def suggest_queries(self, histories: Sequence[History], k: int) -> list[list[RankedQuery]]:
        if self._query_trie is None or not histories:
            return [[] for _ in histories]
        k = min(k, len(self.queries))
        # Beam = k here: a query is many word pieces deep (up to max_text_tokens + 1 steps, against
        # ~4 for an identifier), so a wide beam costs several times a recommendation.
        items, scores = self._beam("next_query", histories, [""] * len(histories), self._query_trie,
                                   self._prefix["query"], k, beam_size=k)
        return [[RankedQuery(self.queries[i], s) for i, s in zip(row_i, row_s, strict=True) if i >= 0]
                for row_i, row_s in zip(items, scores, strict=True)]

    def add_items(self, data: PreparedData, start: int, ids: IdMaps) -> None:
        item_ids = data.items["item_id"].tolist()
        if start != self.num_items or item_ids[:start] != self.item_ids:
            raise GensarError(f"items added from row {start}, but the engine holds {self.num_items}")
        ids.require_items(item_ids)
        self.ids = ids
        self._base_encoder = self._encoder()  # the identifier caches follow the grown IDs
        # Rebuilt whole (trie nodes are stored level by level); old identifiers are unchanged, so
        # every trained item keeps its leaf and its scores.
        self._tries = {kind: IdTrie.build(self.id_codes(kind, item_ids)) for kind in (COLLABORATIVE, SEMANTIC)}
        self.item_ids = item_ids
        self.num_items = len(item_ids)

    def id_codes(self, kind: str, item_ids: Sequence[str]) -> np.ndarray:
        """Token ids of each item's ``kind`` identifier [n, L], right-padded with -1; every token
        must be in the model's vocabulary."""
        table = self.ids.of(kind)
        seqs = [self.tokenizer.convert_tokens_to_ids(list(table[item])) for item in item_ids]
        unk = self.tokenizer.unk_token_id
        for item, tokens in zip(item_ids, seqs, strict=True):
            if unk is not None and int(unk) in tokens:
                raise GensarError(f"the model's vocabulary lacks a token of item '{item}'s {kind} ID "
                                  "(model and item IDs from different runs?)")
        codes = np.full((len(seqs), max((len(s) for s in seqs), default=1)), -1, dtype=np.int64)
        for row, tokens in enumerate(seqs):
            codes[row, : len(tokens)] = tokens
        return codes

    # ---- pieces ------------------------------------------------------------------------
    def _decode_items(self, task: str, histories: Sequence[History], queries: Sequence[str], kind: str,
                      k: int) -> list[list[RankedItem]]:
        if not histories:
            return []
        items, scores = self._beam(task, histories, queries, self._tries[kind], self._prefix[kind], k)
        return [[RankedItem(i, s) for i, s in zip(row_i, row_s, strict=True) if i >= 0]
                for row_i, row_s in zip(items, scores, strict=True)]

    def _beam(self, task: str, histories: Sequence[History], queries: Sequence[str], trie: IdTrie,
              prefix: list[int], k: int, beam_size: int | None = None) -> tuple[list[list[int]], list[list[float]]]:
        """Top ``k`` leaves of ``trie`` per example: (leaf indices [B][k], log-probabilities [B][k])."""
        input_ids = self.render(task, histories, queries)  # [B, L]
        k = min(k, trie.num_items)
        beam = max(beam_size if beam_size is not None else self.beam_size, k)
        mask = input_ids != self.pad
        ranked = constrained_beam_search(self.model, input_ids, mask, trie, prefix, beam_size=beam, top_k=k,
                                         decoder=self.decoder(input_ids, mask))
        return ranked.items.tolist(), ranked.scores.tolist()  # [B, k] each

    def render(self, task: str, histories: Sequence[History], queries: Sequence[str]) -> torch.Tensor:
        """Rendered inputs of the batch, right-padded: [B, L] int64."""
        events, samples = [], []
        for history, query in zip(histories, queries, strict=True):
            start = len(events)
            events.extend(history)
            samples.append(Sample(task=task, query=query if task == SEARCH else "",
                                  history=tuple(range(start, len(events)))))
        encoder = self._base_encoder.with_events([e.behavior for e in events], [e.query for e in events],
                                                 [list(e.items) for e in events])
        return pad_batch([encoder.input(s) for s in samples], self.pad)

    def decoder(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> T5BeamDecoder:
        """``input_ids`` [B, L] encoded, ready for beam search or scoring."""
        return T5BeamDecoder(self.model, input_ids, attention_mask, weights=self._weights)

    def _encoder(self) -> SampleEncoder:
        """An encoder over no events and no item texts (rec/search/next_query inputs never use item
        texts); each request rebinds it to its own events (``with_events``)."""
        empty = pd.DataFrame({"behavior": [], "query": [], "items": []})
        return SampleEncoder.for_events(self.tokenizer, self.ids, empty, self.tasks, self.max_input_len)

    def _known_queries(self, encoder: SampleEncoder, data: PreparedData) -> tuple[list[str], list[list[int]]]:
        """Distinct queries of the search log (first-seen order) and their target tokens (+ ``</s>``)."""
        specials = {self.pad, encoder.eos}
        seen: dict[tuple[int, ...], str] = {}
        for behavior, query in zip(data.events["behavior"], data.events["query"], strict=True):
            if behavior != SEARCH or not query.strip():
                continue
            body = encoder.text(query, self.tasks.max_text_tokens)
            if not body or specials & set(body):  # a literal "</s>" in a query would break the trie
                continue
            seen.setdefault(tuple(body) + (encoder.eos,), query)
        return list(seen.values()), [list(t) for t in seen]
