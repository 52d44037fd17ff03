"""What the training loops here share (the generative model's trainer, SASRec).

A leaf module (torch only), so every stage's loop may use it.
"""

from __future__ import annotations

import torch


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups, nanoGPT's ``configure_optimizers`` rule: matrices (embeddings
    included) decay, vectors (biases, layer-norm gains) do not. Decayed group first, each in
    ``model.parameters()`` order, so an optimizer state saved by an older version still loads."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
