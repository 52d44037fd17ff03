"""Dataset loaders: read a source in one of the supported formats into a canonical ``RawDataset``.

Formats (one module each): ``canonical`` (gensar's own files, ``gensar.data.canonical``),
``recbole`` (atomic files, incl. the UniSRec sequence variant), ``amazon`` (Amazon Reviews
2014/2018 JSON lines), ``kuaisar`` (KuaiSAR CSVs). ``format="auto"`` detects the format from
the files present, checking canonical, kuaisar, recbole, amazon in that order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from gensar.data.schema import RawDataset
from gensar.errors import GensarError, InputError

Format = Literal["auto", "canonical", "recbole", "amazon", "kuaisar"]
FORMATS: tuple[str, ...] = ("canonical", "recbole", "amazon", "kuaisar")

# what auto-detection looks for, in the order it looks (also the error message)
_LOOKED_FOR = (
    "canonical: a directory with items.* and events.* (jsonl/csv/parquet, see gensar.data.canonical)",
    "kuaisar: a directory with item_features.csv and rec_inter.csv and/or src_inter.csv",
    "recbole: NAME.inter or NAME.train/valid/test.inter (a directory, a .inter file or DIR/NAME)",
    "amazon: a directory with one meta_*.json[l][.gz] and one reviews *.json[l][.gz]",
)


def _is_canonical(source: Path) -> bool:
    try:
        from gensar.data.canonical import is_canonical
    except ImportError:  # the canonical reader is optional for detection
        return False
    return bool(is_canonical(source))


def detect_format(source: str | Path) -> str:
    """The format of ``source``: one of ``FORMATS``; ``InputError`` listing what was looked for."""
    from gensar.data.loaders.amazon import JSON_SUFFIXES, find_amazon_files, looks_like_amazon
    from gensar.data.loaders.kuaisar import looks_like_kuaisar
    from gensar.data.loaders.recbole import find_recbole_files, looks_like_recbole

    path = Path(source)
    if path.is_dir() and (path / "manifest.json").is_file() and (path / "examples.parquet").is_file():
        raise InputError("is a prepared data directory (the output of `gensar prepare`), not a raw dataset: "
                         "pass it to `gensar ids`/`train`/`baseline`, or prepare the original source",
                         path=path)
    if _is_canonical(path):
        return "canonical"
    if looks_like_kuaisar(path):
        return "kuaisar"
    if looks_like_recbole(path):
        return "recbole"
    if looks_like_amazon(path):
        return "amazon"
    if not path.exists():
        raise InputError("does not exist (nor is it a RecBole DIR/NAME prefix)", path=path)
    # a near miss (e.g. two reviews files) deserves its own reason, not just the list
    near: list[str] = []
    names = [f.name.lower() for f in path.iterdir()] if path.is_dir() else [path.name.lower()]
    for fmt, present, find in (
        ("recbole", any(n.endswith(".inter") for n in names), find_recbole_files),
        ("amazon", any(n.endswith(JSON_SUFFIXES) for n in names), find_amazon_files),
    ):
        if present:
            try:
                find(path)
            except InputError as err:
                near.append(f"{fmt}: {err.message}")
    hint = f" (near misses: {'; '.join(near)})" if near else ""
    raise InputError(
        "cannot detect the dataset format; looked for " + "; ".join(_LOOKED_FOR) + hint, path=path
    )


def load_dataset(source: str | Path, format: Format = "auto") -> RawDataset:
    """Load ``source`` as canonical items and events (validated with ``schema.validate``)."""
    if format == "auto":
        format = detect_format(source)  # type: ignore[assignment]
    if format == "canonical":
        from gensar.data.canonical import read_canonical

        return read_canonical(source)
    if format == "recbole":
        from gensar.data.loaders.recbole import load_recbole

        return load_recbole(source)
    if format == "amazon":
        from gensar.data.loaders.amazon import load_amazon

        return load_amazon(source)
    if format == "kuaisar":
        from gensar.data.loaders.kuaisar import load_kuaisar

        return load_kuaisar(source)
    raise GensarError(f"unknown dataset format '{format}' (choose from auto, {', '.join(FORMATS)})")


__all__ = ["FORMATS", "Format", "detect_format", "load_dataset"]
