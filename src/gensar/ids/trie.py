"""Prefix trie of item identifiers, stored as flat tensors for batched constrained decoding.

An identifier is a short sequence of token ids (e.g. 4 codebook tokens). The identifiers of one
type are unique and prefix-free, so each item ends at its own leaf. The trie is a *forest*: it has
``num_roots`` roots, one per candidate list when decoding over each example's own candidates, or a
single root for the whole catalog.

Layout (N nodes, all arrays int32 on CPU)::

    node ids:    [roots 0..R-1 | depth-1 nodes | depth-2 nodes | ...]
    token[n]        token on the edge into n (-1 for roots)
    parent[n]       parent node (-1 for roots)
    first_child[n]  id of n's first child (children of a node are consecutive ids, sorted by token)
    num_children[n] number of children (0 for leaves)
    item[n]         item index ending at n (leaves), -1 elsewhere

Nodes are numbered level by level in lexicographic order, so the children of every node form a
contiguous id range: ``first_child``/``num_children`` is a CSR adjacency without an edge array.
Queries take a batch of node ids (``-1`` = dead beam, which has no children) and never loop in
Python over the batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gensar.errors import GensarError, InputError

TokenSequences = Sequence[Sequence[int]] | np.ndarray | torch.Tensor


@dataclass(frozen=True)
class IdTrie:
    token: torch.Tensor  # [N] int32
    parent: torch.Tensor  # [N] int32
    first_child: torch.Tensor  # [N] int32
    num_children: torch.Tensor  # [N] int32
    item: torch.Tensor  # [N] int32
    num_roots: int
    max_depth: int  # length of the longest identifier
    max_children: int  # largest fan-out of any node

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def build(
        cls, sequences: TokenSequences, item_indices: Sequence[int] | np.ndarray | None = None
    ) -> IdTrie:
        """One-root trie over ``sequences`` (the whole catalog, or a subset named by ``item_indices``).

        ``sequences[j]`` is the identifier of item ``item_indices[j]`` (default ``j``). A 2-D array
        may pad shorter identifiers on the right with -1.
        """
        seqs = _as_padded(sequences)
        if item_indices is None:
            items = np.arange(len(seqs), dtype=np.int64)
        else:
            items = np.asarray(item_indices, dtype=np.int64).reshape(-1)
            if (items < 0).any():
                raise InputError("item indices must be >= 0", field="item_indices")
            if len(items) != len(seqs):
                raise InputError(
                    f"{len(items)} item indices for {len(seqs)} identifiers", field="item_indices"
                )
        return cls._build(seqs, items, np.zeros(len(seqs), dtype=np.int64), num_roots=1)

    @classmethod
    def build_forest(cls, codes: TokenSequences, candidates: np.ndarray | torch.Tensor) -> IdTrie:
        """One root per row of ``candidates`` [B, C] (item indices into ``codes``; -1 = padding).

        ``codes`` [n_items, L] holds every item's identifier (rows padded with -1). Root ``b``
        spans exactly the items of ``candidates[b]``; its leaves map to those catalog indices.
        """
        table = _as_padded(codes)
        if isinstance(candidates, torch.Tensor):
            candidates = candidates.cpu().numpy()
        cands = np.asarray(candidates)
        if cands.ndim != 2:
            raise InputError(
                f"candidates must be a [batch, n] array, got shape {cands.shape}", field="candidates"
            )
        cands = cands.astype(np.int64)
        if cands.size and (cands.max() >= len(table) or cands.min() < -1):
            raise InputError(f"candidate item index out of range [0, {len(table)})", field="candidates")
        groups = np.repeat(np.arange(cands.shape[0], dtype=np.int64), cands.shape[1])
        flat = cands.reshape(-1)
        keep = flat >= 0
        return cls._build(table[flat[keep]], flat[keep], groups[keep], num_roots=cands.shape[0])

    @classmethod
    def _build(cls, seqs: np.ndarray, items: np.ndarray, groups: np.ndarray, num_roots: int) -> IdTrie:
        m, width = seqs.shape
        lengths = (seqs >= 0).sum(axis=1)  # [M]
        if m and (lengths == 0).any():
            j = int(np.flatnonzero(lengths == 0)[0])
            raise InputError(f"identifier of item {items[j]} is empty")
        # Only -1 is padding, and only at the end of a row.
        bad = (seqs < -1).any(axis=1) | ((seqs[:, :-1] < 0) & (seqs[:, 1:] >= 0)).any(axis=1)  # [M]
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise InputError(f"identifier of item {items[j]} has a negative token or padding before its end")

        # Sort rows by (group, tokens...): np.lexsort uses the last key as the primary one.
        order = np.lexsort([seqs[:, c] for c in range(width - 1, -1, -1)] + [groups])
        seqs, items, groups, lengths = seqs[order], items[order], groups[order], lengths[order]

        # first_diff[i]: first column where row i differs from row i-1 (-1 if the group changes,
        # `width` if the rows are identical); it says at which depth row i leaves the previous path.
        first_diff = np.full(m, -1, dtype=np.int64)
        if m > 1:
            neq = seqs[1:] != seqs[:-1]  # [M-1, L]
            fd = np.where(neq.any(axis=1), neq.argmax(axis=1), width)
            first_diff[1:] = np.where(groups[1:] != groups[:-1], -1, fd)
            _check_prefix_free(seqs, items, groups, lengths, first_diff, num_roots)

        tokens = [np.full(num_roots, -1, dtype=np.int64)]
        parents = [np.full(num_roots, -1, dtype=np.int64)]
        row_node = groups.copy()  # node id of each row's path at the current depth
        leaf_node = np.full(m, -1, dtype=np.int64)
        offset = num_roots
        for depth in range(width):
            alive = lengths > depth
            starts = alive & (first_diff <= depth)  # row opens a new node at depth+1
            new_ids = offset + np.cumsum(starts) - 1  # [M]; valid where alive
            parents.append(row_node[starts])
            tokens.append(seqs[starts, depth])
            row_node = np.where(alive, new_ids, -1)
            ends = lengths == depth + 1
            leaf_node[ends] = row_node[ends]
            offset += int(starts.sum())

        n = offset
        token = np.concatenate(tokens)
        parent = np.concatenate(parents)
        # Non-root nodes are sorted by parent, so children ranges come from a bincount + cumsum.
        num_children = np.bincount(parent[num_roots:], minlength=n)[:n]  # [N]
        first_child = num_roots + np.cumsum(num_children) - num_children  # [N]
        item = np.full(n, -1, dtype=np.int64)
        item[leaf_node] = items
        int32_max = np.iinfo(np.int32).max
        if n > int32_max or (m and max(int(seqs.max()), int(items.max())) > int32_max):
            raise InputError("trie too large for int32 storage")

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int32))

        return cls(
            token=t(token), parent=t(parent), first_child=t(first_child), num_children=t(num_children),
            item=t(item), num_roots=num_roots, max_depth=int(lengths.max()) if m else 0,
            max_children=int(num_children.max()) if n else 0,
        )

    # ---- properties --------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        return int(self.token.shape[0])

    @property
    def num_items(self) -> int:
        return int((self.item >= 0).sum())

    @property
    def nbytes(self) -> int:
        """Memory held by the trie's arrays."""
        arrays = (self.token, self.parent, self.first_child, self.num_children, self.item)
        return sum(a.element_size() * a.nelement() for a in arrays)

    @property
    def device(self) -> torch.device:
        return self.token.device

    @property
    def roots(self) -> torch.Tensor:
        return torch.arange(self.num_roots, dtype=torch.int64, device=self.device)  # [R]

    def to(self, device: torch.device | str) -> IdTrie:
        """The same trie with its arrays on ``device`` (queries then take node ids on that device)."""
        arrays = ("token", "parent", "first_child", "num_children", "item")
        return dataclasses.replace(self, **{name: getattr(self, name).to(device) for name in arrays})

    # ---- batched queries ---------------------------------------------------------------
    def children(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Children of each node, padded: ``(tokens, child_nodes)``, both [*nodes.shape, C] int64.

        ``C`` is the largest fan-out among ``nodes``; padding slots hold -1 in both. A node id of -1
        (a dead beam) has no children.
        """
        flat = nodes.reshape(-1).long()  # [R]
        alive = flat >= 0
        safe = flat.clamp(min=0)
        count = torch.where(alive, self.num_children[safe].long(), 0)  # [R]
        width = int(count.max()) if flat.numel() else 0
        slots = torch.arange(width, device=flat.device)  # [C]
        valid = slots < count[:, None]  # [R, C]
        child = torch.where(valid, self.first_child[safe].long()[:, None] + slots, -1)  # [R, C]
        tok = torch.where(valid, self.token[child.clamp(min=0)].long(), -1)  # [R, C]
        return tok.view(*nodes.shape, width), child.view(*nodes.shape, width)

    def allowed_mask(self, nodes: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """[*nodes.shape, vocab_size] bool: which next tokens keep each node on a valid identifier."""
        tok, _ = self.children(nodes.reshape(-1))  # [R, C]
        mask = torch.zeros(tok.shape[0], vocab_size, dtype=torch.bool, device=tok.device)
        rows, slots = (tok >= 0).nonzero(as_tuple=True)
        mask[rows, tok[rows, slots]] = True
        return mask.view(*nodes.shape, vocab_size)

    def step(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Child of each node along ``tokens`` (same shape as ``nodes``); -1 where not allowed."""
        tok, child = self.children(nodes.reshape(-1))  # [R, C]
        hit = tok == tokens.reshape(-1, 1).long()  # [R, C]
        found = hit.any(dim=1)
        nxt = torch.where(found, child.gather(1, hit.long().argmax(dim=1, keepdim=True)).squeeze(1), -1)
        return nxt.view(nodes.shape)

    def item_at(self, nodes: torch.Tensor) -> torch.Tensor:
        """Item index ending at each node (int64, same shape); -1 for internal or dead nodes."""
        safe = nodes.long().clamp(min=0)
        return torch.where(nodes >= 0, self.item[safe].long(), -1)

    def depth_of(self, nodes: torch.Tensor) -> torch.Tensor:
        """Depth of each node (roots are at 0), int64; -1 for dead nodes."""
        depth = torch.zeros(nodes.shape, dtype=torch.int64, device=nodes.device)
        cur = nodes.long()
        for _ in range(self.max_depth):
            up = torch.where(cur >= 0, self.parent[cur.clamp(min=0)].long(), -1)
            depth += (up >= 0).long()
            cur = up
        return torch.where(nodes >= 0, depth, -1)

    def item_paths(self) -> torch.Tensor:
        """[I, D] int64 (I = largest item + 1, D = ``max_depth``): the node at depth 1..D along each
        item's identifier, as a constrained beam holds it after each step (the leaf repeated after a
        shorter identifier's end); -1 rows for items not stored. One-root tries only."""
        if self.num_roots != 1:
            raise GensarError(f"item_paths: a forest of {self.num_roots} roots holds an item once per root")
        leaves = (self.item >= 0).nonzero().squeeze(1).long()  # [L]
        items = self.item[leaves].long()
        out = torch.full((int(items.max()) + 1 if len(items) else 0, self.max_depth), -1, dtype=torch.int64)
        depth = self.depth_of(leaves)  # [L]
        cur = leaves
        for up in range(self.max_depth):  # the node at depth (depth - up) of each identifier
            level = depth - 1 - up
            on = level >= 0
            out[items[on], level[on]] = cur[on]
            cur = torch.where(on, self.parent[cur.clamp(min=0)].long(), cur)
        for level in range(self.max_depth):
            after = level >= depth
            out[items[after], level] = leaves[after]
        return out

    def paths(self) -> list[tuple[int, tuple[int, ...], int]]:
        """Every stored identifier as ``(root, tokens, item)``, sorted. For tests and debugging."""
        leaves = (self.item >= 0).nonzero().squeeze(1)  # [n_leaves]
        cols = []
        cur = leaves.long()
        for _ in range(self.max_depth):
            cols.append(torch.where(cur >= self.num_roots, self.token[cur.clamp(min=0)].long(), -1))
            cur = torch.where(cur >= self.num_roots, self.parent[cur.clamp(min=0)].long(), cur)
        out = []
        for j, leaf in enumerate(leaves.tolist()):
            seq = tuple(int(c[j]) for c in reversed(cols) if int(c[j]) >= 0)
            out.append((int(cur[j]), seq, int(self.item[leaf])))
        return sorted(out)


def _as_padded(sequences: TokenSequences) -> np.ndarray:
    """Token sequences as an int64 [M, L] array padded on the right with -1."""
    if isinstance(sequences, torch.Tensor):
        sequences = sequences.cpu().numpy()
    if isinstance(sequences, np.ndarray):
        if sequences.ndim != 2:
            raise InputError(
                f"identifiers must be a 2-D array, got shape {sequences.shape}", field="sequences"
            )
        if not np.issubdtype(sequences.dtype, np.integer):
            raise InputError(f"identifier tokens must be integers, got {sequences.dtype}", field="sequences")
        return sequences.astype(np.int64, copy=False)
    seqs = [list(s) for s in sequences]
    width = max((len(s) for s in seqs), default=0)
    out = np.full((len(seqs), max(width, 1)), -1, dtype=np.int64)
    for j, s in enumerate(seqs):
        if any(int(t) < 0 for t in s):
            raise InputError(f"identifier {j} has a negative token: {s}", field="sequences")
        out[j, : len(s)] = s
    return out


def _check_prefix_free(
    seqs: np.ndarray, items: np.ndarray, groups: np.ndarray, lengths: np.ndarray,
    first_diff: np.ndarray, num_roots: int,
) -> None:
    """Raise on duplicate identifiers or one identifier being a prefix of another (same root).

    In sorted order a prefix sorts right before its extensions (-1 padding sorts first), so
    checking adjacent rows is enough.
    """
    width = seqs.shape[1]
    prev_len = np.concatenate([[0], lengths[:-1]])
    dup = first_diff == width
    pre = (first_diff >= 0) & (first_diff == prev_len) & (prev_len < lengths)
    bad = np.flatnonzero(dup | pre)
    if not len(bad):
        return
    i = int(bad[0])
    a, b = seqs[i - 1][: lengths[i - 1]].tolist(), seqs[i][: lengths[i]].tolist()
    where = f" (candidate list {groups[i]})" if num_roots > 1 else ""
    if dup[i]:
        raise InputError(f"duplicate identifier {a} for items {items[i - 1]} and {items[i]}{where}")
    raise InputError(
        f"identifiers are not prefix-free: {a} (item {items[i - 1]}) is a prefix of {b} "
        f"(item {items[i]}){where}"
    )
