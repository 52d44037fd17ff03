"""Serving a run: ``Service`` (no HTTP) over an ``Engine``, the HTTP app, request and answer schemas."""

from gensar.exports import lazy_exports

__all__ = [
    "Engine", "EventRequest", "HistoryEvent", "RankedItem", "RecommendRequest", "RecordKind", "RecordStore",
    "SearchRequest", "ServeConfig", "Service", "SuggestRequest", "create_app", "open_store",
]
__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    "gensar.serve.service": ("ServeConfig", "Service"),
    "gensar.serve.engine": ("Engine", "HistoryEvent", "RankedItem"),
    "gensar.serve.schemas": ("EventRequest", "RecommendRequest", "SearchRequest", "SuggestRequest"),
    "gensar.serve.app": ("create_app",),
    "gensar.serve.store": ("RecordKind", "RecordStore", "open_store"),
})
