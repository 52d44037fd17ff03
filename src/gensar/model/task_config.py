"""The generative model's training tasks by name, and ``TaskConfig`` (their weights, prompt style).

What each task renders is in ``gensar.model.tasks``'s overview.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gensar.config import require

TASKS = (
    "rec", "search", "next_query", "text2sem", "text2col", "sem2text", "col2text", "adhoc", "next_item",
    "adhoc_logged",
)
Task = Literal[
    "rec", "search", "next_query", "text2sem", "text2col", "sem2text", "col2text", "adhoc", "next_item",
    "adhoc_logged",
]


@dataclass(frozen=True)
class TaskConfig:
    prompt_style: Literal["compact", "paper"] = "compact"
    # Sampling weights: expected passes over each task's samples per epoch (0 = off).
    rec: float = 1.0
    search: float = 1.0
    next_query: float = 0.5
    text2sem: float = 0.5
    text2col: float = 0.5
    sem2text: float = 0.25
    col2text: float = 0.25
    adhoc: float = 0.5
    next_item: float = 0.0  # search clicks as extra recommendation targets (see the module doc)
    adhoc_logged: float = 0.0  # training search sessions without their history (see the module doc)
    pseudo_queries: int = 3  # per item, for adhoc
    # what they look like: "auto" follows the logged queries (title words or category paths)
    pseudo_query_source: Literal["auto", "category", "title"] = "auto"
    max_text_tokens: int = 48  # item texts and queries are cut to this many word pieces

    def validate(self) -> None:
        for task in TASKS:
            require(self.weight(task) >= 0, f"tasks.{task}", "sampling weight must be >= 0")
        require(any(self.weight(t) > 0 for t in TASKS), "tasks", "at least one task needs a weight > 0")
        require(self.pseudo_queries >= 1, "tasks.pseudo_queries", "must be >= 1")
        require(self.max_text_tokens >= 1, "tasks.max_text_tokens", "must be >= 1")

    def weight(self, task: str) -> float:
        return float(getattr(self, task))
