"""Multi-task training of the generative model, with atomic checkpoints, exact resume and DDP.

This module is the loop; its configs are in ``train_config``, checkpoints and RNG states in
``checkpoint``, the ``torchrun`` environment in ``distributed``, batching in ``batching``.

Directories, for ``--out MODEL_DIR``:

``MODEL_DIR.ckpt/``  while training (removed when the run finishes):
    ``run_config.json`` (the ``ModelRunConfig`` and a fingerprint of the data and IDs),
    ``tokenizer/`` (trained once, reused on resume), ``checkpoint.pt`` (written to a temporary
    file, fsync'ed, then ``os.replace``'d: a kill leaves the previous checkpoint intact).
``MODEL_DIR/``  appears only at the end, atomically: the best model (``save_pretrained``), its
    tokenizer, ``train_state.json`` (validation metrics per epoch, timings), ``gensar_model.json``
    (the run config, which the decoder needs for the prompt style) and ``item_ids.json``.

A checkpoint holds the model, optimizer, scheduler, the best weights so far, the RNG states
(python, numpy, torch; one set per rank), the epoch and the number of steps done in it. Each
epoch's sample order is a pure function of (seed, epoch) (``TaskMix.epoch_plan``), so resuming
replays the rest of the epoch exactly: an interrupted and resumed run ends with the same weights
as an uninterrupted one (tests/test_train.py kills one with SIGKILL to check).

Data parallel: under ``torchrun`` each of the W processes takes every W-th sample of each global
batch of ``W * batch_size`` (the epoch's tail that does not divide by W is dropped, as
DistributedSampler with drop_last does), gradients are averaged by DDP (gloo on CPU, NCCL on
GPU), validation is sharded the same way and gathered, and only rank 0 writes files.

Validation (each ``eval_every`` epochs): rec and search examples of the valid split (a seeded
subsample of ``eval_examples`` per behavior) ranked by candidate likelihood
(``gensar.model.scoring``); early stopping watches ``early_stop_metric``, the mean over both
behaviors.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gensar.config import to_dict
from gensar.data.prepared import PreparedData
from gensar.data.schema import BEHAVIORS, REC, SEARCH
from gensar.errors import GensarError
from gensar.ids.item_ids import IdMaps
from gensar.io import atomic_dir, atomic_write_json
from gensar.model.backbone import build_backbone, count_parameters, load_pretrained_backbone, save_model
from gensar.model.batching import EncodedSamples, bucket_key, collate, length_bucketed
from gensar.model.checkpoint import (
    Progress,
    checkpoint_dir,
    restore_checkpoint,
    save_checkpoint,
)
from gensar.model.distributed import (
    DistEnv,
    barrier,
    gather_concat,
    mean_over_ranks,
    select_device,
    shard_report,
)
from gensar.model.scoring import behavior_metrics, rank_examples
from gensar.model.encoder import SampleEncoder
from gensar.model.prompts import MARKER_TOKENS, tokenizer_corpus
from gensar.model.samples import (
    KnownSamples,
    Sample,
    TaskMix,
    build_samples,
    example_samples,
    title_query_share,
)
from gensar.model.task_config import TaskConfig
from gensar.model.tokenizer import build_tokenizer, load_tokenizer
from gensar.model.train_start import check_start, run_fingerprint
from gensar.model.warm_start import warm_start
from gensar.model.train_config import ModelRunConfig, TrainConfig
from gensar.runtime import configure_threads, seed_everything
from gensar.train_utils import adamw
from gensar.ownership import write_marker

__all__ = ["TrainResult", "train", "trained_behaviors"]


@dataclass(frozen=True)
class TrainResult:
    out: Path
    history: list[dict[str, float]]
    best_epoch: int | None
    best_value: float | None
    stopped_early: bool


# ---- the run ---------------------------------------------------------------------------------------
def train(
    data_dir: str | Path,
    ids_path: str | Path,
    out: str | Path,
    cfg: ModelRunConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
    init_from: str | Path | None = None,
    replay: KnownSamples | None = None,
) -> TrainResult:
    """Train on a prepared data dir with the item IDs at ``ids_path``; write the best model to ``out``.

    ``cfg`` None means the defaults, or, with ``resume``, the interrupted run's config.
    ``init_from``: a trained model directory whose weights the model starts from
    (``gensar.model.warm_start``) instead of a fresh initialization. ``replay``: what ``init_from``
    already learned, drawn at a share of its weight (``gensar.refresh``).
    """
    env = DistEnv.from_env()
    out, work = Path(out), checkpoint_dir(out)
    data = PreparedData.load(data_dir).training_view()  # without cold items (gensar.data.cold)
    ids = IdMaps.load(ids_path)
    ids.require_items(data.items["item_id"].tolist(), ids_path)
    fingerprint = run_fingerprint(data, ids)
    if init_from is not None:
        fingerprint["init_from"] = str(init_from)
    if replay is not None:
        fingerprint["replay"] = replay.fingerprint()
    cfg = check_start(out, work, cfg, fingerprint, resume, overwrite, env.is_main)
    device = select_device(cfg.train.device, env)
    cfg.train.check_device(device)
    if cfg.train.threads > 0:
        configure_threads(cfg.train.threads)
    if env.distributed:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        barrier(env)  # every rank has checked the directories before rank 0 touches them
        if env.is_main and not resume:
            shutil.rmtree(work, ignore_errors=True)  # check_start made sure it is ours
            work.mkdir(parents=True)
            write_marker(work, "checkpoint")
            atomic_write_json(work / "run_config.json", {"config": to_dict(cfg), "fingerprint": fingerprint})
        return _run(data, ids, out, work, cfg, resume, overwrite, env, device, init_from, replay)
    finally:
        if env.distributed:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run(
    data: PreparedData,
    ids: IdMaps,
    out: Path,
    work: Path,
    cfg: ModelRunConfig,
    resume: bool,
    overwrite: bool,
    env: DistEnv,
    device: torch.device,
    init_from: str | Path | None = None,
    replay: KnownSamples | None = None,
) -> TrainResult:
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    tc = cfg.train
    added = list(MARKER_TOKENS) + ids.tokens()
    seed_everything(tc.seed)
    has_tokenizer = (work / "tokenizer" / "tokenizer.json").is_file()  # a resumed run keeps its vocabulary
    if cfg.backbone.pretrained is not None:
        model, tokenizer = load_pretrained_backbone(cfg.backbone, added)
        if env.is_main and not has_tokenizer:
            with atomic_dir(work / "tokenizer", overwrite=True, kind="tokenizer") as tmp:
                tokenizer.save_pretrained(str(tmp))
    else:
        if env.is_main and not has_tokenizer:
            corpus = tokenizer_corpus(data, cfg.tasks.prompt_style)
            with atomic_dir(work / "tokenizer", overwrite=True, kind="tokenizer") as tmp:
                build_tokenizer(corpus, added, cfg.tokenizer).save_pretrained(str(tmp))
        barrier(env)
        tokenizer = load_tokenizer(work / "tokenizer")
        seed_everything(tc.seed)  # the init must not depend on what ran before
        model = build_backbone(cfg.backbone, tokenizer)
    warm = None
    if init_from is not None and not (resume and (work / "checkpoint.pt").is_file()):
        warm = warm_start(model, tokenizer, init_from)  # a resumed run's checkpoint holds the weights
    model.config.use_cache = False
    model.to(device)

    mix = TaskMix.build(build_samples(data, cfg.tasks, tc.seed), cfg.tasks, replay)
    if mix.epoch_size() < env.world_size:
        raise GensarError(f"an epoch has {mix.epoch_size()} samples, fewer than {env.world_size} processes")
    encoder = SampleEncoder(tokenizer, ids, data, cfg.tasks, tc.max_input_len)
    encoded = EncodedSamples((encoder.input(s), encoder.target(s)) for s in mix.samples)
    lengths = bucket_key(encoded)
    eval_sets = _eval_sets(data, tc, trained_behaviors(cfg.tasks))

    usable = mix.epoch_size() - mix.epoch_size() % env.world_size
    global_batch = tc.batch_size * env.world_size
    steps_per_epoch = math.ceil(usable / global_batch)
    if tc.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, tc.steps_per_epoch)
    epoch_samples = min(usable, steps_per_epoch * global_batch)  # what one epoch trains on
    total_steps = steps_per_epoch * tc.epochs
    optimizer = adamw(model, tc.weight_decay, tc.lr)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(tc.warmup_ratio * total_steps), total_steps)

    prog = Progress()
    best_state: dict[str, torch.Tensor] | None = None
    # A run killed before its first checkpoint resumes from step 0 (with its saved config).
    if resume and (work / "checkpoint.pt").is_file():
        prog, best_state = restore_checkpoint(work, model, optimizer, scheduler, env)
    else:
        torch.manual_seed(tc.seed + env.rank)  # dropout masks differ across ranks

    train_model = model
    if env.distributed:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    if tc.compile:
        # dynamic=True: every batch is padded to its own lengths, so shapes change at each step; a
        # static first compile would be thrown away at the second. The compiled module shares
        # ``model``'s parameters: checkpoints and the saved model are unchanged.
        train_model = torch.compile(train_model, dynamic=True)

    pad = int(tokenizer.pad_token_id)
    meta = {
        "world_size": env.world_size,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "vocab_size": len(tokenizer),
        "parameters": count_parameters(model),
        "task_counts": mix.counts(),
        "replay": replay.fingerprint() if replay is not None else None,  # a refresh's (gensar.refresh)
        "title_query_share": title_query_share(data),  # what pseudo_query_source "auto" follows
        "epoch_size": usable,
        "steps_per_epoch": steps_per_epoch,
        "prompt_style": cfg.tasks.prompt_style,
        "bf16": tc.bf16,
        "compile": tc.compile,
        "init_from": None if init_from is None else {"model": str(init_from), **(warm or {})},
    }
    if env.is_main:
        capped = "" if epoch_samples == usable else f" of {usable} (train.steps_per_epoch)"
        print(
            f"gensar train: {epoch_samples} samples/epoch{capped} ({_fmt_counts(mix.counts())}), "
            f"{steps_per_epoch} steps/epoch, {meta['parameters']['total']:,} parameters, "
            f"vocab {len(tokenizer)}, {env.world_size} process(es) on {device}",
            file=sys.stderr,
        )
        if warm is not None:
            print(f"gensar train: started from {init_from} ({warm['carried_tokens']} tokens carried, "
                  f"{warm['new_tokens']} new)", file=sys.stderr)

    model.train()
    while prog.epoch < tc.epochs and not prog.stopped_early:
        epoch = prog.epoch
        plan = length_bucketed(
            mix.epoch_plan(tc.seed, epoch)[:usable],
            lengths,
            global_batch,
            tc.length_buckets,
            np.random.default_rng([tc.seed, epoch, 0xB0C7]),
        )
        seen: list[np.ndarray] = []  # plan positions this process trained on (DDP shard check)
        bar = tqdm(
            total=steps_per_epoch,
            initial=prog.step_in_epoch,
            desc=f"epoch {epoch + 1}/{tc.epochs}",
            disable=not (env.is_main and tc.progress),
            mininterval=0.5,
            leave=False,
            dynamic_ncols=True,
        )
        t_start, samples_here = time.perf_counter(), 0
        seconds_before = prog.epoch_seconds
        for step in range(prog.step_in_epoch, steps_per_epoch):
            positions = np.arange(step * global_batch, min((step + 1) * global_batch, usable))[
                env.rank :: env.world_size
            ]
            seen.append(positions)
            batch = collate(encoded, plan[positions], pad, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.bf16):
                loss = train_model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            scheduler.step()
            prog.loss_sum += mean_over_ranks(loss.detach(), env)
            prog.global_step += 1
            prog.step_in_epoch = step + 1
            samples_here += len(positions) * env.world_size
            prog.epoch_seconds = seconds_before + time.perf_counter() - t_start
            bar.update(1)
            bar.set_postfix(
                loss=f"{prog.loss_sum / prog.step_in_epoch:.3f}",
                samples_s=f"{samples_here / max(time.perf_counter() - t_start, 1e-9):.0f}",
            )
            if (
                tc.checkpoint_every
                and prog.global_step % tc.checkpoint_every == 0
                and step + 1 < steps_per_epoch
            ):
                save_checkpoint(work, model, optimizer, scheduler, prog, best_state, env)
        bar.close()

        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": prog.loss_sum / max(prog.step_in_epoch, 1),
            "train_seconds": prog.epoch_seconds,
            "samples": epoch_samples,
            "samples_per_s": epoch_samples / max(prog.epoch_seconds, 1e-9),
            "lr": scheduler.get_last_lr()[0],
        }
        if env.distributed:
            record.update(shard_report(seen, env))
        if (epoch + 1) % tc.eval_every == 0 or epoch + 1 == tc.epochs:
            t0 = time.perf_counter()
            metrics = _validate(model, encoder, data, eval_sets, tc, env, device)
            record["eval_seconds"] = time.perf_counter() - t0
            record.update(metrics)
            value = metrics.get(tc.early_stop_metric, float("nan"))
            if not math.isnan(value):
                if prog.best_value is None or value > prog.best_value:
                    prog.best_value, prog.best_epoch, prog.bad_evals = value, epoch + 1, 0
                    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                else:
                    prog.bad_evals += 1
                    prog.stopped_early = tc.patience > 0 and prog.bad_evals >= tc.patience
        prog.history.append(record)
        prog.epoch, prog.step_in_epoch, prog.loss_sum, prog.epoch_seconds = epoch + 1, 0, 0.0, 0.0
        if env.is_main:
            print(_epoch_line(record, tc, prog), file=sys.stderr)
        save_checkpoint(work, model, optimizer, scheduler, prog, best_state, env)

    if env.is_main:
        if best_state is not None:
            model.load_state_dict(best_state)
        _write_model_dir(out, model, tokenizer, cfg, ids, prog, meta, overwrite)
        shutil.rmtree(work, ignore_errors=True)
    barrier(env)
    return TrainResult(out, prog.history, prog.best_epoch, prog.best_value, prog.stopped_early)


def _write_model_dir(
    out: Path,
    model,
    tokenizer,
    cfg: ModelRunConfig,
    ids: IdMaps,
    prog: Progress,
    meta: dict[str, Any],
    overwrite: bool,
) -> None:
    """The model directory, all at once: weights, tokenizer, train_state.json, config, item IDs."""
    state = {
        "epochs_run": prog.epoch,
        "global_steps": prog.global_step,
        "best_epoch": prog.best_epoch,
        "best_metric": {"name": cfg.train.early_stop_metric, "value": prog.best_value},
        "stopped_early": prog.stopped_early,
        "history": prog.history,
        "timings": {
            "train_seconds": sum(h["train_seconds"] for h in prog.history),
            "eval_seconds": sum(h.get("eval_seconds", 0.0) for h in prog.history),
        },
        **meta,
    }
    model.cpu()
    with atomic_dir(out, overwrite=overwrite, kind="model") as tmp:
        save_model(model, tokenizer, tmp)
        atomic_write_json(tmp / "train_state.json", _jsonable(state))
        atomic_write_json(tmp / "gensar_model.json", {"config": to_dict(cfg)})
        ids.save(tmp / "item_ids.json")


# ---- steps -----------------------------------------------------------------------------------------
def trained_behaviors(tasks: TaskConfig) -> tuple[str, ...]:
    """The behaviors whose history-conditioned task is trained: validation (and so early stopping
    and the kept weights) looks at these only, or a rec-only model would be picked by its search score."""
    weight = {REC: tasks.rec + tasks.next_item, SEARCH: tasks.search + tasks.adhoc_logged}
    trained = tuple(b for b in BEHAVIORS if weight[b] > 0)
    return trained or BEHAVIORS


def _eval_sets(data: PreparedData, tc: TrainConfig,
               behaviors: tuple[str, ...]) -> dict[str, tuple[list[Sample], list[list[str]]]]:
    """Per behavior: the seeded subsample of valid examples that have candidate lists."""
    lists = data.candidate_lists
    sets = {}
    for b in behaviors:
        ex = data.split("valid", b)
        ex = ex[ex["example_id"].isin(list(lists))]
        if tc.eval_examples and len(ex) > tc.eval_examples:
            rng = np.random.default_rng([tc.seed, 0xE7A1, BEHAVIORS.index(b)])
            ex = ex.iloc[np.sort(rng.choice(len(ex), size=tc.eval_examples, replace=False))]
        samples = example_samples(ex)
        cands = [list(lists[s.example_id]) for s in samples]
        if data.cold_items:
            # Lists without their cold items differ in length, and a batch of unequal ones is scored
            # one example at a time: put equal lengths together (the metrics are means, order-free).
            order = sorted(range(len(cands)), key=lambda i: len(cands[i]))
            samples, cands = [samples[i] for i in order], [cands[i] for i in order]
        sets[b] = (samples, cands)
    return sets


def _validate(
    model,
    encoder: SampleEncoder,
    data: PreparedData,
    eval_sets,
    tc: TrainConfig,
    env: DistEnv,
    device: torch.device,
) -> dict[str, float]:
    ranks = {}
    for b, (samples, cands) in eval_sets.items():
        mine = rank_examples(
            model,
            encoder,
            samples[env.rank :: env.world_size],
            cands[env.rank :: env.world_size],
            tc.eval_batch_examples,
            device,
        )
        ranks[b] = gather_concat(mine, env)
    return behavior_metrics(ranks) if any(len(r) for r in ranks.values()) else {}



# ---- small helpers ---------------------------------------------------------------------------------
def _jsonable(obj: Any) -> Any:
    """NaN/inf become null (JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{t} {n}" for t, n in counts.items() if n)


def _epoch_line(record: dict[str, Any], tc: TrainConfig, prog: Progress) -> str:
    line = (
        f"epoch {record['epoch']}/{tc.epochs}: loss {record['train_loss']:.4f}, "
        f"{record['samples_per_s']:.0f} samples/s"
    )
    m = tc.early_stop_metric
    if m in record:
        parts = ", ".join(f"{b} {record[f'{b}_{m}']:.4f}" for b in BEHAVIORS if f"{b}_{m}" in record)
        star = " (best)" if prog.best_epoch == record["epoch"] else ""
        line += f", valid {m} {record[m]:.4f} ({parts}){star}"
    if prog.stopped_early:
        line += f"; early stop after {tc.patience} validations without improvement"
    return line
