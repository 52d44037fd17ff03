"""Settings of hybrid generative retrieval (``gensar.hybrid``): which retrievers, how deep, how fitted."""

from __future__ import annotations

from dataclasses import dataclass

from gensar.config import require

REC_SCORERS = ("sasrec", "content", "popularity")
# Search also weighs what the user's history says (SASRec, content), as features only: on valid
# (2026-12-06, the fit's cross-validated NDCG@10 over the whole catalog) 0.510 -> 0.596 on the demo
# world, 0.523 -> 0.538 on amazon-scientific, 0.655 -> 0.666 on ml-100k (benchmarks/README.md).
SEARCH_SCORERS = ("bm25", "dense", "match-popularity", "popularity", "sasrec", "content")
KNOWN_SCORERS = ("sasrec", "content", "popularity", "bm25", "dense", "match-popularity")
# Scorers that rank by the user's history alone: in search they know the user but not the query, so
# they score the candidates (a feature) and propose none.
HISTORY_ONLY = ("sasrec", "content")


@dataclass(frozen=True)
class HybridConfig:
    # Off: the pipeline evaluates and serves the generative model alone (beam search).
    enabled: bool = True
    beam_size: int = 30  # generative proposals per request (constrained beam search)
    depth: int = 50  # proposals per retriever: its top ``depth`` items join the candidate union
    # Scorers whose scores become fusion features, per behavior; each also proposes candidates
    # unless listed in ``feature_only`` (popularity proposes the same items to everyone) or, in
    # search, it ranks by history alone (``HISTORY_ONLY``).
    rec_scorers: tuple[str, ...] = REC_SCORERS
    search_scorers: tuple[str, ...] = SEARCH_SCORERS
    feature_only: tuple[str, ...] = ("popularity",)
    # Scorers that run in a second thread beside the beam (e.g. "dense", whose query encoding is the
    # slowest part). None by default: on a CPU the two threads' torch thread pools compete for the
    # same cores (amazon-scientific, 2 threads: hybrid search p50 45 ms beside, 30 ms inline;
    # recommendation 22 vs 13.5 ms; 1 thread: no gain either); a machine with spare cores may differ.
    beside_beam: tuple[str, ...] = ()
    # What the fit may serve with less, where the valid split shows no loss (``gensar.hybrid.plan``):
    # scorers it may leave out (dense retrieval's query encoding costs more than the whole beam on
    # a CPU), and shallower proposal depths than ``depth`` (fewer candidates to score exactly). None
    # below 20 by default: the fused top 20 then always can hold each proposer's own top 20, so
    # Recall@20 never falls below a part's for want of candidates.
    prunable: tuple[str, ...] = ("dense", "content")
    fit_depths: tuple[int, ...] = (20,)
    # Narrower generative beams the fit also runs on valid (its candidates' exact scores do not
    # depend on the beam), so a plan may propose with fewer beams where that loses nothing. Depths
    # and widths at or above ``depth`` / ``beam_size`` are ignored.
    fit_beam_sizes: tuple[int, ...] = (10,)
    # Serving time as a bound on the plan (0: none). Above 0, the fit times every whole-catalog plan
    # on ``latency_requests`` single valid requests against the generative beam alone (the engine
    # without the hybrid) and leaves out the plans slower than this multiple of it
    # (``gensar.hybrid.latency``); the rule then chooses among the rest, and where none is left the
    # cheapest plan serves. Timed on the machine that fits, so the choice can differ between machines.
    # 2.0: issue 14's bar (1.5x the generative engine of its day, which took ~1.4x today's beam);
    # on valid it drops dense retrieval from search at -0.003..+0.004 NDCG@10, at most -0.008
    # Recall@20 whole (benchmarks/README, "A bound on serving time").
    max_latency_ratio: float = 2.0
    latency_requests: int = 30
    l2: float = 1e-2  # ridge penalty of the fusion weights (features are standardized)
    # New items (cold, or added to the catalog) get fusion weights of their own where valid has
    # any among its candidates (``gensar.hybrid.fusion``); off: one weight vector for all.
    new_weights: bool = True
    # Where valid has none, a seeded share of the trained items plays new to fit those weights
    # (``gensar.hybrid.pseudo_new``; whole-catalog fusions only); 0 = off: new items share the
    # trained items' weights. Off by default: at 0.1 it removed the demo world's warm loss from
    # added items (valid rec Recall@10 -8.9% -> 0%) and raised amazon-scientific's (-0.3% -> -3.6%)
    # (benchmarks/README, "A living catalog").
    pseudo_new: float = 0.0
    folds: int = 2  # cross-validation folds over the valid split for the reported valid figures
    # Valid examples per behavior the fusion is fitted and the plan chosen on (evenly spaced; 0 = all).
    # The weights need few, the plan choice's one-standard-error rule many: at 1,000 it kept
    # amazon-scientific's duplicate protocol from the content recommender (valid, all 8,442 users,
    # cross-validated rec NDCG@10 0.0869 -> 0.0943 with the plan a fit on all of them picks); on its
    # mixed protocol the fit on all 5.7K picks plans within 0.0005 of the 1,000-example fit's; the demo
    # and ml-100k have fewer than 1,000. Each example costs the exact scoring of ~100 candidates
    # (~60 s per 1,000 on 2 cores), so the cap bounds the fit at large scale.
    fit_examples: int = 10_000
    batch_size: int = 32  # requests scored together
    # Serving skips the exact scoring of candidates that provably cannot reach the answer's top k
    # (``HybridRanker.top_candidates``); the answers are the same either way. Off: score them all.
    prune: bool = True
    candidate_chunk: int = 256  # candidates per decoder pass when scoring identifiers exactly (bounds memory)

    def validate(self) -> None:
        require(self.beam_size >= 1, "hybrid.beam_size", "must be >= 1")
        require(self.depth >= 1, "hybrid.depth", "must be >= 1")
        # values at or above depth / beam_size are allowed and add nothing (a smaller config stays valid)
        require(all(d >= 1 for d in self.fit_depths), "hybrid.fit_depths", "must be >= 1")
        require(all(b >= 1 for b in self.fit_beam_sizes), "hybrid.fit_beam_sizes", "must be >= 1")
        for key in ("rec_scorers", "search_scorers", "feature_only", "prunable", "beside_beam"):
            for name in getattr(self, key):
                require(name in KNOWN_SCORERS, f"hybrid.{key}", f"unknown scorer '{name}' (known: "
                        f"{', '.join(KNOWN_SCORERS)})")
        require(self.max_latency_ratio >= 0, "hybrid.max_latency_ratio", "must be >= 0 (0 = no bound)")
        require(self.latency_requests >= 1, "hybrid.latency_requests", "must be >= 1")
        require(self.l2 >= 0, "hybrid.l2", "must be >= 0")
        require(0 <= self.pseudo_new < 1, "hybrid.pseudo_new", "must be in [0, 1) (0 = off)")
        require(self.folds >= 2, "hybrid.folds", "must be >= 2")
        require(self.fit_examples >= 0, "hybrid.fit_examples", "must be >= 0")
        require(self.batch_size >= 1, "hybrid.batch_size", "must be >= 1")
        require(self.candidate_chunk >= 1, "hybrid.candidate_chunk", "must be >= 1")

    def scorers(self, behavior: str) -> tuple[str, ...]:
        return self.rec_scorers if behavior == "rec" else self.search_scorers

    def proposes(self, behavior: str, scorer: str) -> bool:
        """Whether ``scorer``'s top items join a ``behavior`` request's candidates (else a feature only)."""
        return scorer not in self.feature_only and not (behavior == "search" and scorer in HISTORY_ONLY)
