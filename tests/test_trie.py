"""IdTrie: exact contents, batched queries vs a Python reference, forests, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gensar.errors import InputError
from gensar.ids.trie import IdTrie

SEQS = [[1, 2, 3], [1, 2, 4], [1, 5, 6], [7, 8, 9]]


def test_hand_built_trie_layout():
    trie = IdTrie.build(SEQS)
    # root | depth 1: 1, 7 | depth 2: (1,2), (1,5), (7,8) | depth 3: four leaves
    assert trie.num_nodes == 1 + 2 + 3 + 4
    assert trie.num_roots == 1 and trie.max_depth == 3 and trie.max_children == 2
    assert trie.token.tolist() == [-1, 1, 7, 2, 5, 8, 3, 4, 6, 9]
    assert trie.parent.tolist() == [-1, 0, 0, 1, 1, 2, 3, 3, 4, 5]
    assert trie.item.tolist() == [-1] * 6 + [0, 1, 2, 3]
    assert trie.paths() == [(0, tuple(s), i) for i, s in enumerate(SEQS)]
    assert trie.num_items == 4
    assert trie.nbytes == 5 * 10 * 4
    moved = trie.to("cpu")
    assert moved.device == torch.device("cpu") and moved.paths() == trie.paths()


def test_batched_queries_hand_values():
    trie = IdTrie.build(SEQS)
    nodes = torch.tensor([0, 1, 3, 6, -1])  # root, "1", "1 2", leaf "1 2 3", dead
    tok, child = trie.children(nodes)
    assert tok.tolist() == [[1, 7], [2, 5], [3, 4], [-1, -1], [-1, -1]]
    assert child.tolist() == [[1, 2], [3, 4], [6, 7], [-1, -1], [-1, -1]]
    mask = trie.allowed_mask(nodes, vocab_size=10)
    assert mask.shape == (5, 10)
    assert [row.nonzero().squeeze(1).tolist() for row in mask] == [[1, 7], [2, 5], [3, 4], [], []]
    assert trie.step(nodes, torch.tensor([7, 5, 4, 1, 1])).tolist() == [2, 4, 7, -1, -1]
    assert trie.step(nodes, torch.tensor([2, 7, 3, 1, 1])).tolist() == [-1, -1, 6, -1, -1]
    assert trie.item_at(torch.tensor([6, 9, 3, -1])).tolist() == [0, 3, -1, -1]
    assert trie.depth_of(torch.tensor([0, 2, 4, 9, -1])).tolist() == [0, 1, 2, 3, -1]
    # 2-D node batches keep their shape
    tok2, _ = trie.children(nodes[:4].view(2, 2))
    assert tok2.shape == (2, 2, 2)


def test_subset_and_variable_lengths():
    trie = IdTrie.build([SEQS[3], SEQS[1]], item_indices=[30, 10])
    assert trie.paths() == [(0, (1, 2, 4), 10), (0, (7, 8, 9), 30)]
    ragged = IdTrie.build([[5], [6, 1], [6, 2, 9]])
    assert ragged.paths() == [(0, (5,), 0), (0, (6, 1), 1), (0, (6, 2, 9), 2)]
    assert ragged.max_depth == 3
    padded = IdTrie.build(np.array([[5, -1, -1], [6, 1, -1], [6, 2, 9]]))
    assert padded.paths() == ragged.paths()


def test_forest_one_root_per_candidate_list():
    codes = np.array(SEQS + [[7, 8, 1]])  # items 0..4
    cands = np.array([[0, 1, -1], [3, 1, 4], [2, -1, -1]])
    forest = IdTrie.build_forest(codes, cands)
    assert forest.num_roots == 3
    assert forest.paths() == [
        (0, (1, 2, 3), 0),
        (0, (1, 2, 4), 1),
        (1, (1, 2, 4), 1),
        (1, (7, 8, 1), 4),
        (1, (7, 8, 9), 3),
        (2, (1, 5, 6), 2),
    ]
    tok, _ = forest.children(forest.roots)
    assert tok.tolist() == [[1, -1], [1, 7], [1, -1]]
    # the same item in two lists lives under two roots
    assert forest.step(torch.tensor([0, 1]), torch.tensor([1, 1])).tolist() != [-1, -1]


def test_forest_matches_per_list_tries_at_scale():
    rng = np.random.default_rng(0)
    codes = np.unique(rng.integers(0, 256, size=(3000, 4)), axis=0)[:2000]
    cands = np.stack([rng.choice(len(codes), size=100, replace=False) for _ in range(64)])
    forest = IdTrie.build_forest(codes, cands)
    by_root: dict[int, set] = {}
    for root, seq, item in forest.paths():
        by_root.setdefault(root, set()).add((seq, item))
    for b in range(64):
        assert by_root[b] == {(tuple(codes[i].tolist()), int(i)) for i in cands[b]}


def test_duplicate_identifier_error():
    with pytest.raises(InputError, match=r"duplicate identifier \[1, 2, 3\] for items 0 and 4"):
        IdTrie.build(SEQS + [[1, 2, 3]])
    with pytest.raises(InputError, match="candidate list 1"):
        IdTrie.build_forest(np.array(SEQS), np.array([[0, 1], [2, 2]]))


def test_prefix_free_error():
    with pytest.raises(
        InputError, match=r"not prefix-free: \[1, 2\] \(item 4\) is a prefix of \[1, 2, 3\] \(item 0\)"
    ):
        IdTrie.build(SEQS + [[1, 2]])


@pytest.mark.parametrize(
    "seqs,match",
    [
        ([[1, 2], []], "empty"),
        ([[1, -3]], "negative token"),
        (np.array([[1, -1, 2]]), "padding before its end"),
        (np.array([1, 2, 3]), "2-D"),
    ],
)
def test_bad_identifiers(seqs, match):
    with pytest.raises(InputError, match=match):
        IdTrie.build(seqs)


def test_bad_forest_inputs():
    with pytest.raises(InputError, match="out of range"):
        IdTrie.build_forest(np.array(SEQS), np.array([[0, 4]]))
    with pytest.raises(InputError, match=r"\[batch, n\]"):
        IdTrie.build_forest(np.array(SEQS), np.array([0, 1]))
    with pytest.raises(InputError, match="2 item indices for 4"):
        IdTrie.build(SEQS, item_indices=[0, 1])


# ---- property: batched answers == brute-force Python reference ---------------------------------


def prefix_free(seqs: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    kept: list[tuple[int, ...]] = []
    for s in sorted(set(seqs), key=len):
        if not any(s[: len(k)] == k for k in kept):
            kept.append(s)
    return kept


identifier_sets = st.lists(
    st.lists(st.integers(0, 6), min_size=1, max_size=4).map(tuple), min_size=1, max_size=40
).map(prefix_free)


@settings(max_examples=60, deadline=None)
@given(seqs=identifier_sets, data=st.data())
def test_batched_queries_match_python_reference(seqs, data):
    items = data.draw(st.permutations(range(100, 100 + len(seqs))))
    trie = IdTrie.build([list(s) for s in seqs], item_indices=list(items))
    ref_next: dict[tuple[int, ...], set[int]] = {}
    for s in seqs:
        for d in range(len(s)):
            ref_next.setdefault(s[:d], set()).add(s[d])
    ref_item = {s: it for s, it in zip(seqs, items)}
    assert trie.paths() == sorted((0, s, it) for s, it in ref_item.items())

    # Walk every prefix (plus random invalid extensions) in one batch, level by level.
    prefixes = sorted({s[:d] for s in seqs for d in range(len(s) + 1)})
    extra = [p + (data.draw(st.integers(0, 7)),) for p in prefixes]
    queries = prefixes + extra
    nodes = torch.zeros(len(queries), dtype=torch.long)
    for d in range(max(len(q) for q in queries)):
        toks = torch.tensor([q[d] if d < len(q) else -1 for q in queries])
        moving = torch.tensor([d < len(q) for q in queries])
        nodes = torch.where(moving, trie.step(nodes, toks), nodes)
    valid_prefix = set(prefixes)
    mask = trie.allowed_mask(nodes, vocab_size=8)
    for q, node, row in zip(queries, nodes.tolist(), mask):
        if q not in valid_prefix:
            assert node == -1
            assert not row.any()
            continue
        assert node >= 0
        assert set(row.nonzero().squeeze(1).tolist()) == ref_next.get(q, set())
        assert int(trie.item_at(torch.tensor([node]))) == ref_item.get(q, -1)
