"""Hybrid generative retrieval: generative beam + text/collaborative retrievers, fused."""

from gensar.exports import lazy_exports

__all__ = [
    "HybridConfig", "HybridRanker",
]
__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    "gensar.hybrid.config": ("HybridConfig",),
    "gensar.hybrid.ranker": ("HybridRanker",),
})
