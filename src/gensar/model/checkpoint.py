"""Training checkpoints: where training stands (``Progress``), the checkpoint file, RNG states.

``MODEL_DIR.ckpt/checkpoint.pt`` holds the model, optimizer, scheduler, the best weights so far,
the RNG states (python, numpy, torch; one set per rank), the epoch and the steps done in it
(``Progress``). It is written through ``gensar.io``'s atomic write: a kill leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import io
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gensar.errors import GensarError
from gensar.io import atomic_write_bytes
from gensar.model.distributed import DistEnv, barrier

CHECKPOINT_FORMAT = 1


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # optimizer steps done in the current epoch
    global_step: int = 0
    loss_sum: float = 0.0  # current epoch, mean over ranks per step
    epoch_seconds: float = 0.0  # current epoch's training time so far
    history: list[dict[str, float]] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False


def checkpoint_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def save_checkpoint(
    work: Path,
    model,
    optimizer,
    scheduler,
    prog: Progress,
    best_state: dict[str, torch.Tensor] | None,
    env: DistEnv,
) -> None:
    rng = rng_state()
    rngs = [rng]
    if env.distributed:
        import torch.distributed as dist

        rngs = [None] * env.world_size
        dist.all_gather_object(rngs, rng)
    if env.is_main:
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "world_size": env.world_size,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "progress": dataclasses.asdict(prog),
            "best_model": best_state,
            "rng": rngs,
        }
        atomic_torch_save(ckpt, work / "checkpoint.pt")
    barrier(env)


def restore_checkpoint(
    work: Path, model, optimizer, scheduler, env: DistEnv
) -> tuple[Progress, dict[str, torch.Tensor] | None]:
    """Load ``work/checkpoint.pt`` into the model, optimizer, scheduler and this rank's RNGs;
    returns the progress and the best weights so far."""
    cleanup_temp_files(work, env)
    ckpt = torch.load(work / "checkpoint.pt", map_location="cpu", weights_only=True)
    if ckpt["world_size"] != env.world_size:
        raise GensarError(
            f"{work}/checkpoint.pt was written by {ckpt['world_size']} processes, "
            f"resume with the same number (now {env.world_size})"
        )
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"][env.rank])
    return Progress(**ckpt["progress"]), ckpt["best_model"]


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` into memory, then ``gensar.io``'s atomic write (temporary sibling, fsync,
    ``os.replace``): never a partial ``path``, and a failing pickle leaves no temporary file."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def cleanup_temp_files(work: Path, env: DistEnv) -> None:
    """Temporary files of a checkpoint write that a kill interrupted."""
    if env.is_main:
        for p in work.glob(".checkpoint.pt.*.tmp"):
            p.unlink(missing_ok=True)


def rng_state() -> dict[str, Any]:
    name, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
