"""Data-parallel training under torchrun: 2 CPU processes (gloo), disjoint shards, rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO, make_tiny_prepared
from test_tasks import write_tiny_ids

TINY = REPO / "configs" / "model-tiny.yaml"


def test_torchrun_two_processes(tmp_path):
    make_tiny_prepared().save(tmp_path / "data")
    write_tiny_ids(tmp_path / "ids")
    out = tmp_path / "model"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "gensar.cli",
        "train",
        str(tmp_path / "data"),
        "--ids",
        str(tmp_path / "ids"),
        "--out",
        str(out),
        "--config",
        str(TINY),
        "--set",
        "train.epochs=2",
        "--set",
        "train.checkpoint_every=3",
        "--set",
        "train.threads=1",
        "--set",
        "train.progress=false",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stderr[-3000:]

    # one summary line (rank 0), one output directory, no checkpoint dir or temp file left behind
    summaries = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and json.loads(summaries[0])["epochs"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "ids", "model"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            ".gensar-run.json",
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "train_state.json",
            "gensar_model.json",
            "item_ids.json",
        ]
    )

    state = json.loads((out / "train_state.json").read_text())
    assert state["world_size"] == 2
    for h in state["history"]:
        n0, n1 = h["rank_samples"]
        assert h["rank_overlap"] == 0  # no sample position was trained on by both ranks
        assert n0 + n1 == h["samples"] == state["epoch_size"]  # together they cover the epoch
        assert n0 == n1  # every global batch splits evenly (the odd tail is dropped)
        assert "hr@10" in h  # validation gathered from both ranks
        assert h["rec_examples"] + h["search_examples"] == 40  # 20 per behavior, sharded then gathered
