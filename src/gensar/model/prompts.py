"""How samples read as prompts: the marker tokens, and one renderer per prompt style.

``compact`` (the default) spells a prompt with marker tokens only (``<t_search>`` H ``<search>``
query words); ``paper`` renders the same samples as English prompts in the spirit of the paper's
code, with the same targets. ``select_renderer`` picks the style's renderer once, the way bm25s
picks its scoring function once per index, so the encoder does not branch on the style per piece.
A renderer builds token ids out of an encoder's ``Pieces`` (marker, text and identifier ids).
"""

from __future__ import annotations

from typing import Protocol

from gensar.data.prepared import PreparedData
from gensar.ids.item_ids import COLLABORATIVE, SEMANTIC
from gensar.model.samples import Sample

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


class Pieces(Protocol):
    """Token ids of a prompt's parts (``SampleEncoder`` provides them, cached)."""

    def token(self, token: str) -> list[int]: ...

    def text(self, text: str, cap: int | None = None) -> list[int]: ...

    def item_id(self, kind: str, item: str) -> list[int]: ...

    def item_text(self, item: str) -> str: ...


class PromptRenderer(Protocol):
    def rec_event(self, p: Pieces, ident: list[int]) -> list[int]:
        """A history's recommendation interaction (``ident``: the item's collaborative ID)."""
        ...

    def search_event(self, p: Pieces, query: list[int], clicked: list[int]) -> list[int]:
        """A history's search session: its query words and the clicked items' semantic IDs."""
        ...

    def frame(self, p: Pieces, sample: Sample, cap: int) -> tuple[list[int], list[int]]:
        """Input ids before and after the history (``cap``: word pieces per text)."""
        ...

    def template_texts(self) -> list[str]:
        """Extra tokenizer-training texts, so that the template's words become whole word pieces."""
        ...


def _kind(task: str) -> str:
    """The identifier kind a text2*/*2text task names."""
    return SEMANTIC if task in ("text2sem", "sem2text") else COLLABORATIVE


class CompactPrompt:
    """Marker tokens only: the task token, then the history, then the query (search)."""

    def rec_event(self, p: Pieces, ident: list[int]) -> list[int]:
        return p.token(REC_TOKEN) + ident

    def search_event(self, p: Pieces, query: list[int], clicked: list[int]) -> list[int]:
        return p.token(SEARCH_TOKEN) + query + clicked

    def frame(self, p: Pieces, sample: Sample, cap: int) -> tuple[list[int], list[int]]:
        task = sample.task
        head = p.token(TASK_TOKENS[task]) if task in TASK_TOKENS else []
        if task in ("rec", "next_item", "next_query"):
            return head, []
        if task == "search":
            return head, p.token(SEARCH_TOKEN) + p.text(sample.query, cap)
        if task in ("adhoc", "adhoc_logged"):
            return head + p.token(SEARCH_TOKEN) + p.text(sample.query, cap), []
        if task in ("text2sem", "text2col"):
            return head + p.text(p.item_text(sample.item), cap), []
        if task in ("sem2text", "col2text"):
            return head + p.item_id(_kind(task), sample.item), []
        raise ValueError(f"unknown task '{task}'")

    def template_texts(self) -> list[str]:
        return []


class PaperPrompt:
    """English prompts in the spirit of the paper's code ("The user has the following ...")."""

    def rec_event(self, p: Pieces, ident: list[int]) -> list[int]:
        return p.text("the user clicked the recommended item") + ident + p.text(";")

    def search_event(self, p: Pieces, query: list[int], clicked: list[int]) -> list[int]:
        return p.text('the user searched for "') + query + p.text('" and clicked') + clicked + p.text(";")

    def frame(self, p: Pieces, sample: Sample, cap: int) -> tuple[list[int], list[int]]:
        task = sample.task
        if task in ("rec", "next_item", "next_query"):
            return p.text(_PAPER_HEAD), p.text(_PAPER_TAIL["rec" if task == "next_item" else task])
        if task == "search":
            query = p.text(sample.query, cap)
            return p.text(_PAPER_HEAD), (
                p.text('Now the user searches for "') + query + p.text('".') + p.text(_PAPER_TAIL["search"])
            )
        if task in ("adhoc", "adhoc_logged"):
            query = p.text(sample.query, cap)
            return (
                p.text('A user searches for "')
                + query
                + p.text(
                    '". Please predict the item that '
                    "matches the query. Answer with the semantic identifier of the item."
                )
            ), []
        if task in ("text2sem", "text2col"):
            text = p.text(p.item_text(sample.item), cap)
            return (
                p.text('Here is the description of an item: "')
                + text
                + p.text(f'". What is the {_kind(task)} identifier of this item?')
            ), []
        if task in ("sem2text", "col2text"):
            kind = _kind(task)
            ident = p.item_id(kind, sample.item)
            return (p.text(f"An item has the {kind} identifier") + ident
                    + p.text(". Please describe this item.")), []
        raise ValueError(f"unknown task '{task}'")

    def template_texts(self) -> list[str]:
        # Repeated: the templates occur in every sample, far more often than any item word.
        return list(_PAPER_FRAGMENTS) * 100


_RENDERERS: dict[str, type[CompactPrompt] | type[PaperPrompt]] = {
    "compact": CompactPrompt,
    "paper": PaperPrompt,
}


def select_renderer(style: str) -> PromptRenderer:
    """The renderer of prompt style ``style`` (``TaskConfig.prompt_style``)."""
    try:
        return _RENDERERS[style]()
    except KeyError:
        raise ValueError(f"unknown prompt style '{style}' (expected one of {sorted(_RENDERERS)})") from None


def tokenizer_corpus(data: PreparedData, style: str) -> list[str]:
    """Texts to train the WordPiece on: item texts, distinct queries, and the prompt templates."""
    corpus = list(data.item_texts) + sorted(set(data.events["query"]) - {""})
    return corpus + select_renderer(style).template_texts()
