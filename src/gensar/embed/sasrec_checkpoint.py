"""A trained SASRec and its checkpoint file: state_dict + config + item count + training summary."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gensar.config import from_dict, to_dict
from gensar.embed.sasrec import SASRec, SASRecConfig
from gensar.errors import GensarError
from gensar.io import atomic_write_bytes


@dataclass
class TrainedSASRec:
    model: SASRec
    config: SASRecConfig
    best_epoch: int  # 1-based epoch whose weights were kept (last epoch without validation)
    best_valid_ndcg10: float | None
    train_seconds: float
    log: list[dict[str, float]] = field(default_factory=list)  # one row per epoch

    def save(self, path: str | Path) -> None:
        """Checkpoint: state_dict + config + item count (atomic write)."""
        buf = io.BytesIO()
        torch.save(
            {
                "config": to_dict(self.config),
                "n_items": self.model.n_items,
                "state_dict": self.model.state_dict(),
                "best_epoch": self.best_epoch,
                "best_valid_ndcg10": self.best_valid_ndcg10,
                "train_seconds": self.train_seconds,
            },
            buf,
        )
        atomic_write_bytes(path, buf.getvalue())


def load_sasrec(path: str | Path) -> TrainedSASRec:
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as err:
        raise GensarError(f"{path}: not a SASRec checkpoint ({str(err).splitlines()[0]})") from None
    cfg = from_dict(SASRecConfig, ckpt["config"])
    model = SASRec(int(ckpt["n_items"]), cfg)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return TrainedSASRec(model, cfg, int(ckpt["best_epoch"]), ckpt["best_valid_ndcg10"], float(ckpt["train_seconds"]))
