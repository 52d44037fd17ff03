"""Identifiers, embeddings and the log of items added after training: the pieces, without a model."""

from __future__ import annotations

import numpy as np
import pytest

from gensar.data.canonical import parse_item, read_items_file
from gensar.errors import GensarError, InputError
from gensar.ids.assign import assign_ids, check_unique_prefix_free
from gensar.ids.cold_start import ColdStartConfig, KnnMean, RidgeMap, held_out_agreement, make_predictor
from gensar.ids.item_ids import IdMaps
from gensar.ids.new_ids import IdIndex, code_levels, nearest_free_id
from gensar.ids.rqvae import RQVAECodes
from gensar.serve.items_log import AddedItems, ItemsLog, read_items_log

NAMES = ("s_a", "sem_a")  # two levels: a shared code, then the last (semantic) code
K = 4
VOCAB = {f"<{n}_{c}>" for n in NAMES for c in range(K)} | {"<sem_x_0>", "<sem_x_1>", "<sem_x_2>"}


def _dist(*rows: list[float]) -> list[np.ndarray]:
    return [np.asarray(r, dtype=np.float64) for r in rows]


def _ids(*ids: str) -> IdIndex:
    return IdIndex(2, [tuple(f"<{t}>" for t in i.split()) for i in ids])


# ---- nearest_free_id: the ID stage's rule around identifiers that never change --------------------
def test_own_codes_when_nobody_holds_them():
    got = nearest_free_id([1, 2], _dist([9, 0, 9, 9], [9, 9, 0, 9]), NAMES, "sem_x", _ids("s_a_1 sem_a_0"), VOCAB)
    assert got == ("<s_a_1>", "<sem_a_2>")


def test_a_taken_code_moves_to_the_nearest_free_last_code_of_its_group():
    taken = _ids("s_a_1 sem_a_2", "s_a_1 sem_a_3")
    # last-level distances: 2 (own, taken) < 3 (taken) < 0 < 1
    got = nearest_free_id([1, 2], _dist([9, 0, 9, 9], [0.5, 0.7, 0.0, 0.1]), NAMES, "sem_x", taken, VOCAB)
    assert got == ("<s_a_1>", "<sem_a_0>")
    # a code the model never saw is skipped even when nearer
    got = nearest_free_id([1, 2], _dist([9, 0, 9, 9], [0.5, 0.7, 0.0, 0.1]), NAMES, "sem_x", taken,
                          VOCAB - {"<sem_a_0>"})
    assert got == ("<s_a_1>", "<sem_a_1>")


def test_a_full_group_is_joined_through_its_disambiguation_tokens_when_it_has_them():
    # group s_a_1: codes 0, 1, 3 held plainly; code 2 held by two items with <sem_x_0>, <sem_x_1>
    taken = _ids("s_a_1 sem_a_0", "s_a_1 sem_a_1", "s_a_1 sem_a_3", "s_a_1 sem_a_2 sem_x_0", "s_a_1 sem_a_2 sem_x_1")
    got = nearest_free_id([1, 3], _dist([9, 0, 9, 9], [0.3, 0.2, 0.1, 0.0]), NAMES, "sem_x", taken, VOCAB)
    assert got == ("<s_a_1>", "<sem_a_2>", "<sem_x_2>")


def test_a_full_group_without_them_sends_the_item_to_the_next_nearest_code_above():
    # every last code of s_a_1 is held by one item without a disambiguation token (giving the new
    # item one would make that item's ID a prefix of it); s_a_3 is the next nearest shared code
    taken = _ids(*(f"s_a_1 sem_a_{c}" for c in range(K)), "s_a_3 sem_a_2")
    got = nearest_free_id([1, 2], _dist([9, 0, 9, 0.5], [0.3, 0.2, 0.0, 0.1]), NAMES, "sem_x", taken, VOCAB)
    assert got == ("<s_a_3>", "<sem_a_3>")  # in s_a_3, code 2 is taken: the nearest free is 3
    # a shared code no identifier uses is free below: the item's own last code follows it
    got = nearest_free_id([1, 2], _dist([9, 0, 0.4, 0.5], [0.3, 0.2, 0.0, 0.1]), NAMES, "sem_x", taken, VOCAB)
    assert got == ("<s_a_2>", "<sem_a_2>")


def test_nothing_left_is_an_error_not_a_clash():
    taken = _ids(*(f"s_a_{a} sem_a_{c}" for a in range(K) for c in range(K)))
    with pytest.raises(GensarError, match="no free identifier"):
        nearest_free_id([1, 2], _dist([0, 0, 0, 0], [0, 0, 0, 0]), NAMES, "sem_x", taken, VOCAB)


def test_index_conflicts_are_equal_prefix_and_extension():
    taken = _ids("s_a_1 sem_a_2", "s_a_0 sem_a_1 sem_x_0")
    assert taken.conflict(("<s_a_1>", "<sem_a_2>")) is not None  # equal
    assert taken.conflict(("<s_a_1>", "<sem_a_2>", "<sem_x_0>")) is not None  # extends a taken one
    assert taken.conflict(("<s_a_0>", "<sem_a_1>")) is not None  # a taken one extends it
    assert taken.conflict(("<s_a_0>", "<sem_a_1>", "<sem_x_0>")) is not None  # equal, disambiguated
    assert taken.conflict(("<s_a_0>", "<sem_a_1>", "<sem_x_1>")) is None
    assert taken.conflict(("<s_a_1>", "<sem_a_3>")) is None
    with pytest.raises(GensarError):
        taken.add(("<s_a_1>", "<sem_a_2>"))
    assert code_levels(("<s_a_0>", "<sem_a_1>", "<sem_x_1>")) == 2


@pytest.mark.parametrize("seed", range(6))
def test_many_new_items_keep_every_id_unique_prefix_free_and_old_ones_unchanged(seed):
    """A crowded codebook (K=4, 2 levels: 16 bodies; 11 trained items, 12 new) forces every rule."""
    rng = np.random.default_rng(seed)
    n, k = 11, 4

    def codes(m: int) -> RQVAECodes:
        return RQVAECodes(rng.integers(0, k, (m, 1)), rng.integers(0, k, (m, 1)), rng.integers(0, k, (m, 1)),
                          rng.random((m, k)), rng.random((m, k)))

    trained = assign_ids([f"t{i}" for i in range(n)], codes(n), "joint", k).ids
    before = dict(trained.semantic)
    vocab = set(trained.tokens())
    index = IdIndex(2, trained.semantic.values())
    bodies = {(f"<s_a_{a}>", f"<sem_a_{c}>") for a in range(k) for c in range(k)} & \
        {(a, c) for a in vocab for c in vocab if a.startswith("<s_a_") and c.startswith("<sem_a_")}
    free = sum(not index.body_taken(b) for b in bodies)  # what a new item can get without a suffix
    new = codes(12)
    added = []
    for row in range(12):
        dist = [rng.random(k), new.semantic_last_distances[row]]
        try:
            tokens = nearest_free_id([new.shared[row, 0], new.semantic[row, 0]], dist, ("s_a", "sem_a"), "sem_x",
                                     index, vocab)
        except GensarError as err:
            assert "no free identifier" in str(err)  # the vocabulary ran out of room: refused, never a clash
            break
        assert set(tokens) <= vocab
        index.add(tokens)  # raises on a clash
        added.append(tokens)
    assert len(added) >= min(12, free)  # the search is exhaustive: a free body is always found
    every = [list(t) for t in before.values()] + [list(t) for t in added]
    assert check_unique_prefix_free(every) is None
    assert trained.semantic == before


# ---- a collaborative embedding from a semantic one ----------------------------------------------
def test_ridge_recovers_a_linear_map_and_knn_averages_the_nearest():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # the map is fitted on unit-normalized inputs
    w, b = rng.normal(size=(6, 3)), rng.normal(size=3)
    y = x @ w + b
    ridge = RidgeMap(l2=1e-9).fit(x, y)
    np.testing.assert_allclose(ridge.predict(x[:5]), y[:5], atol=1e-4)
    keys = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    values = np.array([[1.0], [3.0], [10.0], [100.0]])
    knn = KnnMean(k=2).fit(keys, values)
    assert knn.neighbours(np.array([[1.0, 0.05]])).tolist() == [[0, 1]]
    np.testing.assert_allclose(knn.predict(np.array([[1.0, 0.05], [0.1, 1.0]])), [[2.0], [6.5]])
    assert isinstance(make_predictor(ColdStartConfig(method="knn", knn_k=3)), KnnMean)
    assert isinstance(make_predictor(ColdStartConfig()), RidgeMap)


def test_held_out_agreement_is_perfect_for_a_perfect_predictor_and_not_for_noise():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 4))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = x @ rng.normal(size=(4, 2))

    def encode(sem, col):  # codes: the sign pattern of each collaborative dimension
        c = (col > 0).astype(int)
        return c, c

    exact = held_out_agreement(encode, x, y, RidgeMap(l2=1e-9))
    assert exact["collaborative_id_match"] == 1.0 and exact["embedding_cosine"] > 0.999
    assert exact["collaborative_prefix_levels"] == 2.0
    noise = held_out_agreement(encode, rng.normal(size=(100, 4)), y, KnnMean(k=1))
    assert noise["collaborative_id_match"] < 0.6


# ---- the items file and the items log ----------------------------------------------------------
def test_items_file_is_the_canonical_format_with_unknown_fields_refused(tmp_path):
    good = tmp_path / "new.jsonl"
    good.write_text('{"item_id": " n1 ", "title": "A", "categories": ["Shop", "Saws"]}\n\n{"item_id": 7}\n')
    got = read_items_file(good)
    assert [(g.item["item_id"], g.line) for g in got] == [("n1", 1), ("7", 3)]
    assert got[0].item == {"item_id": "n1", "title": "A", "categories": ["Shop", "Saws"], "description": "",
                           "brand": ""}
    cases = [
        ("a.jsonl", '{"item_id": "n1"}\n{"item_id": "n2", "price": 3}\n', "a.jsonl:2: field 'price': unknown field"),
        ("b.jsonl", '{"item_id": "n1"}\n{"item_id": "n1"}\n', "b.jsonl:2: field 'item_id': duplicate item id 'n1'"),
        ("c.csv", "item_id,title,colour\nn1,A,red\n", "c.csv:1: field 'colour': unknown column"),
        ("d.jsonl", '{"item_id": "n1", "categories": [1]}\n', "d.jsonl:1: field 'categories'"),
        ("e.txt", '{"item_id": "n1"}\n', "e.txt: unknown format"),
    ]
    for name, text, message in cases:
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError) as err:
            read_items_file(tmp_path / name)
        assert message in str(err.value), str(err.value)
    with pytest.raises(InputError, match="field 'brand'"):
        parse_item({"item_id": "x", "brand": ["no"]})
    with pytest.raises(InputError, match="field 'colour': unknown field"):
        parse_item({"item_id": "x", "colour": "red"})


def test_items_log_round_trips_and_skips_a_torn_batch(tmp_path):
    path = tmp_path / "items.jsonl"
    ids = IdMaps({"n1": ("<s_a_1>", "<sem_a_2>")}, {"n1": ("<s_a_1>", "<col_a_0>")})
    item = {"item_id": "n1", "title": "T", "categories": ["C"], "description": "", "brand": "B"}
    log = ItemsLog(path)
    record = log.append([item], ids, then=lambda r: None)
    with pytest.raises(GensarError, match="in use"):
        ItemsLog(path)
    log.close()
    assert record.seq == 1 and record.items[0].semantic == ("<s_a_1>", "<sem_a_2>")
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"seq": 2, "items": [{"item_id": "n2", "ti')  # killed mid-write: the batch is gone
    replay = read_items_log(path)
    assert replay.records == [record] and replay.torn > 0
    ItemsLog(path).close()  # a writer cuts the torn tail off
    assert path.read_bytes() == whole
    path.write_text(whole.decode() + '{"seq": 2, "items": [{"item_id": "n2", "semantic": ["<a>"], '
                    '"collaborative": ["<b>"], "colour": 1}]}\n')
    with pytest.raises(InputError, match=r"items.jsonl:2: field 'items\[0\].colour': unknown field"):
        read_items_log(path)
    assert AddedItems.of(3, [item], ids).to_json().startswith('{"seq": 3, ')
