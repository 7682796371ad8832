"""benchmarks/bench_dpo_vs_trl.py on the tiny model (CPU, fp32): same tokens, same losses as TRL."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dpo_vs_trl_same_tokens_and_losses_fp32(smoke_env, capsys):
    bench = _load("bench_dpo_vs_trl")
    out = smoke_env / "dpo_vs_trl.json"
    args = ["--model", "tiny-llama", "--dtype", "fp32", "--batch", "2", "--steps", "3", "--warmup", "1",
            "--prompt-words", "12", "--response-words", "8", "--lr", "5e-3", "--out", str(out)]
    assert bench.main(args) == 0
    entry = json.loads(out.read_text())["entries"][0]
    assert entry["same_tokens"] is True
    assert all(abs(x - math.log(2)) < 1e-6 for x in entry["first_step_losses"])  # adapters start at pi_ref
    assert len(entry["ours"]["losses"]) == len(entry["trl_dpo_trainer"]["losses"]) == 3
    assert entry["ours"]["losses"][-1] != entry["ours"]["losses"][0]  # the adapters moved
    assert entry["max_abs_loss_diff"] < 1e-4  # the same loss, step after step, in fp32
    assert entry["steps_per_s_ratio"] > 0
    assert "steps/s ratio ours/TRL" in capsys.readouterr().out
    # a second run of the same (model, dtype) replaces its entry
    assert bench.main(args) == 0
    assert len(json.loads(out.read_text())["entries"]) == 1
