"""Request and answer bodies of the HTTP API, also the line format of ``--batch`` JSONL files.

Requests are strict (``extra="forbid"``, no type coercion: ``"k": "10"`` or ``"k": true`` is a 422;
only ``8.0``, an integer in JSON Schema, passes as 8), so a client mistake is reported instead of
guessed at. Limits are module constants so they appear
in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.fields import FieldInfo

MAX_K = 100  # items / queries per answer
MAX_ID_CHARS = 200  # user and item ids
MAX_QUERY_CHARS = 500
MAX_EVENT_ITEMS = 50  # items clicked in one search session
MAX_NEW_ITEMS = 1000  # items added by one POST /items
MAX_TEXT_CHARS = 10_000  # an added item's title, description, brand, each category name
MAX_CATEGORIES = 20  # levels of an added item's category path


def _text(value: str) -> str:
    # (Lone surrogates such as "\ud800" never get here: pydantic rejects them as invalid strings.)
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _nonblank(max_length: int) -> FieldInfo:
    # The pattern (a non-space character anywhere) documents the rule in the schema; ``_text``
    # enforces it with a readable message.
    return Field(min_length=1, max_length=max_length, json_schema_extra={"pattern": r"\S"})


UserId = Annotated[str, _nonblank(MAX_ID_CHARS), AfterValidator(_text)]
ItemId = UserId
Query = Annotated[str, _nonblank(MAX_QUERY_CHARS), AfterValidator(_text)]


def _whole_number(value: object) -> object:
    # JSON Schema's "integer" includes 8.0; strict validation alone would reject it. Strings and
    # booleans stay errors.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Field before the validator: the other order drops minimum/maximum from the JSON schema.
K = Annotated[int, Field(ge=1, le=MAX_K, description=f"answers wanted, 1..{MAX_K}"), BeforeValidator(_whole_number)]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class RecommendRequest(_Request):
    user_id: UserId
    k: K = 10


class SearchRequest(_Request):
    query: Query
    k: K = 10
    user_id: UserId | None = Field(default=None, description="personalize with this user's history")


class SuggestRequest(_Request):
    user_id: UserId
    k: K = 10


class EventRequest(_Request):
    """A recommendation click (``rec``: one item, no query) or a search session (``search``)."""

    user_id: UserId
    behavior: Literal["rec", "search"]
    query: Annotated[str, Field(max_length=MAX_QUERY_CHARS)] = ""
    items: Annotated[list[ItemId], Field(min_length=1, max_length=MAX_EVENT_ITEMS)]
    timestamp: Annotated[int, Field(ge=0, le=2**53), BeforeValidator(_whole_number)] | None = Field(
        default=None, description="seconds since the epoch; default: when the server receives it")

    @model_validator(mode="after")
    def _consistent(self) -> EventRequest:
        from gensar.data.schema import event_problem  # the rules gensar prepare applies

        problem = event_problem(self.user_id, self.behavior, self.query, self.items)
        if problem is not None:
            raise ValueError(problem[1])
        return self


Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]


class NewItem(_Request):
    """An item of the canonical items format (``gensar.data.canonical``); unknown fields are refused."""

    item_id: ItemId
    title: Text = ""
    categories: Annotated[list[Text], Field(max_length=MAX_CATEGORIES, description="category path, root first")] = []
    description: Text = ""
    brand: Text = ""


class AddItemsRequest(_Request):
    """Items to add to the trained catalog (``POST /items``), all or none."""

    items: Annotated[list[NewItem], Field(min_length=1, max_length=MAX_NEW_ITEMS)]


# ---- answers -------------------------------------------------------------------------------------
class ScoredItem(BaseModel):
    item_id: str
    title: str
    score: float


class ScoredQuery(BaseModel):
    query: str
    score: float


class RecommendResponse(BaseModel):
    user_id: str
    known_user: bool = Field(description="false: no history, served as a new user")
    history_length: int
    items: list[ScoredItem]


class SearchResponse(BaseModel):
    query: str
    user_id: str | None
    known_user: bool
    history_length: int
    items: list[ScoredItem] = Field(description="best first; may hold fewer than k items")


class SuggestResponse(BaseModel):
    user_id: str
    known_user: bool
    history_length: int
    queries: list[ScoredQuery]


class ItemRef(BaseModel):
    item_id: str
    title: str


class ItemResponse(BaseModel):
    item_id: str
    index: int
    title: str
    categories: list[str]
    brand: str
    description: str


class AddedItemOut(BaseModel):
    item_id: str
    index: int
    semantic_id: list[str]
    collaborative_id: list[str]


class AddItemsResponse(BaseModel):
    seq: int = Field(description="position in the items log (1, 2, ...)")
    catalog_items: int = Field(description="items in the catalog now")
    items: list[AddedItemOut]


class EventResponse(BaseModel):
    user_id: str
    seq: int = Field(description="position in the events log (1, 2, ...)")
    history_length: int


class HistoryEventOut(BaseModel):
    behavior: Literal["rec", "search"]
    query: str
    items: list[ItemRef]
    timestamp: int


class HistoryResponse(BaseModel):
    user_id: str
    known_user: bool
    history_length: int
    events: list[HistoryEventOut] = Field(description="the newest events, oldest first")


class UsersResponse(BaseModel):
    users: list[str]
    total: int = Field(description="users matching the prefix")


class BatchStatsOut(BaseModel):
    batches: int
    requests: int
    largest: int


class HealthResponse(BaseModel):
    status: Literal["ok"]
    engine: str
    items: int
    users: int
    live_events: int
    writes_need_key: bool  # POST /events needs the API key (the page then asks for it)
    pid: int  # the server process that answered (gensar serve --workers N runs N of them)
    batching: dict[str, BatchStatsOut]


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every 4xx answer: a one-line ``error``, and per-field ``detail`` for validation errors."""

    error: str
    detail: list[ErrorDetail] = []
