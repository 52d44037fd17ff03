"""The suite's own guards against flakes (conftest.py): these run in file order."""

from __future__ import annotations

import os

import torch
from hypothesis import settings


def test_a_test_may_change_torch_threads():
    torch.set_num_threads(3)  # as an in-process `gensar ids` / `sasrec` call does (all cores)


def test_the_next_test_starts_at_gensar_threads_again():
    assert torch.get_num_threads() == int(os.environ.get("GENSAR_THREADS", "1"))


def test_hypothesis_draws_the_same_examples_every_run():
    if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci":
        assert settings.default.derandomize and settings.default.database is None
