from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
from conftest import make_tiny_prepared

from gensar.config import from_dict, load_config, require
from gensar.data.prepared import PreparedData
from gensar.errors import ConfigError, InputError
from gensar.io import atomic_dir


@dataclass(frozen=True)
class Inner:
    dim: int = 4
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    lr: float = 1e-3
    inner: Inner = field(default_factory=Inner)
    levels: tuple[int, ...] = (256, 256)

    def validate(self) -> None:
        require(self.lr > 0, "lr", "must be > 0")


def test_config_strict_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 0.01\ninner:\n  dim: 8\n")
    cfg = load_config(Outer, p, ["inner.mode=b", "levels=[16, 8]"])
    assert cfg == Outer(lr=0.01, inner=Inner(dim=8, mode="b"), levels=(16, 8))
    with pytest.raises(ConfigError, match="unknown config key 'inner.dimm'"):
        from_dict(Outer, {"inner": {"dimm": 3}})
    with pytest.raises(ConfigError, match="'inner.dim': expected an integer"):
        from_dict(Outer, {"inner": {"dim": "x"}})
    with pytest.raises(ConfigError, match="'inner.mode'"):
        from_dict(Outer, {"inner": {"mode": "c"}})
    with pytest.raises(ConfigError, match="config key 'lr': must be > 0"):
        from_dict(Outer, {"lr": -1})


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_input_error_names_file_line_field():
    err = InputError("bad value", path="a.csv", line=3, field="item_id")
    assert str(err) == "a.csv:3: field 'item_id': bad value"


def test_prepared_round_trip(tmp_path):
    data = make_tiny_prepared()
    data.save(tmp_path / "p")
    back = PreparedData.load(tmp_path / "p")
    assert back.items["item_id"].tolist() == data.items["item_id"].tolist()
    assert back.examples["history"].tolist() == data.examples["history"].tolist()
    assert back.candidate_lists == data.candidate_lists


_THREADS = """
import json
from threadpoolctl import threadpool_info
import torch
from gensar.runtime import configure_threads
configure_threads(2)
print(json.dumps([torch.get_num_threads(), [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]]))
"""


@pytest.mark.parametrize(("env", "blas"), [({}, 1), ({"OPENBLAS_NUM_THREADS": "2"}, 2)])
def test_configure_threads_keeps_numpys_blas_in_the_calling_thread_unless_told(env, blas):
    """Torch's OpenMP pool and OpenBLAS's pool, both spinning, slow a mixed numpy/torch request
    several times over (gensar.runtime.single_thread_blas); a user's own setting is kept."""
    import json
    import os
    import subprocess
    import sys

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: BLAS runs one thread anyway")
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", _THREADS], env={**clean, **env}, capture_output=True,
                         text=True, check=True).stdout
    torch_threads, blas_threads = json.loads(out)
    assert torch_threads == 2
    assert blas_threads and set(blas_threads) == {blas}
