"""A linear fusion of candidate features, fitted as a conditional logit on the valid split.

Given a request's candidates with features ``x_c`` (standardized), the fused score is ``w . x_c``
and the model says ``p(c | request) = softmax_c(w . x_c)`` over that request's candidates. ``w``
maximizes the mean log-probability of each valid example's target (examples whose target no
retriever proposed carry no signal and are left out), minus ``l2 * |w|^2``. The objective is
convex, so L-BFGS finds the one optimum: no seed, no learning rate, no epochs to choose.

With the generative log-probability as the only feature this reranks exactly as the model does
(for any positive weight), so the fusion can only add what the other features know.

New items (cold or added after training: the ``new`` feature is 1) may get weights of their own,
``new_weights``: the model has no evidence on them and their generative and SASRec features are
imputed, so one weight vector for both kinds trades the trained items' order (where the model knows
most) for a place for the new ones. With two, the trained candidates keep their own order and the
new ones are placed among them by text features and a bias. Same objective, twice the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gensar.errors import GensarError

NEG_INF = float("-inf")
NEW_FEATURE = "new"  # ``gensar.hybrid.features.NEW``: 1 on a candidate the model never trained on


@dataclass(frozen=True)
class LinearFusion:
    features: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: tuple[float, ...]
    fitted_on: int = 0  # valid examples whose target was among the candidates
    # How deep each proposing scorer proposed in the candidates it was fitted and chosen on; what
    # serving uses (0: the config's ``hybrid.depth``, as fusions written before the choice existed).
    depth: int = 0
    beam: int = 0  # the generative beam width likewise (0: the config's ``hybrid.beam_size``)
    new_weights: tuple[float, ...] = ()  # weights of new candidates; () = ``weights`` for every candidate

    def score(self, x: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Fused scores [B, C] of features ``x`` [B, C, F]; -inf where ``valid`` [B, C] is False."""
        if x.shape[-1] != len(self.features):
            raise GensarError(f"fusion expects {len(self.features)} features ({', '.join(self.features)}), "
                              f"got {x.shape[-1]}")
        z = (x - np.asarray(self.mean)) / np.asarray(self.std)
        scores = z @ np.asarray(self.weights)
        if self.new_weights:
            scores = np.where(new_mask(x, self.features), z @ np.asarray(self.new_weights), scores)
        return np.where(valid, scores, NEG_INF)

    def grows_with(self, feature: str) -> bool:
        """True when a trained candidate's fused score never falls as ``feature`` rises (its weight
        is >= 0). The new candidates' weights are not asked: a request with a new candidate scores
        every candidate exactly (``HybridRanker.top_candidates``)."""
        if feature not in self.features:
            return False
        return self.weights[self.features.index(feature)] >= 0

    def to_json(self) -> dict:
        return {"features": list(self.features), "mean": list(self.mean), "std": list(self.std),
                "weights": list(self.weights), "fitted_on": self.fitted_on, "depth": self.depth,
                "beam": self.beam, "new_weights": list(self.new_weights)}

    @classmethod
    def from_json(cls, obj: dict, where: str = "fusion") -> LinearFusion:
        try:
            fusion = cls(features=tuple(obj["features"]), mean=tuple(map(float, obj["mean"])),
                         std=tuple(map(float, obj["std"])), weights=tuple(map(float, obj["weights"])),
                         fitted_on=int(obj.get("fitted_on", 0)), depth=int(obj.get("depth", 0)),
                         beam=int(obj.get("beam", 0)),
                         new_weights=tuple(map(float, obj.get("new_weights", []))))
        except (KeyError, TypeError, ValueError) as err:
            raise GensarError(f"{where}: not a fusion model ({err})") from None
        n = len(fusion.features)
        if not (len(fusion.mean) == len(fusion.std) == len(fusion.weights) == n):
            raise GensarError(f"{where}: features, mean, std and weights differ in length")
        if fusion.new_weights and (len(fusion.new_weights) != n or NEW_FEATURE not in fusion.features):
            raise GensarError(f"{where}: new_weights needs one weight per feature and a '{NEW_FEATURE}' feature")
        return fusion


def new_mask(x: np.ndarray, features: Sequence[str]) -> np.ndarray:
    """[..., C] bool: the candidates of features ``x`` [..., C, F] that are new (False without a
    ``new`` feature)."""
    if NEW_FEATURE not in features:
        return np.zeros(x.shape[:-1], dtype=bool)
    return x[..., list(features).index(NEW_FEATURE)] > 0.5


def target_columns(candidates: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[B] column of ``targets[b]`` in ``candidates[b]``, -1 when absent."""
    match = candidates == np.asarray(targets)[:, None]
    return np.where(match.any(axis=1), match.argmax(axis=1), -1)


def fit_fusion(features: Sequence[str], x: np.ndarray, valid: np.ndarray, target_col: np.ndarray,
               l2: float = 1e-2, split_new: bool = True) -> LinearFusion:
    """Fit ``LinearFusion`` on features ``x`` [n, C, F] with targets at ``target_col`` [n] (-1 = absent).

    ``split_new``: new candidates get weights of their own (``new_weights``) when any candidate is new."""
    keep = target_col >= 0
    if not keep.any():
        raise GensarError("cannot fit the fusion: no valid example has its target among the candidates")
    x, valid, target_col = x[keep], valid[keep], target_col[keep]
    rows = x[valid]  # [M, F] every real candidate
    mean = rows.mean(axis=0)
    std = rows.std(axis=0)
    std = np.where(std > 1e-9, std, 1.0)  # a constant feature gets weight ~0 from the penalty anyway
    z = (x - mean) / std  # [n, C, F]
    new = new_mask(x, features) & valid
    split = split_new and bool(new.any())
    if split:  # [trained features | new features]: each candidate's other half is 0
        z = np.concatenate([np.where(new[..., None], 0.0, z), np.where(new[..., None], z, 0.0)], axis=-1)
    z = torch.as_tensor(z, dtype=torch.float64)
    mask = torch.as_tensor(valid)
    tgt = torch.as_tensor(target_col, dtype=torch.long)
    w = torch.zeros(z.shape[-1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        s = (z @ w).masked_fill(~mask, NEG_INF)  # [n, C]
        nll = torch.logsumexp(s, dim=1) - s.gather(1, tgt[:, None]).squeeze(1)  # [n]
        loss = nll.mean() + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    weights = w.detach().tolist()
    f = x.shape[-1]
    return LinearFusion(features=tuple(features), mean=tuple(mean.tolist()), std=tuple(std.tolist()),
                        weights=tuple(weights[:f]), fitted_on=int(keep.sum()),
                        new_weights=tuple(weights[f:]) if split else ())
