"""Identifiers for items added after training: the nearest code tuple no existing identifier blocks.

Existing identifiers never change, so a new item's identifier must fit around them: it may not
equal, extend or be extended by any of them (the set stays unique and prefix-free), and each of
its tokens must be one the model was trained with (its vocabulary holds exactly the tokens of the
trained identifiers). Within that, the rule is the ID stage's (``gensar.ids.assign``):

1. the item's own codes (nearest code at every level) when no identifier starts with them;
2. else, *reassignment*: the nearest last-level code that no identifier of the item's prefix
   group (all codes but the last) holds;
3. else, *disambiguation*: join a group whose members already carry a disambiguation token
   (``<sem_x_N>``) with the smallest free N. A group whose single member has no such token cannot
   take one: that member's identifier would become a prefix of the new one;
4. else relax the level before (next nearest code there, its distance measured on the item's own
   residual path), and so on upwards. A code no identifier uses yet needs no further search: the
   rest of the item's own codes follow it.

Each level only descends into codes that existing identifiers use, so finding one costs at most
(existing identifiers x codebook size) steps, however full the catalog.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import numpy as np

from gensar.errors import GensarError
from gensar.ids.assign import DISAMBIGUATION_LETTER

__all__ = ["IdIndex", "code_levels", "nearest_free_id"]

IdTokens = tuple[str, ...]


def code_levels(tokens: Sequence[str]) -> int:
    """Code tokens of an identifier: all but a disambiguation token (``<sem_x_2>``)."""
    return sum(t.strip("<>").split("_")[-2:-1] != [DISAMBIGUATION_LETTER] for t in tokens)


class IdIndex:
    """The identifiers of one kind taken so far, by their first ``levels`` tokens (their *body*).

    Every identifier is ``levels`` code tokens, or those plus one disambiguation token.
    """

    def __init__(self, levels: int, ids: Iterable[Sequence[str]] = ()) -> None:
        self.levels = levels
        self._suffixes: dict[IdTokens, set[str | None]] = {}  # body -> disambiguation tokens (None: none)
        self._prefixes: set[IdTokens] = set()  # every proper prefix of a body
        for tokens in ids:
            self.add(tokens)

    def add(self, tokens: Sequence[str]) -> None:
        tokens = tuple(tokens)
        problem = self.conflict(tokens)
        if problem is not None:
            raise GensarError(problem)
        body = tokens[: self.levels]
        self._suffixes.setdefault(body, set()).add(tokens[self.levels] if len(tokens) > self.levels else None)
        self._prefixes.update(body[:i] for i in range(1, self.levels))

    def conflict(self, tokens: Sequence[str]) -> str | None:
        """Why ``tokens`` cannot join the set (equal to, prefix of or extending a taken one), or None."""
        tokens = tuple(tokens)
        if len(tokens) not in (self.levels, self.levels + 1):
            return f"identifier {list(tokens)} has {len(tokens)} tokens (expected {self.levels} or {self.levels + 1})"
        taken = self._suffixes.get(tokens[: self.levels])
        if taken is None:
            return None
        if len(tokens) == self.levels:
            return f"identifier {list(tokens)} equals or is a prefix of a taken one"
        if None in taken:
            return f"a taken identifier is a prefix of {list(tokens)}"
        if tokens[self.levels] in taken:
            return f"identifier {list(tokens)} is taken"
        return None

    def is_used_prefix(self, prefix: IdTokens) -> bool:
        """Whether some taken identifier starts with ``prefix`` (shorter than a body)."""
        return prefix in self._prefixes

    def body_taken(self, body: IdTokens) -> bool:
        return body in self._suffixes

    def free_suffix(self, body: IdTokens, suffix_tokens: Sequence[str]) -> str | None:
        """The first of ``suffix_tokens`` that ``body`` can take, if its members all carry one."""
        taken = self._suffixes.get(body)
        if not taken or None in taken:
            return None
        return next((t for t in suffix_tokens if t not in taken), None)


def nearest_free_id(codes: Sequence[int], distances: Sequence[np.ndarray], names: Sequence[str], suffix_name: str,
                    taken: IdIndex, vocabulary: Collection[str]) -> IdTokens:
    """The identifier of one new item (module doc): ``codes`` [L] its nearest code per level,
    ``distances`` L arrays [K] of its distance to every code of each level, ``names`` the L token
    stems (``s_a``, ..., ``sem_b``), ``suffix_name`` the disambiguation stem (``sem_x``)."""
    levels = len(names)
    if len(codes) != levels or len(distances) != levels or taken.levels != levels:
        raise ValueError(f"{len(codes)} codes, {len(distances)} distance rows, {len(names)} names, "
                         f"an index of {taken.levels} levels")

    def order(level: int) -> list[str]:
        # nearest first (the item's own code leads: it is the nearest), only trained tokens
        ranked = np.argsort(distances[level], kind="stable").tolist()
        own = int(codes[level])
        ranked = [own] + [c for c in ranked if c != own]
        return [t for c in ranked if (t := f"<{names[level]}_{c}>") in vocabulary]

    orders = [order(level) for level in range(levels)]
    if not all(orders):
        missing = names[next(i for i, o in enumerate(orders) if not o)]
        raise GensarError(f"no token of level {missing} is in the model's vocabulary")
    suffixes = sorted((t for t in vocabulary if t.startswith(f"<{suffix_name}_")), key=_suffix_number)

    def search(prefix: IdTokens) -> IdTokens | None:
        level = len(prefix)
        if level == levels - 1:
            bodies = [prefix + (t,) for t in orders[level]]
            free = next((b for b in bodies if not taken.body_taken(b)), None)  # 1-2: own or reassigned
            if free is not None:
                return free
            for body in bodies:  # 3: disambiguation
                extra = taken.free_suffix(body, suffixes)
                if extra is not None:
                    return body + (extra,)
            return None
        for token in orders[level]:
            nxt = prefix + (token,)
            if not taken.is_used_prefix(nxt):  # nothing below: the item's own codes complete it
                return nxt + tuple(o[0] for o in orders[level + 1 :])
            found = search(nxt)
            if found is not None:
                return found
        return None

    found = search(())
    if found is None:
        raise GensarError("no free identifier is left among the model's identifier tokens")
    return found


def _suffix_number(token: str) -> tuple[int, str]:
    num = token.strip("<>").rpartition("_")[2]
    return (int(num), token) if num.isdigit() else (1 << 62, token)
