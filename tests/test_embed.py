"""Semantic item embeddings: the real MiniLM on a few texts, and the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gensar.config import load_config
from gensar.embed import semantic
from gensar.embed.semantic import SemanticConfig, encode_items
from gensar.errors import ConfigError, GensarError


class FakeEncoder:
    """Stands in for SentenceTransformer: embeds a text as [len, n_vowels, 1]."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts, batch_size, convert_to_numpy, normalize_embeddings, show_progress_bar):
        self.calls += 1
        out = np.array([[len(t), sum(c in "aeiou" for c in t), 1.0] for t in texts], dtype=np.float64)
        if normalize_embeddings:
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    def get_sentence_embedding_dimension(self) -> int:
        return 3


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A fake local model directory and a counter of encoder loads."""
    model_dir = tmp_path / "fake-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    loads: list[FakeEncoder] = []

    def fake_load(path: Path, device: str) -> FakeEncoder:
        assert path == model_dir.resolve()
        loads.append(FakeEncoder())
        return loads[-1]

    monkeypatch.setattr(semantic, "load_encoder", fake_load)
    return model_dir, loads


def test_minilm_shape_normalization_and_meaning():
    texts = ["cordless drill with two batteries", "battery powered power drill", "glass beaker for the chemistry lab"]
    emb = encode_items(texts, SemanticConfig(batch_size=2), cache_dir=None)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # the two drills are closer than drill vs beaker


def test_cache_hit_skips_the_encoder(tmp_path, fake_model):
    model_dir, loads = fake_model
    cfg = SemanticConfig(model=str(model_dir), batch_size=2)
    texts = ["aa", "bbb", "ccccc", "deed", "e"]
    first = encode_items(texts, cfg, cache_dir=tmp_path / "cache")
    assert len(loads) == 1 and loads[0].calls == 3  # batches of 2, 2, 1
    second = encode_items(texts, cfg, cache_dir=tmp_path / "cache")
    assert len(loads) == 1  # served from disk: the encoder was not even loaded
    np.testing.assert_array_equal(first, second)
    assert [p.name.startswith("semantic-") for p in (tmp_path / "cache").iterdir()] == [True]  # no temp files


def test_cache_key_changes_with_texts_and_options(tmp_path, fake_model):
    model_dir, loads = fake_model
    cfg = SemanticConfig(model=str(model_dir))
    cache = tmp_path / "cache"
    encode_items(["ab", "c"], cfg, cache)
    encode_items(["a", "bc"], cfg, cache)  # same characters, different split
    encode_items(["ab", "c"], SemanticConfig(model=str(model_dir), normalize=False), cache)
    encode_items(["ab", "c"], SemanticConfig(model=str(model_dir), max_chars=1), cache)
    assert len(loads) == 4
    encode_items(["ab", "c"], SemanticConfig(model=str(model_dir), batch_size=7), cache)  # no effect on output
    assert len(loads) == 4
    (model_dir / "config.json").write_text('{"changed": true}')  # a different model version
    encode_items(["ab", "c"], cfg, cache)
    assert len(loads) == 5


def test_options_reach_the_encoder(fake_model):
    model_dir, _ = fake_model
    raw = encode_items(["hello", "xy"], SemanticConfig(model=str(model_dir), normalize=False, max_chars=3), None)
    np.testing.assert_array_equal(raw, np.array([[3, 1, 1], [2, 0, 1]], dtype=np.float32))  # "hel", "xy"
    unit = encode_items(["hello", "xy"], SemanticConfig(model=str(model_dir), max_chars=3), None)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)


def test_unknown_model_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="'model'"):
        encode_items(["x"], SemanticConfig(model=str(tmp_path / "nope")), None)


def test_bad_config_value_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="'batch_size'"):
        load_config(SemanticConfig, overrides=["batch_size=0"])
    with pytest.raises(ConfigError, match="'normalise'"):
        load_config(SemanticConfig, overrides=["normalise=true"])


# ---- category-weighted semantic embeddings ------------------------------------------------------
def _items(rows):
    import pandas as pd

    return pd.DataFrame(
        [{"item_id": i, "title": t, "categories": c, "description": "", "brand": ""} for i, t, c in rows]
    )


def test_category_texts_are_catalog_queries_with_a_title_fallback():
    items = _items([
        ("a", "Red Beaker 250ml", ["Lab", "Glassware", "Beakers"]),
        ("b", "Drill Bit Set", ["Lab", "Tools", "Drill Bits"]),
        ("c", "Mystery Gadget", []),
    ])
    # The shared root "Lab" is dropped, words are lower-cased; no categories: the title words.
    assert semantic.category_texts(items) == ["glassware beakers", "tools drill bits", "mystery gadget"]


def test_mix_category_by_hand():
    full = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    cat = np.array([[0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    raw = semantic.mix_category(full, cat, 0.5, normalize=False)
    np.testing.assert_allclose(raw, [[1.0, 0.5], [0.0, 1.5]])
    unit = semantic.mix_category(full, cat, 1.0, normalize=True)
    np.testing.assert_allclose(unit, [[2**-0.5, 2**-0.5], [0.0, 1.0]], atol=1e-6)
    with pytest.raises(GensarError, match="differ"):
        semantic.mix_category(full, cat[:1], 1.0, normalize=True)


def test_category_weight_pulls_items_of_one_category_together():
    """Real MiniLM: two items of one category whose titles differ, and a third of another category
    whose title resembles the first. The category embedding makes the same-category pair closest."""
    items = _items([
        ("a", "stainless steel socket head cap screws", ["Shop", "Fasteners", "Screws"]),
        ("b", "assorted machine bolts kit", ["Shop", "Fasteners", "Screws"]),
        ("c", "stainless steel socket wrench", ["Shop", "Hand Tools", "Wrenches"]),
    ])
    from gensar.data.schema import item_texts

    cfg = SemanticConfig()
    full = encode_items(item_texts(items), cfg, None)
    mixed = semantic.mix_category(full, encode_items(semantic.category_texts(items), cfg, None), 1.0, True)
    sim_full, sim_mixed = full @ full.T, mixed @ mixed.T
    assert sim_mixed[0, 1] - sim_mixed[0, 2] > sim_full[0, 1] - sim_full[0, 2]
    assert sim_mixed[0, 1] > sim_mixed[0, 2]
    np.testing.assert_allclose(np.linalg.norm(mixed, axis=1), 1.0, atol=1e-5)


def test_category_weight_must_not_be_negative():
    with pytest.raises(ConfigError, match="'category_weight'"):
        load_config(SemanticConfig, overrides=["category_weight=-1"])
