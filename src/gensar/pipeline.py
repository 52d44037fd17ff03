"""``gensar pipeline`` and ``gensar demo``: prepare -> ids -> train -> evaluate in one run directory.

RUN_DIR/
  data/          prepared data (``gensar prepare``)
  ids/           embeddings, RQ-VAE, item_ids.json (``gensar ids``)
  model/         the trained T5 + tokenizer (``gensar train``); model.ckpt/ while training
  cold/          only with ``data.prepare.cold_items`` > 0: identifiers of the cold items, given after
                 training as ``gensar add-items`` gives them (``gensar.ids.cold_items``)
  hybrid/        the hybrid ranker's retrievers and fusion, fitted on the valid split (``gensar.hybrid``)
  metrics.json   evaluation on the saved candidate lists and over the whole catalog: the hybrid
                 ranker at the top level (what ``serve`` answers), the generative model alone under
                 ``generative``
  pipeline.yaml  the resolved config; stages.json: each finished stage's fingerprint
  model.started  the fingerprint of the last training started (to resume only that one)
  .gensar-run.json  marks the directory as a gensar run (``--out`` refuses any other non-empty one)
  .gensar.lock   held while a pipeline writes the run (a second one exits 2 naming its pid)

A stage is skipped on rerun when its fingerprint (its own config, plus the fingerprints of the
stages it reads, plus a hash of the source files' contents) matches the recorded one; changing a
stage's config reruns it and everything after it. An interrupted training resumes from its
last checkpoint when its fingerprint is unchanged, and starts over otherwise.

``refresh.previous`` (``--refresh-from RUN0``, ``gensar.refresh``): the ids stage keeps RUN0's
identifiers instead of building new ones, and the model stage starts from RUN0's weights.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from gensar.config import to_dict, to_yaml
from gensar.data.prepare import PrepareConfig
from gensar.data.synth import SynthConfig
from gensar.errors import GensarError
from gensar import locks
from gensar.errors import OutputError
from gensar.eval.config import EvalConfig
from gensar.hybrid.config import HybridConfig
from gensar.ids.cold_start import ColdStartConfig
from gensar.ids.stage import IdsConfig
from gensar.io import atomic_write_json, atomic_write_text, remove_stale_temporaries
from gensar.model.train_config import ModelRunConfig
from gensar.ownership import MARKER, is_ours, refuse_output_over_input, write_marker
from gensar.refresh import RefreshConfig

STAGES = ("data", "ids", "model", "cold", "hybrid", "evaluate")
COLD_START = ColdStartConfig()  # the cold stage's collaborative embedding: add-items' default (ridge)
LOCK_NAME = ".gensar.lock"  # inside the run directory: one pipeline writes a run at a time


@dataclass(frozen=True)
class DataStageConfig:
    source: str = "synthetic"  # a dataset path (relative to the current directory), or "synthetic"
    format: Literal["auto", "canonical", "recbole", "amazon", "kuaisar"] = "auto"
    synth: SynthConfig = field(default_factory=SynthConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)


@dataclass(frozen=True)
class PipelineConfig:
    data: DataStageConfig = field(default_factory=DataStageConfig)
    ids: IdsConfig = field(default_factory=IdsConfig)
    model: ModelRunConfig = field(default_factory=ModelRunConfig)
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    refresh: RefreshConfig = field(default_factory=RefreshConfig)  # gensar.refresh (--refresh-from)


def active_stages(cfg: PipelineConfig) -> tuple[str, ...]:
    """The stages ``cfg`` runs: all but ``cold`` unless the data has cold items (so a run without
    them keeps the stages, and the fingerprints, it always had)."""
    return tuple(s for s in STAGES if s != "cold" or cfg.data.prepare.cold_items > 0)


def builtin_config(name: str) -> Path:
    """Path of a config shipped with the package (``gensar/configs/NAME.yaml``)."""
    path = Path(str(resources.files("gensar") / "configs" / f"{name}.yaml"))
    if not path.is_file():
        raise GensarError(f"no built-in config '{name}'")
    return path


def run_pipeline(cfg: PipelineConfig, run_dir: str | Path, force: bool = False,
                 reuse: str | Path | None = None) -> dict:
    """Run (or resume) every stage into ``run_dir``; returns the metrics.

    ``reuse``: another run directory; a stage it finished with the same fingerprint is copied from
    there instead of recomputed (a sweep over model settings builds its data and IDs once).
    """
    run = Path(run_dir)
    donor = Path(reuse) if reuse is not None else None
    if donor is not None and not (donor / "stages.json").is_file():
        raise GensarError(f"{donor}: not a pipeline run directory (no stages.json)")
    inputs = [("--reuse", donor)] if donor is not None else []
    if cfg.data.source != "synthetic":
        inputs.append(("data.source", cfg.data.source))
    if cfg.refresh.enabled:
        inputs.append(("--refresh-from", cfg.refresh.previous))
    refuse_output_over_input([("--out", run)], inputs)
    if cfg.refresh.enabled:
        _check_refresh(cfg)
    created = claim_run_dir(run)
    try:
        return _run_stages(cfg, run, force, donor)
    except BaseException:
        if created and not (run / "stages.json").exists():
            shutil.rmtree(run, ignore_errors=True)  # nothing finished: leave nothing behind
        raise
    finally:
        locks.release(run / LOCK_NAME)


def _check_refresh(cfg: PipelineConfig) -> None:
    from gensar.config import load_config
    from gensar.refresh import check_previous

    previous = Path(cfg.refresh.previous)
    if not (previous / "pipeline.yaml").is_file():
        raise GensarError(f"{previous}: not a pipeline run directory (no pipeline.yaml) to refresh from")
    check_previous(previous, cfg.ids, cfg.model, load_config(PipelineConfig, previous / "pipeline.yaml", []))


def claim_run_dir(run: Path) -> bool:
    """Make ``run`` ours and lock it for this process; whether this call created it.

    An existing file, or an existing non-empty directory that gensar did not write (see
    ``gensar.ownership.is_ours``), is refused: the stages replace ``data/``, ``ids/``, ``model/``
    and ``metrics.json`` inside it. The lock is a file inside the run directory (which, unlike
    a stage's output, is never replaced as a whole).
    """
    if run.exists() and not run.is_dir():
        raise OutputError(f"{run}: exists and is not a directory (--out names a run directory)")
    # the lock file alone: another pipeline is creating this run (the lock then names it)
    if run.is_dir() and any(p.name != LOCK_NAME for p in run.iterdir()) and not is_ours(run):
        raise OutputError(f"{run}: exists, is not empty and is not a gensar run directory (no {MARKER}); "
                          "refusing to write into it (choose a new or empty directory)")
    created = not run.exists()
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{run}: cannot create the run directory: {err.strerror or err}") from None
    try:
        locks.hold(run / LOCK_NAME, run)
    except OSError as err:
        raise OutputError(f"{run}: cannot lock the run directory: {err.strerror or err}") from None
    if not (run / MARKER).exists():
        try:
            write_marker(run, "pipeline")
        except OSError as err:
            locks.release(run / LOCK_NAME)
            if created:
                shutil.rmtree(run, ignore_errors=True)
            raise OutputError(f"{run}: cannot write: {err.strerror or err}") from None
    # a killed run's half-written stages and files
    for name in ("data", "ids", "model", "model.ckpt", "cold", "hybrid"):
        remove_stale_temporaries(run / name)
    for name in ("pipeline.yaml", "stages.json", "metrics.json", "model.started"):
        remove_stale_temporaries(run / name, files=True)
    return created


def _run_stages(cfg: PipelineConfig, run: Path, force: bool, donor: Path | None) -> dict:
    donor_done = _read_stages(donor) if donor is not None else {}
    atomic_write_text(run / "pipeline.yaml", to_yaml(cfg))
    done = _read_stages(run)
    upstream = ""
    timings = {}
    stages = active_stages(cfg)
    if "cold" not in stages and (run / "cold").is_dir() and is_ours(run / "cold"):
        shutil.rmtree(run / "cold")  # an earlier run's cold stage: this data has no cold items
    for stage in stages:
        fp = _fingerprint(stage, cfg, upstream)
        upstream = fp
        if not force and done.get(stage) == fp and _stage_output(run, stage).exists():
            print(f"[pipeline] {stage}: up to date, skipped")
            continue
        if not force and donor_done.get(stage) == fp and _stage_output(donor, stage).exists():
            _copy_stage(donor, run, stage)
            done = _mark_done(run, done, stage, fp)
            print(f"[pipeline] {stage}: copied from {donor}")
            continue
        print(f"[pipeline] {stage}: running")
        start = time.perf_counter()
        _run_stage(stage, cfg, run, fp)
        timings[stage] = round(time.perf_counter() - start, 1)
        done = _mark_done(run, done, stage, fp)
        print(f"[pipeline] {stage}: done in {timings[stage]} s")
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    if timings:
        metrics.setdefault("stage_seconds", {}).update(timings)
        atomic_write_json(run / "metrics.json", metrics)
    return metrics


def _stage_output(run: Path, stage: str) -> Path:
    return {"data": run / "data" / "manifest.json", "ids": run / "ids" / "item_ids.json",
            "model": run / "model" / "config.json", "cold": run / "cold" / "item_ids.json",
            "hybrid": run / "hybrid" / "config.yaml", "evaluate": run / "metrics.json"}[stage]


def _mark_done(run: Path, done: dict[str, str], stage: str, fp: str) -> dict[str, str]:
    """Record ``stage`` as finished with fingerprint ``fp``; every later stage becomes stale."""
    done = {k: v for k, v in done.items() if STAGES.index(k) < STAGES.index(stage)}
    done[stage] = fp
    atomic_write_json(run / "stages.json", done)
    return done


def _copy_stage(donor: Path, run: Path, stage: str) -> None:
    """Copy a finished stage's output from ``donor`` (via a temporary name, then rename)."""
    src = _stage_output(donor, stage)
    if stage == "evaluate":
        atomic_write_text(run / src.name, src.read_text(encoding="utf-8"))
        return
    name = src.parent.name  # data/, ids/, model/, cold/, hybrid/
    tmp = run / f".{name}.copy"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(donor / name, tmp)
    shutil.rmtree(run / name, ignore_errors=True)
    tmp.rename(run / name)


def _run_stage(stage: str, cfg: PipelineConfig, run: Path, fp: str) -> None:
    if stage == "data":
        from gensar.data.prepare import prepare

        if cfg.data.source == "synthetic":
            from gensar.data.synth import generate_world

            raw = generate_world(cfg.data.synth)
        else:
            from gensar.data.loaders import load_dataset

            raw = load_dataset(cfg.data.source, cfg.data.format)
        prepare(raw, cfg.data.prepare, progress=True).save(run / "data", overwrite=True)
    elif stage == "ids":
        from gensar.data.prepared import PreparedData
        from gensar.ids.stage import build_ids

        if cfg.refresh.enabled:
            from gensar.ids.refresh import refresh_ids
            from gensar.refresh import served_ids

            previous = Path(cfg.refresh.previous)
            refresh_ids(PreparedData.load(run / "data"), previous / "ids", served_ids(previous), run / "ids",
                        COLD_START, overwrite=True)
        else:
            build_ids(PreparedData.load(run / "data"), cfg.ids, run / "ids", overwrite=True)
    elif stage == "model":
        from gensar.model.checkpoint import checkpoint_dir
        from gensar.model.train import train

        # Resume only the training this very stage started: same model config, data and IDs.
        started = run / "model.started"
        interrupted = (checkpoint_dir(run / "model") / "run_config.json").is_file()
        resume = interrupted and started.is_file() and started.read_text(encoding="utf-8") == fp
        if interrupted and not resume:
            print("[pipeline] model: config, data or IDs changed since the interrupted training; starting over")
        atomic_write_text(started, fp)
        if cfg.refresh.enabled:
            from gensar.refresh import refresh_model_config, replay_of

            previous = Path(cfg.refresh.previous)
            replay = replay_of(previous, run / "data", cfg.refresh) if cfg.refresh.replays() else None
            train(run / "data", run / "ids", run / "model", refresh_model_config(cfg.model, cfg.refresh),
                  resume=resume, overwrite=True, init_from=previous / "model", replay=replay)
        else:
            train(run / "data", run / "ids", run / "model", cfg.model, resume=resume, overwrite=True)
    elif stage == "cold":
        from gensar.data.prepared import PreparedData
        from gensar.ids.cold_items import COLD_DIR, build_cold_ids
        from gensar.ids.item_ids import IdMaps

        trained = IdMaps.load(run / "model" / "item_ids.json")  # the identifiers the model was trained with
        build_cold_ids(PreparedData.load(run / "data"), run / "ids", trained, run / COLD_DIR, COLD_START,
                       overwrite=True)
    elif stage == "hybrid":
        from gensar.hybrid.stage import fit_hybrid, skip_hybrid

        if cfg.hybrid.enabled:
            fit_hybrid(run, cfg.hybrid, cfg.ids.sasrec, cfg.eval.max_examples)
        else:
            skip_hybrid(run, cfg.hybrid)
    else:
        atomic_write_json(run / "metrics.json", _evaluate(cfg, run))


def _evaluate(cfg: PipelineConfig, run: Path) -> dict:
    """metrics.json: the served ranker's figures at the top level, the generative model's alone
    under ``generative`` (both protocols); equal when the hybrid is off."""
    from gensar.eval.protocol import evaluate_run

    generative: dict = {split: evaluate_run(run, split, cfg.eval) for split in cfg.eval.splits}
    if cfg.eval.full_ranking:
        generative["full_ranking"] = {split: evaluate_run(run, split, cfg.eval, full_ranking=True)
                                      for split in cfg.eval.splits}
    if not cfg.hybrid.enabled:
        return {"method": "gensar", "ranker": "beam", **generative, "generative": generative}
    from gensar.hybrid.stage import baseline_metrics, evaluate_hybrid

    hybrid = {split: evaluate_hybrid(run, cfg.hybrid, split, cfg.eval.max_examples) for split in cfg.eval.splits}
    return {"method": "gensar", "ranker": "hybrid",
            **{split: hybrid[split]["sampled"] for split in cfg.eval.splits},
            "full_ranking": {split: hybrid[split]["full"] for split in cfg.eval.splits},
            "generative": generative,
            "baselines": baseline_metrics(run, cfg.eval.splits, cfg.eval.max_examples) if cfg.eval.baselines else {}}


def _fingerprint(stage: str, cfg: PipelineConfig, upstream: str) -> str:
    own = {"data": cfg.data, "ids": cfg.ids, "model": cfg.model, "cold": COLD_START, "hybrid": cfg.hybrid,
           "evaluate": cfg.eval}[stage]
    payload = {"stage": stage, "config": to_dict(own), "upstream": upstream}
    if stage == "hybrid":  # its SASRec retriever trains with the ID stage's SASRec settings
        payload["sasrec"] = to_dict(cfg.ids.sasrec)
    if stage in ("ids", "model") and cfg.refresh.enabled:  # what they carry over from the previous run
        from gensar.refresh import previous_state

        carried = to_dict(cfg.refresh)
        for share in ("replay", "replay_items"):  # the model's alone; 1 trains as runs before the options
            if stage == "ids" or getattr(cfg.refresh, share) == 1:
                carried.pop(share)
        payload["refresh"] = {**carried, "state": previous_state(Path(cfg.refresh.previous))}
    if stage == "data" and cfg.data.source != "synthetic":
        payload["source_files"] = _source_digests(Path(cfg.data.source))
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _source_digests(source: Path) -> list[tuple[str, str]]:
    """(path inside the source, sha256) of each source file.

    Contents, not mtimes: a source re-provisioned with the same bytes and new mtimes keeps its
    cached stages (``data.source`` itself is part of the config, so a moved source reruns).
    """
    if not source.exists():
        raise GensarError(f"{source}: data source not found")
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    out = []
    for path in files:
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        out.append((path.name if path == source else path.relative_to(source).as_posix(), digest))
    return out


def _read_stages(run: Path) -> dict[str, str]:
    path = run / "stages.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
