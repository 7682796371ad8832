"""`oodpl run` under a 2-process CPU (gloo) accelerate launch gets the metrics of one process.

DPO is data-parallel (each process takes half of every batch and gradients are averaged); the
evaluation shards pairs and prompts and gathers per item. metarm is not data-parallel: the main
process fits and the other loads its checkpoint, and the adapters are broadcast per domain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ood_pl_bench.cli import main

from .test_distributed_eval import _free_port

ROOT = Path(__file__).resolve().parent.parent


def _launch_two(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "ood_pl_bench.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def _rows(run_dir: Path, role: str, domain: str, kind: str) -> list[dict]:
    path = run_dir / "samples" / role / f"{domain}.{kind}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("method", ["dpo", "metarm"])
def test_two_process_run_matches_one_process(smoke_env, method):
    args = ["run", "--method", method, "--task", "sentiment", "--profile", "smoke", "--domains", "apparel,baby"]
    one, two = smoke_env / "one", smoke_env / "two"
    assert main([*args, "--out", str(one)]) == 0
    proc = _launch_two([*args, "--out", str(two)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = json.loads((one / "results.json").read_text())
    b = json.loads((two / "results.json").read_text())
    assert [(d["domain"], d["role"]) for d in a["domains"]] == [(d["domain"], d["role"]) for d in b["domains"]]
    for role, domain in [(d["role"], d["domain"]) for d in a["domains"]]:
        ra, rb = _rows(one, role, domain, "pairs"), _rows(two, role, domain, "pairs")
        assert [r["pair_id"] for r in ra] == [r["pair_id"] for r in rb]
        for x, y in zip(ra, rb):
            assert x["outcome"] == y["outcome"] and x["likelihood_outcome"] == y["likelihood_outcome"]
            assert x["margin"] == pytest.approx(y["margin"], abs=1e-4)
        if role == "held_out":
            ga, gb = _rows(one, role, domain, "generations"), _rows(two, role, domain, "generations")
            assert [(g["prompt_id"], g["text"]) for g in ga] == [(g["prompt_id"], g["text"]) for g in gb]
    held_a, held_b = a["aggregates"]["held_out"], b["aggregates"]["held_out"]
    assert held_a["pl_accuracy"]["value"] == held_b["pl_accuracy"]["value"]
    win = [k for k in held_a if k.startswith("win_rate[")]
    assert win and win == [k for k in held_b if k.startswith("win_rate[")]
    for name in ("gold_reward", "kl", *win):
        assert held_a[name]["value"] == pytest.approx(held_b[name]["value"], abs=1e-4), name
    # the adapters are trained (not the reference), and only the main process wrote files
    assert any(r["outcome"] != 0.5 for r in _rows(two, "held_out", "apparel", "pairs"))
    assert json.loads((two / "manifest.json").read_text())["units"].keys() == \
        json.loads((one / "manifest.json").read_text())["units"].keys()
