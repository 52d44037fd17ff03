"""From RQ-VAE codes to unique, prefix-free item identifiers (token strings).

semantic ID      = shared codes + semantic-specific codes       <s_a_17><s_b_3><sem_a_201><sem_b_9>
collaborative ID = shared codes + collaborative-specific codes  <s_a_17><s_b_3><col_a_5><col_b_30>

Letters name the level within each codebook group. In the ``semantic`` variant every level is a
``sem`` level and the collaborative ID equals the semantic ID (``collaborative``: vice versa).

Two items may receive the same codes. Collisions are resolved per ID type in two steps:

1. *Reassignment*: within a group of items sharing all codes but the last, each last-level code
   is kept by the item nearest to it; the other items move, nearest pair first, to the nearest
   code no item of the group holds (using the last level's distances). This keeps IDs short.
2. *Disambiguation*: items that still share a full ID (more items than codes in the group, or
   reassignment turned off) get one more token ``<sem_x_N>`` / ``<col_x_N>``, N = 0, 1, ...;
   every member of such a group gets it, so no ID is a proper prefix of another.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from gensar.ids.item_ids import COLLABORATIVE, SEMANTIC, IdMaps
from gensar.ids.rqvae import RQVAECodes, Variant

LEVEL_LETTERS = "abcdefghijklmnopqrstuvw"  # "x" is the disambiguation level
DISAMBIGUATION_LETTER = "x"
# Token stems of the codebook groups (not the ID kinds ``SEMANTIC``/``COLLABORATIVE``, which name whole IDs).
SHARED_GROUP, SEMANTIC_GROUP, COLLABORATIVE_GROUP = "s", "sem", "col"


@dataclass(frozen=True)
class AssignConfig:
    reassign: bool = True  # step 1 above; off = only disambiguation tokens


# ---- collision kernels ---------------------------------------------------------------------------
def _group_ids(codes: np.ndarray) -> np.ndarray:
    """Group index of each row of ``codes`` [N, L] (equal rows -> equal index): [N]."""
    if codes.shape[1] == 0:
        return np.zeros(len(codes), dtype=np.int64)
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    return inverse.reshape(-1)


def collision_rate(codes: np.ndarray, suffix: np.ndarray | None = None) -> float:
    """Fraction of items whose ID (codes [N, L], plus ``suffix`` [N] if given) another item shares."""
    if len(codes) == 0:
        return 0.0
    full = codes if suffix is None else np.concatenate([codes, suffix[:, None]], 1)
    counts = np.bincount(_group_ids(full))
    return float((counts[_group_ids(full)] > 1).mean())


def reassign_last_level(codes: np.ndarray, last_distances: np.ndarray) -> np.ndarray:
    """Move colliding items to free last-level codes of their prefix group (step 1): [N, L] -> [N, L]."""
    codes = codes.copy()
    k = last_distances.shape[1]
    prefix_group = _group_ids(codes[:, :-1])
    order = np.argsort(prefix_group, kind="stable")
    bounds = np.flatnonzero(np.diff(prefix_group[order])) + 1
    for members in np.split(order, bounds):
        last = codes[members, -1]
        if len(members) < 2 or len(np.unique(last)) == len(members):
            continue
        displaced = []
        for code in np.unique(last):
            holders = members[last == code]
            keeper = holders[np.argmin(last_distances[holders, code])]  # ties: lowest item index
            displaced.extend(int(i) for i in holders if i != keeper)
        free = np.setdiff1d(np.arange(k), last)
        # Greedy matching: repeatedly settle the (item, free code) pair that moves the least.
        while displaced and len(free):
            sub = last_distances[np.ix_(displaced, free)]  # [displaced, free]
            i, j = np.unravel_index(np.argmin(sub), sub.shape)
            codes[displaced[i], -1] = free[j]
            displaced.pop(int(i))
            free = np.delete(free, j)
    return codes


def disambiguation_suffix(codes: np.ndarray) -> np.ndarray:
    """Index of each item within its group of identical codes, -1 for unique items (step 2): [N]."""
    groups = _group_ids(codes)
    suffix = np.full(len(codes), -1, dtype=np.int64)
    counts = np.bincount(groups)
    seen = np.zeros(len(counts), dtype=np.int64)
    for i, g in enumerate(groups):  # item order, so the first item of a group gets 0
        if counts[g] > 1:
            suffix[i] = seen[g]
            seen[g] += 1
    return suffix


@dataclass
class Resolution:
    """Collision resolution of one ID type."""

    raw_codes: np.ndarray  # [N, L] codes from the RQ-VAE
    codes: np.ndarray  # [N, L] after last-level reassignment
    suffix: np.ndarray  # [N] disambiguation index, -1 = no extra token
    collision_rate_raw: float
    collision_rate_reassigned: float  # after step 1, before disambiguation tokens
    collision_rate: float  # final (0.0 by construction)
    reassigned_items: int
    disambiguated_items: int


def resolve_collisions(codes: np.ndarray, last_distances: np.ndarray, reassign: bool = True) -> Resolution:
    """Make every item's (codes, suffix) unique: ``codes`` [N, L], ``last_distances`` [N, K]."""
    if codes.ndim != 2 or codes.shape[1] == 0:
        raise ValueError(f"codes must be [N, L] with L >= 1, got shape {codes.shape}")
    new = reassign_last_level(codes, last_distances) if reassign else codes.copy()
    suffix = disambiguation_suffix(new)
    return Resolution(
        raw_codes=codes,
        codes=new,
        suffix=suffix,
        collision_rate_raw=collision_rate(codes),
        collision_rate_reassigned=collision_rate(new),
        collision_rate=collision_rate(new, suffix),
        reassigned_items=int((new != codes).any(1).sum()),
        disambiguated_items=int((suffix >= 0).sum()),
    )


# ---- token strings ------------------------------------------------------------------------------
def level_names(group: str, levels: int) -> list[str]:
    """Token stems of ``levels`` levels of one codebook group: ("sem", 2) -> ["sem_a", "sem_b"]."""
    if levels > len(LEVEL_LETTERS):
        raise ValueError(f"at most {len(LEVEL_LETTERS)} levels per codebook group, got {levels}")
    return [f"{group}_{LEVEL_LETTERS[i]}" for i in range(levels)]


def token_strings(codes: np.ndarray, names: list[str], suffix: np.ndarray, suffix_name: str) -> list[list[str]]:
    """``codes`` [N, L] with stems ``names`` (L) and ``suffix`` [N] -> N token lists."""
    out = []
    for row, extra in zip(codes.tolist(), suffix.tolist(), strict=True):
        tokens = [f"<{name}_{c}>" for name, c in zip(names, row, strict=True)]
        if extra >= 0:
            tokens.append(f"<{suffix_name}_{extra}>")
        out.append(tokens)
    return out


def check_unique_prefix_free(ids: list[list[str]]) -> tuple[int, int] | None:
    """First pair of positions (i, j) where ID i equals or is a proper prefix of ID j; None if none.

    In lexicographic order, an ID that is a prefix of another sorts before it and before
    everything in between, so comparing neighbours is enough.
    """
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    for a, b in itertools.pairwise(order):
        if ids[b][: len(ids[a])] == ids[a]:
            return a, b
    return None


# ---- assignment ---------------------------------------------------------------------------------
@dataclass
class Assignment:
    ids: IdMaps
    semantic: Resolution
    collaborative: Resolution
    code_usage_raw: dict[str, list[float]]  # codebook group -> fraction of codes used, per level
    code_usage: dict[str, list[float]]  # the same after collision resolution

    def report(self) -> dict:
        """JSON-ready summary (collision rates, code usage, ID lengths)."""
        out: dict = {"items": len(self.ids.semantic)}
        for kind, res in ((SEMANTIC, self.semantic), (COLLABORATIVE, self.collaborative)):
            out[f"{kind}_collision_rate_raw"] = res.collision_rate_raw
            out[f"{kind}_collision_rate_reassigned"] = res.collision_rate_reassigned
            out[f"{kind}_collision_rate"] = res.collision_rate
            out[f"{kind}_reassigned_items"] = res.reassigned_items
            out[f"{kind}_disambiguated_items"] = res.disambiguated_items
        out["code_usage_raw"] = self.code_usage_raw
        out["code_usage"] = self.code_usage
        out["id_length"] = {
            kind: {"max": max(map(len, ids.values())), "mean": float(np.mean([len(t) for t in ids.values()]))}
            for kind, ids in ((SEMANTIC, self.ids.semantic), (COLLABORATIVE, self.ids.collaborative))
        }
        return out


def code_usage(codes: np.ndarray, codebook_size: int) -> list[float]:
    """Fraction of the ``codebook_size`` codes used at each level: [N, L] -> L floats."""
    return [len(np.unique(codes[:, i])) / codebook_size for i in range(codes.shape[1])]


def assign_ids(item_ids: list[str], codes: RQVAECodes, variant: Variant, codebook_size: int,
               cfg: AssignConfig = AssignConfig()) -> Assignment:
    """Unique, prefix-free semantic and collaborative IDs for ``item_ids`` (rows of ``codes``)."""
    n = len(item_ids)
    if len(codes.shared) != n:
        raise ValueError(f"{n} item ids but {len(codes.shared)} rows of codes")
    if variant == "joint":
        lm, ln = codes.shared.shape[1], codes.semantic.shape[1]
        sem_res = resolve_collisions(np.concatenate([codes.shared, codes.semantic], 1),
                                     codes.semantic_last_distances, cfg.reassign)
        col_res = resolve_collisions(np.concatenate([codes.shared, codes.collaborative], 1),
                                     codes.collaborative_last_distances, cfg.reassign)
        sem_names = level_names(SHARED_GROUP, lm) + level_names(SEMANTIC_GROUP, ln)
        col_names = level_names(SHARED_GROUP, lm) + level_names(COLLABORATIVE_GROUP, ln)
        semantic = token_strings(sem_res.codes, sem_names, sem_res.suffix,
                                 f"{SEMANTIC_GROUP}_{DISAMBIGUATION_LETTER}")
        collaborative = token_strings(col_res.codes, col_names, col_res.suffix,
                                      f"{COLLABORATIVE_GROUP}_{DISAMBIGUATION_LETTER}")
        usage_raw = {SHARED_GROUP: code_usage(codes.shared, codebook_size),
                     SEMANTIC_GROUP: code_usage(codes.semantic, codebook_size),
                     COLLABORATIVE_GROUP: code_usage(codes.collaborative, codebook_size)}
        usage = {SHARED_GROUP: code_usage(sem_res.codes[:, :lm], codebook_size),
                 SEMANTIC_GROUP: code_usage(sem_res.codes[:, lm:], codebook_size),
                 COLLABORATIVE_GROUP: code_usage(col_res.codes[:, lm:], codebook_size)}
    else:
        group = SEMANTIC_GROUP if variant == SEMANTIC else COLLABORATIVE_GROUP
        raw = codes.semantic if variant == SEMANTIC else codes.collaborative
        dist = codes.semantic_last_distances if variant == SEMANTIC else codes.collaborative_last_distances
        sem_res = col_res = resolve_collisions(raw, dist, cfg.reassign)
        semantic = token_strings(sem_res.codes, level_names(group, raw.shape[1]), sem_res.suffix,
                                 f"{group}_{DISAMBIGUATION_LETTER}")
        collaborative = [list(t) for t in semantic]  # the single ID serves both roles
        usage_raw = {group: code_usage(raw, codebook_size)}
        usage = {group: code_usage(sem_res.codes, codebook_size)}
    ids = IdMaps.from_lists(list(item_ids), semantic, collaborative)
    for kind, lists in ((SEMANTIC, semantic), (COLLABORATIVE, collaborative)):
        bad = check_unique_prefix_free(lists)
        if bad is not None:  # an internal invariant: resolution above guarantees it
            raise AssertionError(f"{kind} IDs of items {item_ids[bad[0]]!r} and {item_ids[bad[1]]!r} clash")
    return Assignment(ids, sem_res, col_res, usage_raw, usage)
