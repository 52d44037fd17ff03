"""Non-generative baselines behind one ``Scorer`` protocol: popularity, BM25, dense, match-popularity, SASRec."""

from gensar.exports import lazy_exports

__all__ = [
    "Request", "SASRecScorer", "Scorer", "build_scorer", "evaluate_scorer", "full_ranking_metrics",
    "load_sasrec_scorer",
]
__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    "gensar.baselines.scorer": ("Request", "SASRecScorer", "Scorer", "build_scorer", "evaluate_scorer",
                                "full_ranking_metrics", "load_sasrec_scorer"),
})
