"""``gensar prepare``: raw log -> k-core -> semi-synthetic search -> splits -> candidates.

``prepare(raw, cfg)`` is pure and seeded (same input and config, same tables); the command's
handler (``gensar.data.cli``) loads a source, runs it and writes the prepared directory atomically
(see prepared.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from gensar import __version__
from gensar.config import omitted_at_default, require, require_seed, to_dict
from gensar.data.candidates import BM25Config, build_candidates
from gensar.data.cold import choose_cold_items, cold_event_mask, warm_first
from gensar.data.kcore import kcore, log_counts
from gensar.data.prepared import SPLITS, PreparedData
from gensar.data.queries import apply_search_protocol, build_item_queries
from gensar.data.schema import BEHAVIORS, SEARCH, RawDataset, validate
from gensar.data.splits import leave_one_out
from gensar.data.time_cut import first_events
from gensar.errors import GensarError


MAX_COUNT = 2**31 - 1  # history lengths, k-core thresholds and list sizes: int32 is plenty, and safe


@dataclass(frozen=True)
class PrepareConfig:
    """Options of ``gensar prepare`` (YAML via --config, ``--set key=value``, or the CLI flags)."""

    # auto: keep the source's search log if it has search events, else "mixed".
    search_protocol: Literal["auto", "mixed", "duplicate", "none"] = "auto"
    search_ratio: float = 0.5  # mixed: probability that an interaction becomes a search session
    seed: int = 0
    max_history: int = 5  # events in each example's history (the paper uses 5)
    kcore: int = 0  # iterative user/item k-core on interactions; 0 = off
    num_negatives: int = 99  # negatives per evaluation candidate list
    # Users with fewer events of a behavior give only train examples of it (leave-one-out needs
    # a test and a valid event; 3 leaves at least one to train on).
    min_events_per_behavior: int = 3
    query_max_words: int = 12  # semi-synthetic queries keep their first words (see queries.py)
    # semi-synthetic queries from the category path, a seeded subset of title words, or either per session
    query_source: Literal["category", "title", "mixed"] = "category"
    bm25: BM25Config = field(default_factory=BM25Config)
    # Cold-start evaluation: a seeded fraction of items is new (never seen in training, given
    # identifiers after it; see gensar.data.cold). 0 = off (and left out of manifests and fingerprints).
    cold_items: float = omitted_at_default(0.0)
    # Each user's first fraction of events and the items they name (gensar.data.time_cut): the
    # older part of the log, for a refresh benchmark. 1 = everything (left out of manifests).
    history_fraction: float = omitted_at_default(1.0)

    def validate(self) -> None:
        # upper bounds: the CLI flags skip the config's 64-bit check, and numpy/pandas overflow
        require(0.0 <= self.search_ratio <= 1.0, "search_ratio", "must be in [0, 1]")
        require_seed(self.seed)
        require(1 <= self.max_history <= MAX_COUNT, "max_history", f"must be in 1..{MAX_COUNT}")
        require(0 <= self.kcore <= MAX_COUNT, "kcore", f"must be in 0..{MAX_COUNT} (0 = off)")
        require(1 <= self.num_negatives <= MAX_COUNT, "num_negatives", f"must be in 1..{MAX_COUNT}")
        require(self.min_events_per_behavior >= 2, "min_events_per_behavior", "must be >= 2 (valid + test)")
        require(self.query_max_words >= 1, "query_max_words", "must be >= 1")
        require(0.0 <= self.cold_items < 1.0, "cold_items", f"must be in [0, 1) (a fraction of the items), "
                f"got {self.cold_items}")
        require(0.0 < self.history_fraction <= 1.0, "history_fraction",
                f"must be in (0, 1] (a fraction of each user's events), got {self.history_fraction}")
        self.bm25.validate()


def resolve_protocol(protocol: str, events: pd.DataFrame) -> str:
    if protocol != "auto":
        return protocol
    return "none" if (events["behavior"] == SEARCH).any() else "mixed"


def count_examples(examples: pd.DataFrame) -> dict[str, dict[str, int]]:
    sizes = examples.groupby(["split", "behavior"]).size()
    return {s: {b: int(sizes.get((s, b), 0)) for b in BEHAVIORS} for s in SPLITS}


def prepare(raw: RawDataset, cfg: PrepareConfig, progress: bool = False) -> PreparedData:
    """Run the whole preparation on a loaded dataset; deterministic given ``cfg.seed``."""
    validate(raw.items, raw.events, raw.source)
    core = kcore(raw.items, raw.events, cfg.kcore)
    if len(core.events) == 0:
        raise GensarError(f"{cfg.kcore}-core filtering removed every interaction of {raw.source}")
    items = core.items

    protocol = resolve_protocol(cfg.search_protocol, core.events)
    item_queries = build_item_queries(items, cfg.query_max_words)
    query_of = dict(zip(items["item_id"], item_queries.queries, strict=True))
    title_of = dict(zip(items["item_id"], items["title"], strict=True))
    events = apply_search_protocol(core.events, query_of, protocol, cfg.search_ratio, cfg.seed,
                                   cfg.query_source, title_of, cfg.query_max_words)
    events, items = first_events(events, items, cfg.history_fraction)

    cold = choose_cold_items(items["item_id"].tolist(), cfg.cold_items, cfg.seed)
    cold_events = cold_event_mask(events, cold)
    examples = leave_one_out(events, cfg.max_history, cfg.min_events_per_behavior, cold_events)
    candidates, cand_stats = build_candidates(
        examples, events, items, cfg.num_negatives, cfg.seed, cfg.bm25, progress=progress
    )

    search = events[events["behavior"] == SEARCH]
    manifest = {
        "gensar_version": __version__,
        "source": str(raw.source),
        "format": raw.format,
        "seed": cfg.seed,
        "options": to_dict(cfg),
        "search_protocol": protocol,
        "source_info": json.loads(json.dumps(raw.info, default=str)),
        "kcore": core.summary(),
        "queries": {
            "dropped_prefix": " ".join(item_queries.dropped_prefix),
            "distinct_item_queries": len({q for q in item_queries.queries if q}),
            "items_from_title": item_queries.from_title,
            "items_without_query": item_queries.missing,
        },
        "counts": {
            **log_counts(events).as_dict(),
            "catalog_items": len(items),
            "events": len(events),
            "rec_events": int(len(events) - len(search)),
            "search_sessions": len(search),
            "unique_queries": int(search["query"].nunique()),
            "examples": count_examples(examples),
        },
        "candidates": cand_stats.as_dict(),
    }
    if cold:
        manifest["cold_items"] = cold_summary(cold, cold_events, examples)
        items = warm_first(items, cold)  # after the candidates: they are drawn as without cold items
    return PreparedData(manifest=manifest, items=items, events=events, examples=examples,
                        candidates=candidates, cold_items=tuple(cold))


def cold_summary(cold: list[str], cold_events, examples: pd.DataFrame) -> dict:
    """The manifest's ``cold_items`` block: how many items, events and valid/test targets are cold."""
    targets = examples[examples["target"].isin(set(cold)) & (examples["split"] != "train")]
    return {"items": len(cold), "events": int(cold_events.sum()), "examples": count_examples(targets)}
