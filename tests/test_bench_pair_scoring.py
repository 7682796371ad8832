"""benchmarks/bench_pair_scoring.py with a tiny model: both layouts timed, token counts, agreement."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_pair_scoring_benchmark_tiny(smoke_env):
    spec = importlib.util.spec_from_file_location("bench_pair_scoring", REPO / "benchmarks" / "bench_pair_scoring.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = smoke_env / "pairs.json"
    assert bench.main(["--tasks", "qa", "--domains", "1", "--row-sizes", "2", "4", "--repeats", "1",
                       "--policy", "tiny-llama", "--out", str(out)]) == 0
    qa = json.loads(out.read_text())["tasks"]["qa"]
    assert qa["domains"] == 1 and qa["pairs"] > 0
    assert set(qa["seconds_median"]) == {"separate", "pairs-per-row", "packed-2", "packed-4"}
    # packing feeds each prompt once per row: fewer tokens than one row per response, and sharing
    # prompts across pairs fewer than one row per pair
    assert qa["tokens"]["packed-4"] <= qa["tokens"]["packed-2"] <= qa["tokens"]["pairs-per-row"]
    assert qa["tokens"]["pairs-per-row"] < qa["tokens"]["separate"]
    assert qa["tokens_over_separate"]["packed-4"] < 1
    # fp32: the two layouts give the same log-probs up to rounding
    assert qa["max_abs_logprob_diff_fp32"] < 1e-3
