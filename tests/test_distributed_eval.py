"""Data-parallel evaluation: a 2-process CPU (gloo) accelerate launch gets the metrics of one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ood_pl_bench.distributed import DataParallel

from . import dist_eval_worker

WORKER = Path(__file__).resolve().parent / "dist_eval_worker.py"


class _State:
    def __init__(self, rank: int, world: int):
        self.process_index, self.num_processes = rank, world
        self.is_main_process = rank == 0
        self.device = "cpu"
        self.mixed_precision = "bf16"


def test_shards_cover_every_item_once():
    shards = [DataParallel(_State(r, 3)).shard(10) for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    one = DataParallel(_State(0, 1))
    assert one.gather([(1, "b"), (0, "a")], 2) == ["a", "b"]
    with pytest.raises(RuntimeError, match="not gathered"):
        one.gather([(0, "a")], 2)
    assert one.policy_dtype() == "bf16"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_evaluation_matches_one_process(smoke_env):
    single = dist_eval_worker.evaluate(None)  # also warms the caches the two processes read
    out = smoke_env / "two.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(WORKER.parent.parent), ACCELERATE_USE_CPU="1")
    # accelerate's --cpu needs MPI for several processes; --multi_gpu launches them with torchrun,
    # and without CUDA they join a CPU (gloo) process group.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(WORKER), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(out.read_text())
    assert two["world_size"] == 2 and sum(two["shard_sizes"]) == len(single["rows"]) and min(two["shard_sizes"]) > 0
    # per-item rows in the same order, same outcomes, log-probs equal up to padding round-off
    assert [r["pair_id"] for r in two["rows"]] == [r["pair_id"] for r in single["rows"]]
    for a, b in zip(single["rows"], two["rows"]):
        assert a["outcome"] == b["outcome"] and a["likelihood_outcome"] == b["likelihood_outcome"]
        assert abs(a["margin"] - b["margin"]) < 1e-4
    assert any(r["outcome"] != 0.5 for r in single["rows"])  # the adapter is not the reference
    assert [(g["prompt_id"], g["sample"], g["text"]) for g in two["generations"]] == \
        [(g["prompt_id"], g["sample"], g["text"]) for g in single["generations"]]
    for name in ("pl_accuracy", "pl_likelihood_accuracy", "pl_ties"):
        assert two["metrics"][name]["value"] == single["metrics"][name]["value"], name
    for name in ("pl_margin", "gold_reward", "kl"):
        assert two["metrics"][name]["value"] == pytest.approx(single["metrics"][name]["value"], abs=1e-4), name
