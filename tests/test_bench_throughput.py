"""gpu_check's python part (benchmarks/bench_throughput.py) end to end on CPU with tiny sizes."""

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


@pytest.fixture
def bench(tmp_path, monkeypatch):
    monkeypatch.setenv("OODPL_CACHE", str(tmp_path / "cache"))
    return _load("bench_throughput")


def test_smollm2_config_shape(bench):
    cfg, source = bench.smollm2_config()
    assert source == "builtin"  # empty cache: the built-in SmolLM2-135M values
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"],
            cfg["num_key_value_heads"], cfg["vocab_size"]) == (576, 30, 9, 3, 49152)
    small, _ = bench.smollm2_config(layers=2, hidden=64)
    assert small["num_hidden_layers"] == 2 and small["hidden_size"] == 64
    assert small["num_attention_heads"] * small["head_dim"] == 64


def test_throughput_cpu_tiny_end_to_end(bench, tmp_path, capsys):
    run_dir = tmp_path / "smoke"
    (run_dir).mkdir()
    (run_dir / "results.json").write_text(json.dumps({
        "method": "metarm", "task": "qa", "profile": "smoke", "device": "cpu", "wall_time_s": 12.5,
        "phase_times_s": {"training": 3.0}, "aggregates": {"held_out": {"pl_accuracy": {"value": 0.5}}}}))
    out = tmp_path / "throughput.json"
    rc = bench.main(["--device", "cuda", "--layers", "1", "--hidden", "64", "--batch", "2", "--eval-batch", "2", "--prompt-len", "8",
                     "--response-len", "8", "--new-tokens", "3", "--repeats", "1", "--tokenizer", "tiny",
                     "--reward-backbone", "tiny-bert", "--smoke-run", str(run_dir), "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    data = json.loads(out.read_text())
    if not data["device"].startswith("cuda"):
        assert "falling back to CPU" in text
    assert data["model"]["vocab_size"] == 49152 and data["model"]["layers"] == 1
    for name in ("training", "scoring", "generation", "dpo_step", "meta_step"):
        r = data["results"][name]
        assert r["tokens"] > 0 and r["tokens_per_s"] > 0, name
    # every sequence is exactly prompt + response tokens after truncation
    assert data["results"]["training"]["tokens"] == 2 * 2 * (8 + 8)
    assert data["results"]["generation"]["tokens"] <= 2 * 3
    assert data["meta_to_dpo_step_ratio"] > 0
    assert data["smoke_run"]["wall_time_s"] == 12.5
    for needle in ("tokens/s", "meta-step / DPO-step time ratio", "smoke run metarm/qa"):
        assert needle in text
