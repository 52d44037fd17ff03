"""The identifier RQ-VAE: config checks, training, variants, gradients, checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gensar.config import from_dict, load_config
from gensar.errors import ConfigError, GensarError
from gensar.ids.rqvae import RQVAE, RQVAEConfig, load_checkpoint, save_checkpoint, train_rqvae

SMALL = RQVAEConfig(codebook_size=16, specific_dim=8, shared_dim=16, hidden_dims=(32,), epochs=60,
                    batch_size=64, kmeans_iters=5)


def clustered(n: int = 192, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Semantic [n, 24] and collaborative [n, 12] embeddings with 6 and 4 clusters, crossed."""
    rng = np.random.default_rng(seed)
    sem_centers, col_centers = rng.normal(size=(6, 24)), rng.normal(size=(4, 12))
    idx = np.arange(n)
    sem = sem_centers[idx % 6] + 0.1 * rng.normal(size=(n, 24))
    col = col_centers[(idx // 6) % 4] + 0.1 * rng.normal(size=(n, 12))
    return sem.astype(np.float32), col.astype(np.float32)


@pytest.mark.parametrize(
    ("override", "key", "fragment"),
    [
        ({"codebook_size": 1}, "codebook_size", "must be >= 2"),
        ({"shared_levels": 0}, "shared_levels", "must be >= 1"),
        ({"specific_levels": 0}, "specific_levels", "must be >= 1"),
        ({"single_levels": 0}, "single_levels", "must be >= 1"),
        ({"shared_dim": 48}, "shared_dim", "must equal 2 * specific_dim = 64"),
        ({"beta": -0.1}, "beta", "must be >= 0"),
        ({"lr": 0.0}, "lr", "must be > 0"),
        ({"batch_size": 0}, "batch_size", "must be >= 1"),
        ({"hidden_dims": [64, 0]}, "hidden_dims", "every hidden size"),
        ({"single_levels": 21}, "single_levels", "must be <= 20"),
        ({"device": "tpu"}, "device", "'cpu', 'cuda'"),
        ({"variant": "both"}, "variant", "is not one of"),
        ({"sinkhorn": "sometimes"}, "sinkhorn", "is not one of"),
    ],
)
def test_bad_config_values_are_rejected_naming_the_key(override, key, fragment):
    with pytest.raises(ConfigError, match=f"config key '{key}'") as err:
        from_dict(RQVAEConfig, override)
    assert fragment in str(err.value)


def test_config_from_yaml_and_overrides(tmp_path):
    path = tmp_path / "rq.yaml"
    path.write_text("codebook_size: 64\nhidden_dims: [128, 64]\n")
    cfg = load_config(RQVAEConfig, path, ["variant=semantic", "single_levels=4"])
    assert (cfg.codebook_size, cfg.hidden_dims, cfg.variant, cfg.single_levels) == (64, (128, 64), "semantic", 4)
    with pytest.raises(ConfigError, match="unknown config key 'levels'"):
        load_config(RQVAEConfig, None, ["levels=3"])


def test_joint_training_loss_decreases_and_codes_have_paper_shapes():
    sem, col = clustered()
    result = train_rqvae(sem, col, SMALL)
    first, last = result.history[0], result.history[-1]
    assert len(result.history) == SMALL.epochs
    assert last["loss"] < 0.5 * first["loss"]
    assert last["recon_semantic"] < first["recon_semantic"]
    assert last["recon_collaborative"] < first["recon_collaborative"]
    codes = result.model.encode(sem, col)
    assert codes.shared.shape == (192, 2) and codes.semantic.shape == (192, 2)
    assert codes.collaborative.shape == (192, 2)
    assert codes.semantic_last_distances.shape == (192, 16)
    assert codes.shared.min() >= 0 and codes.shared.max() < 16
    # the codes are the argmin of the last-level distances
    assert np.array_equal(codes.semantic[:, -1], codes.semantic_last_distances.argmin(1))
    cos = result.model.reconstruction_cosine(sem, col)
    assert cos["semantic"] > 0.9 and cos["collaborative"] > 0.9


@pytest.mark.parametrize(("variant", "sem_levels", "col_levels"), [("semantic", 3, 0), ("collaborative", 0, 3)])
def test_single_embedding_variants(variant, sem_levels, col_levels):
    sem, col = clustered(96)
    cfg = dataclasses.replace(SMALL, variant=variant, epochs=3)
    model = train_rqvae(sem, col, cfg).model
    codes = model.encode(sem, col)
    assert codes.shared.shape == (96, 0)
    assert codes.semantic.shape == (96, sem_levels)
    assert codes.collaborative.shape == (96, col_levels)
    # the unused embedding has no encoder, and its values do not matter
    assert (model.collaborative_encoder is None) == (variant == "semantic")
    other = model.encode(sem * (variant == "semantic") + 7.0 * (variant != "semantic"),
                         col * (variant == "collaborative") + 7.0 * (variant != "collaborative"))
    used = codes.semantic if variant == "semantic" else codes.collaborative
    assert np.array_equal(used, other.semantic if variant == "semantic" else other.collaborative)


def test_straight_through_gradient_reaches_both_encoders():
    sem, col = clustered(64)
    model = RQVAE(SMALL, 24, 12).train()
    s, c = torch.from_numpy(sem), torch.from_numpy(col)
    with torch.no_grad():
        model(s, c)  # k-means init
    out = model(s, c)
    # only the reconstruction terms: every path to the encoders goes through the quantizers
    (out.recon_semantic + out.recon_collaborative).backward()
    for enc in (model.semantic_encoder, model.collaborative_encoder):
        assert enc[0].weight.grad is not None and enc[0].weight.grad.abs().sum() > 0
    for rq in (model.shared_quantizer, model.semantic_quantizer, model.collaborative_quantizer):
        assert all(vq.codebook.grad is None for vq in rq.levels)


def test_shared_and_specific_codes_reconstruct_the_latent():
    sem, col = clustered(64)
    model = train_rqvae(sem, col, dataclasses.replace(SMALL, epochs=2)).model
    s, c = torch.from_numpy(sem), torch.from_numpy(col)
    with torch.no_grad():
        out = model(s, c)
        v_s, v_c = model._inputs(s, c)
        z = torch.cat([model.semantic_encoder(v_s), model.collaborative_encoder(v_c)], 1)  # [B, 16]
        q_shared = model.shared_quantizer.lookup(out.shared.codes)  # [B, 16]
        q_sem = model.semantic_quantizer.lookup(out.semantic.codes)  # [B, 8]
        q_col = model.collaborative_quantizer.lookup(out.collaborative.codes)  # [B, 8]
        # z = shared part + [semantic specific; collaborative specific] + final residuals
        rest = torch.cat([out.semantic.residual, out.collaborative.residual], 1)
        assert torch.allclose(q_shared + torch.cat([q_sem, q_col], 1) + rest, z, atol=1e-4)
        # and the decoders read exactly that quantized latent
        assert torch.allclose(model.semantic_decoder(q_shared[:, :8] + q_sem), out.semantic_recon, atol=1e-4)


def test_sinkhorn_training_spreads_codes_over_a_skewed_catalog():
    rng = np.random.default_rng(0)
    # 90% of items in one tight blob: plain nearest-code assignment crowds a few codes
    sem = np.concatenate([rng.normal(size=(1, 24)) + 0.01 * rng.normal(size=(180, 24)),
                          rng.normal(size=(20, 24))]).astype(np.float32)
    col = rng.normal(size=(200, 12)).astype(np.float32)
    base = dataclasses.replace(SMALL, variant="semantic", single_levels=1, epochs=20, kmeans_init=False)
    usage = {}
    for mode in ("off", "all"):
        model = train_rqvae(sem, col, dataclasses.replace(base, sinkhorn=mode)).model
        model.train()  # Sinkhorn assigns only while training
        with torch.no_grad():
            codes = model(torch.from_numpy(sem), torch.from_numpy(col)).semantic.codes
        usage[mode] = len(torch.unique(codes))
    assert usage["all"] >= 12 > usage["off"]


def test_checkpoint_round_trip_gives_the_same_codes(tmp_path):
    sem, col = clustered(64)
    model = train_rqvae(sem, col, dataclasses.replace(SMALL, epochs=3)).model
    path = tmp_path / "rqvae.pt"
    save_checkpoint(model, path)
    loaded = load_checkpoint(path)
    assert loaded.cfg == model.cfg
    a, b = model.encode(sem, col), loaded.encode(sem, col)
    for name in ("shared", "semantic", "collaborative"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert np.allclose(a.semantic_last_distances, b.semantic_last_distances)
    assert all(bool(vq.initialized) for vq in loaded.shared_quantizer.levels)
    assert [p.name for p in tmp_path.iterdir()] == ["rqvae.pt"]  # no temp file left behind


def test_bad_checkpoint_and_bad_embeddings_are_one_line_errors(tmp_path):
    bad = tmp_path / "rqvae.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(GensarError, match="not a readable RQ-VAE checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(GensarError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    sem, col = clustered(16)
    with pytest.raises(GensarError, match="16 rows but collaborative embeddings have 15"):
        train_rqvae(sem, col[:15], SMALL)
    sem[3, 2] = np.nan
    with pytest.raises(GensarError, match="semantic embeddings contain NaN"):
        train_rqvae(sem, col, SMALL)


@pytest.mark.parametrize("name", ["ids-joint.yaml", "ids-semantic.yaml", "ids-collaborative.yaml"])
def test_example_configs_load(name):
    from pathlib import Path

    from gensar.ids.stage import IdsConfig

    cfg = load_config(IdsConfig, Path(__file__).resolve().parents[1] / "configs" / name)
    assert cfg.rqvae.variant == name.removeprefix("ids-").removesuffix(".yaml")
