"""Identifier assignment: collision rates, reassignment, disambiguation, token strings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gensar.errors import InputError
from gensar.ids.assign import (
    AssignConfig,
    assign_ids,
    check_unique_prefix_free,
    code_usage,
    collision_rate,
    disambiguation_suffix,
    reassign_last_level,
    resolve_collisions,
)
from gensar.ids.item_ids import IdMaps
from gensar.ids.rqvae import RQVAECodes


def _lists(table: dict[str, tuple[str, ...]]) -> list[list[str]]:
    return [list(t) for t in table.values()]


def codes_of(shared, semantic, collaborative, k):
    """RQVAECodes with uniform distances except 0 to the item's own last code."""
    shared, semantic, collaborative = (np.asarray(a, dtype=np.int64).reshape(len(a), -1)
                                       for a in (shared, semantic, collaborative))
    n = len(shared)

    def dist(c):
        if c.shape[1] == 0:
            return np.zeros((n, 0), np.float32)
        d = np.ones((n, k), np.float32)
        d[np.arange(n), c[:, -1]] = 0.0
        return d

    return RQVAECodes(shared, semantic, collaborative, dist(semantic), dist(collaborative))


def test_collision_rate_counts_items_sharing_an_id():
    codes = np.array([[0, 1], [0, 1], [1, 0], [2, 2], [0, 1], [2, 3]])
    assert collision_rate(codes) == pytest.approx(3 / 6)
    assert collision_rate(codes, np.array([0, 1, -1, -1, 2, -1])) == 0.0
    assert collision_rate(np.zeros((0, 2), np.int64)) == 0.0


def test_code_usage_per_level():
    codes = np.array([[0, 1], [0, 2], [3, 2], [0, 3]])
    assert code_usage(codes, 4) == [0.5, 0.75]


def test_reassign_moves_all_but_the_nearest_to_the_nearest_free_codes():
    # items 0, 1, 2 share prefix (5,) and last code 0; item 3 (prefix 5) holds code 2;
    # item 4 has another prefix, so its code 0 does not block anything.
    codes = np.array([[5, 0], [5, 0], [5, 0], [5, 2], [6, 0]])
    d = np.array([
        [0.3, 0.9, 0.1, 0.8],  # item 0: code 2 is nearer, but item 3 holds it
        [0.1, 0.5, 0.2, 0.4],  # item 1: nearest to code 0 -> keeps it
        [0.2, 0.7, 0.0, 0.6],  # item 2
        [0.9, 0.9, 0.0, 0.9],
        [0.0, 0.9, 0.9, 0.9],
    ])
    out = reassign_last_level(codes, d)
    # free codes in prefix 5: {1, 3}. Cheapest pair first: item 2 -> code 3 (0.6); then item 0 -> code 1 (0.9)
    assert out.tolist() == [[5, 1], [5, 0], [5, 3], [5, 2], [6, 0]]
    assert codes.tolist()[0] == [5, 0]  # input untouched


def test_disambiguation_suffix_numbers_every_member_of_a_group():
    codes = np.array([[1, 1], [2, 2], [1, 1], [3, 3], [1, 1], [2, 2]])
    assert disambiguation_suffix(codes).tolist() == [0, 0, 1, -1, 2, 1]


def test_heavy_collisions_codebook_size_two_give_unique_prefix_free_ids():
    rng = np.random.default_rng(0)
    n, k = 40, 2
    c = codes_of(rng.integers(0, k, (n, 2)), rng.integers(0, k, (n, 2)), rng.integers(0, k, (n, 2)), k)
    items = [f"i{i}" for i in range(n)]
    result = assign_ids(items, c, "joint", k)
    for kind in ("semantic", "collaborative"):
        res = getattr(result, kind)
        ids = _lists(result.ids.of(kind))
        assert res.collision_rate_raw > 0.5 and res.collision_rate == 0.0
        assert len({tuple(t) for t in ids}) == n
        assert check_unique_prefix_free(ids) is None
        # 16 possible 4-level IDs for 40 items: disambiguation is unavoidable
        assert res.disambiguated_items > 0
        # every member of a disambiguated group carries the extra token, index 0 included
        groups: dict[tuple, list[int]] = {}
        for i, t in enumerate(ids):
            groups.setdefault(tuple(t[:4]), []).append(i)
        for members in groups.values():
            lengths = {len(ids[i]) for i in members}
            assert lengths == ({4} if len(members) == 1 else {5})
            if len(members) > 1:
                assert sorted(ids[i][-1] for i in members) == sorted(
                    f"<{'sem' if kind == 'semantic' else 'col'}_x_{j}>" for j in range(len(members)))
        # the first 4 tokens: 2 shared, then 2 specific
        prefix = "sem" if kind == "semantic" else "col"
        assert all(t[0].startswith("<s_a_") and t[1].startswith("<s_b_") and t[2].startswith(f"<{prefix}_a_")
                   and t[3].startswith(f"<{prefix}_b_") for t in ids)
    # reassignment fills the free last-level codes before any extra token is appended
    assert result.semantic.collision_rate_reassigned < result.semantic.collision_rate_raw


def test_joint_token_strings_and_shared_prefix():
    c = codes_of([[17, 3], [17, 3]], [[201, 9], [4, 9]], [[5, 30], [5, 31]], 256)
    result = assign_ids(["a", "b"], c, "joint", 256)
    assert result.ids.to_json() == {
        "a": {"semantic": ["<s_a_17>", "<s_b_3>", "<sem_a_201>", "<sem_b_9>"],
              "collaborative": ["<s_a_17>", "<s_b_3>", "<col_a_5>", "<col_b_30>"]},
        "b": {"semantic": ["<s_a_17>", "<s_b_3>", "<sem_a_4>", "<sem_b_9>"],
              "collaborative": ["<s_a_17>", "<s_b_3>", "<col_a_5>", "<col_b_31>"]},
    }
    report = result.report()
    assert report["semantic_collision_rate_raw"] == 0.0 and report["collaborative_collision_rate"] == 0.0
    assert report["code_usage"]["s"] == [1 / 256, 1 / 256]
    assert report["id_length"]["semantic"] == {"max": 4, "mean": 4.0}
    assert result.ids.tokens()[:2] == ["<col_a_5>", "<col_b_30>"]


@pytest.mark.parametrize("variant", ["semantic", "collaborative"])
def test_single_variant_ids_serve_both_roles(variant):
    rows = [[1, 2, 3], [1, 2, 3], [0, 0, 0]]
    empty = np.zeros((3, 0), np.int64)
    c = codes_of(empty, rows if variant == "semantic" else empty, rows if variant == "collaborative" else empty, 4)
    result = assign_ids(["a", "b", "c"], c, variant, 4)
    g = "sem" if variant == "semantic" else "col"
    # a and b collide; b (not nearer to code 3 than a: tie -> lower index keeps it) moves to a free code
    assert result.ids.semantic["a"] == (f"<{g}_a_1>", f"<{g}_b_2>", f"<{g}_c_3>")
    assert result.ids.semantic["b"][:2] == (f"<{g}_a_1>", f"<{g}_b_2>") and result.ids.semantic["b"][2] != f"<{g}_c_3>"
    assert result.ids.collaborative == result.ids.semantic
    assert result.semantic.collision_rate_raw == pytest.approx(2 / 3)
    assert list(result.code_usage) == [g]


def test_reassign_off_uses_only_disambiguation_tokens():
    c = codes_of([[0], [0], [1]], [[2], [2], [2]], [[0], [1], [2]], 4)
    result = assign_ids(["a", "b", "c"], c, "joint", 4, AssignConfig(reassign=False))
    assert _lists(result.ids.semantic) == [["<s_a_0>", "<sem_a_2>", "<sem_x_0>"], ["<s_a_0>", "<sem_a_2>", "<sem_x_1>"],
                                           ["<s_a_1>", "<sem_a_2>"]]
    assert _lists(result.ids.collaborative) == [["<s_a_0>", "<col_a_0>"], ["<s_a_0>", "<col_a_1>"],
                                                ["<s_a_1>", "<col_a_2>"]]
    assert result.report()["id_length"]["semantic"] == {"max": 3, "mean": pytest.approx(8 / 3)}


def test_prefix_free_check_finds_duplicates_and_prefixes():
    assert check_unique_prefix_free([["a", "b"], ["a", "c"], ["b"]]) is None
    assert check_unique_prefix_free([["a", "b"], ["b"], ["a", "b"]]) == (0, 2)
    assert check_unique_prefix_free([["a", "b", "x"], ["c"], ["a", "b"]]) == (2, 0)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), k=st.integers(2, 5), levels=st.integers(1, 3), seed=st.integers(0, 10_000),
       reassign=st.booleans())
def test_resolution_is_unique_prefix_free_and_leaves_unique_items_alone(n, k, levels, seed, reassign):
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, k, (n, levels))
    res = resolve_collisions(raw, rng.random((n, k)), reassign=reassign)
    ids = [[f"<l{j}_{c}>" for j, c in enumerate(row)] + ([f"<x_{s}>"] if s >= 0 else [])
           for row, s in zip(res.codes.tolist(), res.suffix.tolist(), strict=True)]
    assert check_unique_prefix_free(ids) is None
    assert res.collision_rate == 0.0
    assert np.array_equal(res.codes[:, :-1], raw[:, :-1])  # only the last level ever changes
    counts = {tuple(r): 0 for r in raw.tolist()}
    for r in raw.tolist():
        counts[tuple(r)] += 1
    unique = np.array([counts[tuple(r)] == 1 for r in raw.tolist()])
    assert np.array_equal(res.codes[unique], raw[unique]) and (res.suffix[unique] == -1).all()
    if reassign:
        # a group needs extra tokens only when its prefix group has more items than codes
        prefix_sizes: dict[tuple, int] = {}
        for r in raw[:, :-1].tolist():
            prefix_sizes[tuple(r)] = prefix_sizes.get(tuple(r), 0) + 1
        for i in np.flatnonzero(res.suffix >= 0):
            assert prefix_sizes[tuple(raw[i, :-1].tolist())] > k


def test_item_ids_json_round_trip_and_errors(tmp_path):
    ids = IdMaps.from_lists(["a", "b"], [["<sem_a_1>"], ["<sem_a_2>"]], [["<col_a_1>"], ["<col_a_0>", "<col_x_0>"]])
    path = tmp_path / "item_ids.json"
    path.write_text(json.dumps(ids.to_json()))
    assert IdMaps.load(path) == ids and IdMaps.load(path).item_ids == ["a", "b"]
    path.write_text(json.dumps({"a": {"semantic": ["<sem_a_1>"], "collaborative": []}}))
    with pytest.raises(InputError, match=r"item_ids.json: field 'a.collaborative': must be a non-empty list"):
        IdMaps.load(path)
    path.write_text("{\n  oops")
    with pytest.raises(InputError, match=r"item_ids.json:2: invalid JSON"):
        IdMaps.load(path)


# ---- `gensar ids` ---------------------------------------------------------------------------------
CLI_SMALL = ["rqvae.codebook_size=4", "rqvae.specific_dim=4", "rqvae.shared_dim=8", "rqvae.hidden_dims=[16]",
             "rqvae.epochs=5", "rqvae.batch_size=16", "rqvae.kmeans_iters=3", "progress=false"]


def _ids_inputs(tmp_path):
    from conftest import make_tiny_prepared

    data = make_tiny_prepared()
    data.save(tmp_path / "data")
    rng = np.random.default_rng(0)
    sem, col = rng.normal(size=(40, 24)).astype(np.float32), rng.normal(size=(40, 12)).astype(np.float32)
    np.save(tmp_path / "sem.npy", sem)
    np.save(tmp_path / "col.npy", col)
    sets = [f"semantic_emb={tmp_path / 'sem.npy'}", f"collaborative_emb={tmp_path / 'col.npy'}", *CLI_SMALL]
    return data, sem, col, [a for s in sets for a in ("--set", s)]


def test_cli_ids_writes_a_complete_run_dir(tmp_path, capsys):
    import yaml

    from gensar.cli import main
    from gensar.config import from_dict
    from gensar.ids.stage import IdsConfig
    from gensar.ids.rqvae import load_checkpoint

    data, sem, col, sets = _ids_inputs(tmp_path)
    run = tmp_path / "run"
    assert main(["ids", str(tmp_path / "data"), "--out", str(run), *sets]) == 0
    assert "collision rate" in capsys.readouterr().out
    assert sorted(p.name for p in run.iterdir()) == [".gensar-run.json", "collaborative_emb.npy", "config.yaml", "ids_report.json",
                                                     "item_ids.json", "rqvae.pt", "semantic_emb.npy"]
    assert np.array_equal(np.load(run / "semantic_emb.npy"), sem)
    assert np.array_equal(np.load(run / "collaborative_emb.npy"), col)
    ids = IdMaps.load(run / "item_ids.json")
    assert ids.item_ids == data.items["item_id"].tolist()
    for kind in ("semantic", "collaborative"):
        assert check_unique_prefix_free(_lists(ids.of(kind))) is None
    report = json.loads((run / "ids_report.json").read_text())
    assert report["variant"] == "joint"
    assert report["semantic_collision_rate"] == report["collaborative_collision_rate"] == 0.0
    assert 0.0 <= report["semantic_collision_rate_raw"] <= 1.0
    assert set(report["code_usage"]) == {"s", "sem", "col"} and len(report["code_usage"]["s"]) == 2
    assert report["train_seconds"] > 0 and report["final_losses"]["loss"] > 0
    cfg = from_dict(IdsConfig, yaml.safe_load((run / "config.yaml").read_text()))
    assert cfg.rqvae.codebook_size == 4 and cfg.rqvae.hidden_dims == (16,)
    # the checkpoint reproduces the identifiers
    model = load_checkpoint(run / "rqvae.pt")
    again = assign_ids(ids.item_ids, model.encode(sem, col), "joint", 4, cfg.assign)
    assert again.ids == ids


def test_cli_ids_variant_flag(tmp_path):
    from gensar.cli import main

    _, _, _, sets = _ids_inputs(tmp_path)
    run = tmp_path / "run"
    assert main(["ids", str(tmp_path / "data"), "--out", str(run), "--variant", "collaborative", *sets]) == 0
    ids = IdMaps.load(run / "item_ids.json")
    assert ids.collaborative == ids.semantic
    assert all(t.startswith("<col_") for toks in ids.semantic.values() for t in toks)
    assert json.loads((run / "ids_report.json").read_text())["variant"] == "collaborative"


def test_cli_ids_bad_input_is_one_line_error_and_no_output(tmp_path, capsys):
    from gensar.cli import main

    _, _, _, sets = _ids_inputs(tmp_path)
    np.save(tmp_path / "short.npy", np.zeros((39, 8), np.float32))
    run = tmp_path / "run"
    code = main(["ids", str(tmp_path / "data"), "--out", str(run), *sets, "--set",
                 f"semantic_emb={tmp_path / 'short.npy'}"])
    err = capsys.readouterr().err
    assert code == 2 and "short.npy: field 'semantic_emb': has 39 rows but the prepared data has 40 items" in err
    assert len(err.strip().splitlines()) == 1
    assert not run.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]
    assert main(["ids", str(tmp_path / "data"), "--out", str(run), *sets, "--set", "rqvae.codebook_size=1"]) == 2
    assert "config key 'codebook_size': must be >= 2" in capsys.readouterr().err
    run.mkdir()
    (run / "keep.txt").write_text("x")
    # a directory gensar did not write is never replaced, not even with --overwrite (issue 15)
    assert main(["ids", str(tmp_path / "data"), "--out", str(run), *sets]) == 2
    assert "not written by gensar" in capsys.readouterr().err
    assert main(["ids", str(tmp_path / "data"), "--out", str(run), *sets, "--overwrite"]) == 2
    assert (run / "keep.txt").read_text() == "x"
    (run / "keep.txt").unlink()
    assert main(["ids", str(tmp_path / "data"), "--out", str(run), *sets]) == 0  # empty: fine
    assert main(["ids", str(tmp_path / "data"), "--out", str(run), *sets]) == 2
    assert "not empty (use --overwrite)" in capsys.readouterr().err
    assert main(["ids", str(tmp_path / "data"), "--out", str(run), *sets, "--overwrite"]) == 0  # ours
