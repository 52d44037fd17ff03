"""Which directories gensar may replace, and which outputs would destroy an input.

Every directory a command creates carries a marker file, ``.gensar-run.json`` (``{"written_by":
"gensar", "kind": ..., "version": ...}``). ``--overwrite`` replaces only a directory that is *ours*;
anything else that exists and is not empty is refused even with ``--overwrite``, so a mistyped
``--out`` can never delete a user's files.

Directories written before the marker existed are recognised as ours by content, with rules
narrow enough that a user's own directory does not match by accident: each needs a file whose
*contents* only gensar writes, not just a file name:

- a pipeline run: ``stages.json`` (a JSON object whose keys are pipeline stages) and ``pipeline.yaml``;
- prepared data: ``manifest.json``, a JSON object with ``gensar_version`` and ``schema_version``;
- a synthetic world: ``world.json`` with ``"generator": "gensar synth"``;
- a model: ``gensar_model.json`` with a ``config`` object, and ``train_state.json``;
- IDs: ``ids_report.json`` with a ``variant``, and ``item_ids.json``;
- a training checkpoint (``MODEL.ckpt``): ``run_config.json`` with ``config`` and ``fingerprint``;
- SASRec: ``metrics.json`` with ``protocol`` and ``n_train_sequences``, and ``model.pt``;
- a baseline: only ``metrics.json`` (and ``cache/``), with ``method`` a baseline name and ``data``;
- a report: ``report.json`` with ``split`` and ``methods``, and ``report.md``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gensar import __version__
from gensar.errors import OutputError

MARKER = ".gensar-run.json"
_STAGES = {"data", "ids", "model", "evaluate"}
_BASELINES = {"popularity", "bm25", "dense", "match-popularity", "content"}


def marker_text(kind: str) -> str:
    return json.dumps({"written_by": "gensar", "kind": kind, "version": __version__}) + "\n"


def write_marker(directory: Path, kind: str) -> None:
    """Mark ``directory`` (which this process just created) as ours."""
    (directory / MARKER).write_text(marker_text(kind), encoding="utf-8")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def is_ours(directory: Path) -> bool:
    """Whether gensar wrote ``directory`` (its marker, or one of the legacy rules above)."""
    marker = _json(directory / MARKER)
    if isinstance(marker, dict) and marker.get("written_by") == "gensar":
        return True
    stages = _json(directory / "stages.json")
    if isinstance(stages, dict) and set(stages) <= _STAGES and (directory / "pipeline.yaml").is_file():
        return True
    manifest = _json(directory / "manifest.json")
    if isinstance(manifest, dict) and "gensar_version" in manifest and "schema_version" in manifest:
        return True
    world = _json(directory / "world.json")
    if isinstance(world, dict) and world.get("generator") == "gensar synth":
        return True
    model = _json(directory / "gensar_model.json")
    if isinstance(model, dict) and isinstance(model.get("config"), dict) \
            and (directory / "train_state.json").is_file():
        return True
    ids = _json(directory / "ids_report.json")
    if isinstance(ids, dict) and "variant" in ids and (directory / "item_ids.json").is_file():
        return True
    ckpt = _json(directory / "run_config.json")
    if isinstance(ckpt, dict) and {"config", "fingerprint"} <= set(ckpt):
        return True
    metrics = _json(directory / "metrics.json")
    if isinstance(metrics, dict) and {"protocol", "n_train_sequences"} <= set(metrics) \
            and (directory / "model.pt").is_file():
        return True
    if isinstance(metrics, dict) and metrics.get("method") in _BASELINES and "data" in metrics \
            and {p.name for p in directory.iterdir()} <= {"metrics.json", "cache"}:
        return True
    report = _json(directory / "report.json")
    return isinstance(report, dict) and {"split", "methods"} <= set(report) \
        and (directory / "report.md").is_file()


def refuse_output_over_input(outputs: Iterable[tuple[str, str | Path]],
                             inputs: Iterable[tuple[str, str | Path]]) -> None:
    """Refuse when an output path is, contains, or lies inside an input path.

    ``outputs`` and ``inputs`` are (flag or role, path) pairs, so the message names both. Paths
    are compared resolved (symlinks, ``..``), so ``--out SRC/..`` is caught as a parent of SRC.
    """
    ins = [(name, Path(p), Path(p).resolve()) for name, p in inputs]
    for out_name, out_path in outputs:
        out = Path(out_path).resolve()
        for in_name, in_path, inp in ins:
            if out == inp:
                how = "is"
            elif out in inp.parents:
                how = "contains"
            elif inp in out.parents:
                how = "lies inside"
            else:
                continue
            raise OutputError(f"{out_name} {out_path} {how} the input {in_name} {in_path}; "
                              "writing it would destroy the input (choose another output path)")
