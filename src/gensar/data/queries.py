"""Semi-synthetic search: item queries from category paths, and the protocols that make search logs.

Logs without a search log (Amazon reviews, RecBole sequences) get search sessions the way
product-search research builds them (Ai et al., SIGIR 2017, "Learning a Hierarchical Embedding
Model for Personalized Product Search"): the query of a purchase is the de-duplicated words of the
purchased item's category path, lower-cased, without stop words and punctuation.

Rules implemented here (tested in tests/test_queries.py):

* Words are maximal runs of letters/digits (``&``, ``-``, ``/``, ``'`` ... all split words and vanish).
* The root category shared by the whole catalog carries no information ("Industrial & Scientific"
  in amazon-scientific, where the path is one string), so the longest common *word* prefix of all
  items' category paths is dropped before stop words are removed. It is computed over items that
  have categories, and only when at least two do.
* An item whose category path is empty after that (no categories, or only the root) gets a query
  from its title with the same cleaning.
* A query keeps at most ``max_words`` words, the first ones: titles are long and noisy and their
  first words usually name the product; a few category fields hold a pasted product description
  (one amazon-scientific item has 80 words of "category").
* An item with neither yields the empty query: it cannot be searched for, so protocols keep its
  interactions as recommendation events only.

Protocols (``apply_search_protocol``), applied to a log of rec interactions:

* ``mixed``: each interaction becomes a search session with probability ``search_ratio`` (seeded),
  otherwise it stays a rec interaction. Every interaction appears exactly once.
* ``duplicate`` (the paper's Amazon protocol): every interaction appears in both logs, a rec event
  and a search event with the same timestamp. Histories only hold events strictly earlier than the
  target, so neither twin can appear in the history of the other.
* ``none``: events are kept as they are.

Query sources (``query_source``; the category path is broad, real users also type specific queries):

* ``category`` (default): the item's category query above, the same for every session of the item.
* ``title``: a seeded subset of the title's content words (``words`` + ``clean_words``), drawn per
  session: ``k`` of the ``n`` words, ``k`` uniform in ``TITLE_QUERY_WORDS`` = 2..4 (at most ``n``;
  product-search queries are short), kept in title order ("stecraft centrifuge fu 263" ->
  "stecraft 263"). Such a query names a brand, a model or a product noun: specific, sometimes
  unique, sometimes shared by a brand's items. A title without content words falls back to the
  category query.
* ``mixed``: each session draws its source, title with probability ``TITLE_SHARE``.

The source draws use their own generator, so the rec/search split of ``mixed`` does not depend on
the query source: a title run and a category run search the same events.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gensar.data.schema import REC, SEARCH, make_events
from gensar.errors import GensarError

# English stop words: the NLTK list, inlined so nothing is downloaded at run time, less its
# contractions ("don't"): ``words`` splits at apostrophes, and "don" and "t" are in the list.
_STOP_WORDS_TEXT = """
a about above after again against ain all am an and any are aren as at be because been before being
below between both but by can couldn d did didn do does doesn doing don down during each few for
from further had hadn has hasn have haven having he her here hers herself him himself his how i if
in into is isn it its itself just ll m ma me mightn more most mustn my myself needn no nor not now o
of off on once only or other our ours ourselves out over own re s same shan she should shouldn so
some such t than that the their theirs them themselves then there these they this those through to
too under until up ve very was wasn we were weren what when where which while who whom why will with
won wouldn y you your yours yourself yourselves
"""
STOP_WORDS: frozenset[str] = frozenset(_STOP_WORDS_TEXT.split())

PROTOCOLS = ("mixed", "duplicate", "none")
QUERY_SOURCES = ("category", "title", "mixed")
TITLE_SHARE = 0.5  # query source "mixed": P(a session's query is drawn from the title)
TITLE_QUERY_WORDS = (2, 4)  # query source "title": words per query, uniform in this range

_WORD = re.compile(r"[^\W_]+")  # letters and digits; punctuation and '_' separate words


def words(text: str) -> list[str]:
    """Lower-cased words of ``text``, punctuation removed (stop words kept)."""
    return _WORD.findall(text.lower())


def clean_words(tokens: Sequence[str]) -> list[str]:
    """Drop stop words and repeats, keeping first occurrences in order."""
    seen: set[str] = set()
    out = []
    for w in tokens:
        if w not in STOP_WORDS and w not in seen:
            seen.add(w)
            out.append(w)
    return out


def category_words(categories: Sequence[str]) -> list[str]:
    """Words of a category path (root first), before prefix dropping and cleaning."""
    return [w for c in categories for w in words(c)]


def common_word_prefix(paths: Sequence[Sequence[str]]) -> list[str]:
    """Longest word prefix shared by every path (empty when fewer than two paths)."""
    if len(paths) < 2:
        return []
    first = paths[0]
    n = min(len(p) for p in paths)
    for i in range(n):
        w = first[i]
        if any(p[i] != w for p in paths):
            return list(first[:i])
    return list(first[:n])


@dataclass(frozen=True)
class ItemQueries:
    """One query per item row ("" = the item cannot be searched for)."""

    queries: list[str]
    dropped_prefix: list[str]  # the catalog's shared root words, removed from every path
    from_title: int  # items whose query comes from the title
    missing: int  # items with no query at all


def build_item_queries(items: pd.DataFrame, max_words: int = 12) -> ItemQueries:
    """The search query of each item (row order of ``items``); see the module doc for the rules."""
    paths = [category_words(c) for c in items["categories"]]
    prefix = common_word_prefix([p for p in paths if p])
    cut = len(prefix)
    queries, from_title, missing = [], 0, 0
    for path, title in zip(paths, items["title"], strict=True):
        q = clean_words(path[cut:])
        if not q:
            q = clean_words(words(title))
            from_title += bool(q)
        missing += not q
        queries.append(" ".join(q[:max_words]))
    return ItemQueries(queries=queries, dropped_prefix=prefix, from_title=from_title, missing=missing)


def title_query(title: str, rng: np.random.Generator, max_words: int = 12) -> str:
    """A seeded subset of the title's content words, in title order ("" when it has none)."""
    content = clean_words(words(title))
    n = len(content)
    if n == 0:
        return ""
    lo, hi = (min(n, max_words, w) for w in TITLE_QUERY_WORDS)
    k = int(rng.integers(lo, hi + 1))
    keep = np.sort(rng.choice(n, size=k, replace=False))
    return " ".join(content[i] for i in keep)


def session_queries(first_items: Sequence[str], category_queries: Sequence[str], item_title: dict[str, str],
                    source: str, seed: int = 0, max_words: int = 12) -> np.ndarray:
    """object [n] the query of each session (its first clicked item, its category query) under a
    query source: the category query itself, or one drawn from the item's title."""
    if source not in QUERY_SOURCES:
        raise GensarError(f"unknown query source '{source}' (known: {', '.join(QUERY_SOURCES)})")
    category = np.array(list(category_queries), dtype=object)
    if source == "category":
        return category
    rng = np.random.default_rng([seed, 0x717])
    # mixed: draw for every session, so one session's choice does not shift the others'
    from_title = rng.random(len(category)) < TITLE_SHARE if source == "mixed" else np.ones(len(category), bool)
    out = category.copy()
    for row in np.flatnonzero(from_title):
        out[row] = title_query(item_title.get(first_items[row], ""), rng, max_words) or category[row]
    return out


def apply_search_protocol(
    events: pd.DataFrame,
    item_query: dict[str, str],
    protocol: str,
    search_ratio: float = 0.5,
    seed: int = 0,
    query_source: str = "category",
    item_title: dict[str, str] | None = None,
    max_words: int = 12,
) -> pd.DataFrame:
    """Turn a rec-only log into rec events + search sessions (a new canonical events table).

    ``item_query`` maps item id -> category query; the query of an event is drawn from its first
    item under ``query_source`` (``item_title``: item id -> title, needed unless "category"), and
    an event whose item has no query stays a rec event (no search twin in ``duplicate``).
    """
    if protocol not in PROTOCOLS:
        raise GensarError(f"unknown search protocol '{protocol}' (known: {', '.join(PROTOCOLS)})")
    if query_source not in QUERY_SOURCES:
        raise GensarError(f"unknown query source '{query_source}' (known: {', '.join(QUERY_SOURCES)})")
    if protocol == "none":
        if query_source != "category":
            raise GensarError(
                f"query source '{query_source}' applies to semi-synthetic search only; with search protocol "
                "'none' the source's own queries are kept (the synthetic world: gensar synth --query-source ...)"
            )
        return events.copy()
    n_search = int((events["behavior"] == SEARCH).sum())
    if n_search:
        raise GensarError(
            f"the source already has {n_search} search sessions; the '{protocol}' protocol only "
            "applies to logs without queries (use --search-protocol none or auto)"
        )
    first = [its[0] for its in events["items"]]
    category = [item_query.get(i, "") for i in first]
    query = session_queries(first, category, item_title or {}, query_source, seed, max_words)
    searchable = query != ""
    base = events[["user_id", "timestamp", "items"]].reset_index(drop=True)
    if protocol == "mixed":
        # Draw for every event (searchable or not) so one item's query does not shift the others' draws.
        rng = np.random.default_rng([seed, 0x5EA])
        is_search = (rng.random(len(base)) < search_ratio) & searchable
        out = base.assign(
            behavior=np.where(is_search, SEARCH, REC),
            query=np.where(is_search, query, ""),
        )
    else:  # duplicate: rec event then its search twin, same timestamp, adjacent rows
        rec = base.assign(behavior=REC, query="", _pos=np.arange(len(base)) * 2)
        twin = base[searchable].assign(behavior=SEARCH, query=query[searchable])
        twin["_pos"] = np.flatnonzero(searchable) * 2 + 1
        out = pd.concat([rec, twin]).sort_values("_pos", kind="stable").drop(columns="_pos")
    # make_events sorts stably by (user, timestamp, row order) and renumbers event ids.
    return make_events(out.reset_index(drop=True))
