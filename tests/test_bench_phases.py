"""benchmarks/bench_phases.py on a smoke run: per-phase table and the tokenisation audit."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_phases_table_and_tokenisation_audit(smoke_env, capsys):
    bench = _load("bench_phases")
    out = smoke_env / "phases.json"
    # dpo (2 steps) scores and generates with its own adapter whatever the shared caches hold
    assert bench.main(["--method", "dpo", "--set", "steps=2", "--domains", "coffee", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    phases = {r["phase"]: r for r in data["phases"]}
    assert set(bench.PHASES) <= set(phases)
    assert phases["generation"]["seconds"] > 0 and phases["scoring"]["seconds"] > 0
    assert sum(r["seconds"] for r in data["phases"]) == pytest.approx(data["wall_time_s"], abs=0.01)
    tok = data["tokenisation"]
    assert tok["prompt_ids"]["calls"] >= tok["prompt_ids"]["distinct"] > 0
    assert tok["total"]["calls"] == tok["prompt_ids"]["calls"] + tok["response_ids"]["calls"]
    text = capsys.readouterr().out
    assert "tokenisation total" in text and "generation" in text
    # the audit restores the real methods
    from ood_pl_bench.models.policy import Policy

    assert Policy.prompt_ids.__qualname__ == "Policy.prompt_ids"
