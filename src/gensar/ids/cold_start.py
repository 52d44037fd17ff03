"""A collaborative embedding for an item nobody has interacted with yet, from its semantic one.

The identifier RQ-VAE encodes an item from both embeddings, but an item added after training has
only text. Two predictors, fitted on the trained items' (semantic, collaborative) pairs, chosen by
``ColdStartConfig.method`` through ``make_predictor``:

ridge  a linear map semantic -> collaborative (ridge regression on centred data, closed form);
knn    the mean collaborative embedding of the ``k`` trained items nearest by semantic cosine.

``held_out_agreement`` measures them: hide a fold of trained items, predict their collaborative
embeddings from the rest, encode each hidden item with the trained RQ-VAE from (its semantic
embedding, the prediction), and count how often the codes equal the ones its real collaborative
embedding gets. ``benchmarks/README.md`` ("A living catalog") has the figures that chose the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from gensar.config import require

__all__ = ["ColdStartConfig", "CollaborativePredictor", "KnnMean", "MeanPredictor", "RidgeMap",
           "held_out_agreement", "make_predictor"]

ColdStartMethod = Literal["ridge", "knn"]


@dataclass(frozen=True)
class ColdStartConfig:
    # ridge: held out on the demo world it matched knn on codes and beat it on the embedding
    # (benchmarks/README.md, "A living catalog")
    method: ColdStartMethod = "ridge"
    ridge_l2: float = 1.0  # ridge penalty (inputs are unit-normalized semantic embeddings); 0.1-1 measured best
    knn_k: int = 5  # neighbours averaged (k=1 matched codes best there, k=5 the embedding)

    def validate(self) -> None:
        require(self.method in ("ridge", "knn"), "cold_start.method", "must be 'ridge' or 'knn'")
        require(self.ridge_l2 > 0, "cold_start.ridge_l2", "must be > 0")
        require(self.knn_k >= 1, "cold_start.knn_k", "must be >= 1")


class CollaborativePredictor(Protocol):
    def fit(self, semantic: np.ndarray, collaborative: np.ndarray) -> CollaborativePredictor:
        """Fit on trained items: semantic [N, Ds], collaborative [N, Dc]; returns self."""
        ...

    def predict(self, semantic: np.ndarray) -> np.ndarray:
        """[M, Dc] float32 for semantic [M, Ds]."""
        ...


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class RidgeMap:
    """``y = (x - mean_x) W + mean_y`` minimizing ``||Y - XW||^2 + l2 ||W||^2`` over centred data."""

    def __init__(self, l2: float) -> None:
        self.l2 = l2
        self.weights: np.ndarray | None = None  # [Ds, Dc]
        self.x_mean: np.ndarray | None = None
        self.y_mean: np.ndarray | None = None

    def fit(self, semantic: np.ndarray, collaborative: np.ndarray) -> RidgeMap:
        x, y = _unit(semantic), np.asarray(collaborative, dtype=np.float64)
        self.x_mean, self.y_mean = x.mean(axis=0), y.mean(axis=0)
        xc, yc = x - self.x_mean, y - self.y_mean
        # dual form when there are fewer items than dimensions: an [N, N] solve instead of [Ds, Ds]
        if len(xc) < xc.shape[1]:
            self.weights = xc.T @ np.linalg.solve(xc @ xc.T + self.l2 * np.eye(len(xc)), yc)
        else:
            self.weights = np.linalg.solve(xc.T @ xc + self.l2 * np.eye(xc.shape[1]), xc.T @ yc)
        return self

    def predict(self, semantic: np.ndarray) -> np.ndarray:
        assert self.weights is not None and self.x_mean is not None and self.y_mean is not None, "fit first"
        return ((_unit(semantic) - self.x_mean) @ self.weights + self.y_mean).astype(np.float32)


class KnnMean:
    """The mean collaborative embedding of the ``k`` trained items nearest by semantic cosine
    (ties: the lower item row)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.keys: np.ndarray | None = None  # [N, Ds] unit rows
        self.values: np.ndarray | None = None  # [N, Dc]

    def fit(self, semantic: np.ndarray, collaborative: np.ndarray) -> KnnMean:
        self.keys, self.values = _unit(semantic), np.asarray(collaborative, dtype=np.float64)
        return self

    def neighbours(self, semantic: np.ndarray) -> np.ndarray:
        """[M, k'] rows of the nearest trained items, nearest first (k' = min(k, N))."""
        assert self.keys is not None, "fit first"
        sim = _unit(semantic) @ self.keys.T  # [M, N]
        k = min(self.k, sim.shape[1])
        rows = np.arange(sim.shape[1])
        return np.stack([np.lexsort((rows, -s))[:k] for s in sim]) if len(sim) else np.zeros((0, k), np.int64)

    def predict(self, semantic: np.ndarray) -> np.ndarray:
        assert self.values is not None, "fit first"
        return self.values[self.neighbours(semantic)].mean(axis=1).astype(np.float32)  # [M, Dc]


class MeanPredictor:
    """Every item gets the trained items' mean collaborative embedding: the no-information baseline
    the two methods are measured against (not a config choice)."""

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None

    def fit(self, semantic: np.ndarray, collaborative: np.ndarray) -> MeanPredictor:
        self.mean = np.asarray(collaborative, dtype=np.float64).mean(axis=0)
        return self

    def predict(self, semantic: np.ndarray) -> np.ndarray:
        assert self.mean is not None, "fit first"
        return np.tile(self.mean, (len(semantic), 1)).astype(np.float32)


def make_predictor(cfg: ColdStartConfig) -> CollaborativePredictor:
    """The (unfitted) predictor ``cfg`` selects: the one place the choice is made."""
    cfg.validate()
    if cfg.method == "ridge":
        return RidgeMap(cfg.ridge_l2)
    return KnnMean(cfg.knn_k)


def held_out_agreement(encode, semantic: np.ndarray, collaborative: np.ndarray, predictor: CollaborativePredictor,
                       folds: int = 5, seed: int = 0) -> dict[str, float | int]:
    """Cross-validated code agreement of ``predictor`` on trained items (module doc).

    ``encode(semantic, collaborative) -> (semantic codes [N, L], collaborative codes [N, L])``: the
    trained RQ-VAE's raw code tuples of each identifier kind. Returns the fraction of held-out
    items whose whole collaborative / semantic code tuple matches, the mean fraction of matching
    levels, the mean number of leading levels that match, and the mean cosine between predicted and
    real collaborative embeddings.
    """
    n = len(semantic)
    fold_of = np.random.default_rng(seed).permutation(n) % folds  # [N]
    predicted = np.zeros_like(collaborative, dtype=np.float32)
    for f in range(folds):
        train, test = fold_of != f, fold_of == f
        if test.any():
            predicted[test] = predictor.fit(semantic[train], collaborative[train]).predict(semantic[test])
    real_sem, real_col = encode(semantic, collaborative)
    pred_sem, pred_col = encode(semantic, predicted)
    cos = (_unit(predicted) * _unit(collaborative)).sum(axis=1)
    return {
        # leading levels equal: how deep the trie path of the prediction follows the real one
        "collaborative_prefix_levels": float(_common_prefix(pred_col, real_col).mean()),
        "semantic_prefix_levels": float(_common_prefix(pred_sem, real_sem).mean()),
        "collaborative_id_match": float((pred_col == real_col).all(axis=1).mean()),
        "collaborative_level_match": float((pred_col == real_col).mean()),
        "semantic_id_match": float((pred_sem == real_sem).all(axis=1).mean()),
        "semantic_level_match": float((pred_sem == real_sem).mean()),
        "embedding_cosine": float(cos.mean()),
        "n": n,
    }


def _common_prefix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N] number of leading columns where rows of ``a`` and ``b`` [N, L] agree."""
    return np.cumprod(a == b, axis=1).sum(axis=1)
