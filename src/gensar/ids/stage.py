"""The ID stage: item embeddings -> RQ-VAE -> semantic and collaborative IDs (``gensar ids``).

RUN_DIR (written atomically: complete or absent)
    semantic_emb.npy        float32 [n_items, D_s], row i = PreparedData.items row i
    collaborative_emb.npy   float32 [n_items, D_c]
    rqvae.pt                RQ-VAE weights + config (``gensar.ids.rqvae.load_checkpoint``)
    item_ids.json           {item_id: {"semantic": [tokens], "collaborative": [tokens]}}, items order
    ids_report.json         collision rates before/after resolution, code usage, ID lengths, losses
    config.yaml             the full resolved IdsConfig

Precomputed embeddings skip the encoders: ``--set semantic_emb=PATH.npy`` and/or
``--set collaborative_emb=PATH.npy`` (rows in items order).

With cold items (``gensar prepare --cold-items``) the stage sees the warm catalog only
(``PreparedData.training_view``): embeddings, the RQ-VAE and identifiers cover the items before the
cold ones; those get identifiers after training (``gensar.ids.cold_items``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gensar.config import require, to_yaml
from gensar.data.prepared import PreparedData
from gensar.embed.sasrec import SASRecConfig
from gensar.embed.semantic import SemanticConfig
from gensar.errors import InputError
from gensar.ids.assign import AssignConfig, assign_ids
from gensar.ids.rqvae import RQVAEConfig, save_checkpoint, train_rqvae
from gensar.io import atomic_dir, atomic_write_json, atomic_write_text, check_output_dir


@dataclass(frozen=True)
class IdsConfig:
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)
    rqvae: RQVAEConfig = field(default_factory=RQVAEConfig)
    assign: AssignConfig = field(default_factory=AssignConfig)
    semantic_emb: str | None = None  # precomputed semantic embeddings (.npy), skips the text encoder
    collaborative_emb: str | None = None  # precomputed collaborative embeddings (.npy), skips SASRec
    cache_dir: str | None = None  # text-embedding cache handed to encode_items
    progress: bool = True  # tqdm bars on stderr

    def validate(self) -> None:
        for key in ("semantic_emb", "collaborative_emb"):
            path = getattr(self, key)
            require(path is None or path.endswith(".npy"), key, f"must name a .npy file, got {path!r}")


def load_embeddings(path: str | Path, n_items: int, field_name: str) -> np.ndarray:
    """A precomputed [n_items, D] float matrix; anything else is an InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path, field=field_name)
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise InputError(f"not a readable .npy array ({err})", path=path, field=field_name) from None
    if x.ndim != 2 or x.shape[1] == 0 or not np.issubdtype(x.dtype, np.number):
        raise InputError(f"expected a numeric [items, dim] matrix, got shape {x.shape} dtype {x.dtype}",
                         path=path, field=field_name)
    if x.shape[0] != n_items:
        raise InputError(f"has {x.shape[0]} rows but the prepared data has {n_items} items",
                         path=path, field=field_name)
    if not np.isfinite(x).all():
        raise InputError("contains NaN or infinite values", path=path, field=field_name)
    return x.astype(np.float32)


def item_embeddings(data: PreparedData, cfg: IdsConfig) -> tuple[np.ndarray, np.ndarray]:
    """Semantic [N, D_s] and collaborative [N, D_c] embeddings: precomputed, else computed."""
    n = len(data.items)
    if cfg.semantic_emb is not None:
        semantic = load_embeddings(cfg.semantic_emb, n, "semantic_emb")
    else:
        from gensar.embed.semantic import category_texts, encode_items, mix_category

        cache = Path(cfg.cache_dir) if cfg.cache_dir is not None else None
        semantic = np.asarray(encode_items(data.item_texts, cfg.semantic, cache), dtype=np.float32)
        if cfg.semantic.category_weight > 0:
            category = encode_items(category_texts(data.items), cfg.semantic, cache)
            semantic = mix_category(semantic, category, cfg.semantic.category_weight, cfg.semantic.normalize)
    if cfg.collaborative_emb is not None:
        collaborative = load_embeddings(cfg.collaborative_emb, n, "collaborative_emb")
    else:
        from gensar.embed.collaborative import collaborative_embeddings

        collaborative = np.asarray(collaborative_embeddings(data, cfg.sasrec), dtype=np.float32)
    return semantic, collaborative


def build_ids(data: PreparedData, cfg: IdsConfig, out: str | Path, overwrite: bool = False) -> dict:
    """Embeddings -> RQ-VAE -> unique IDs, written atomically into ``out``; returns the report."""
    out = check_output_dir(out, overwrite)  # fail before any training
    data = data.training_view()  # no cold item: they are added after training
    semantic, collaborative = item_embeddings(data, cfg)

    result = train_rqvae(semantic, collaborative, cfg.rqvae, progress=cfg.progress)
    model = result.model
    codes = model.encode(semantic, collaborative)
    assignment = assign_ids(data.items["item_id"].tolist(), codes, cfg.rqvae.variant, cfg.rqvae.codebook_size,
                            cfg.assign)
    report = {
        "variant": cfg.rqvae.variant,
        **assignment.report(),
        "semantic_dim": int(semantic.shape[1]),
        "collaborative_dim": int(collaborative.shape[1]),
        "train_seconds": round(result.seconds, 3),
        "epochs": cfg.rqvae.epochs,
        "final_losses": result.final_losses,
        "reconstruction_cosine": model.reconstruction_cosine(semantic, collaborative),
    }
    with atomic_dir(out, overwrite=overwrite, kind="ids") as tmp:
        np.save(tmp / "semantic_emb.npy", semantic)
        np.save(tmp / "collaborative_emb.npy", collaborative)
        save_checkpoint(model, tmp / "rqvae.pt")
        atomic_write_json(tmp / "item_ids.json", assignment.ids.to_json())
        atomic_write_json(tmp / "ids_report.json", report)
        atomic_write_text(tmp / "config.yaml", to_yaml(cfg))
    return report
