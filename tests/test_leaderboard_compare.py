"""``compare`` on two real smoke runs: the reference policy and a tiny trained (SFT) solver."""

from __future__ import annotations

import json

import pytest

from ood_pl_bench.cli import main
from ood_pl_bench.errors import SubmissionError, UsageError
from ood_pl_bench.leaderboard.compare import compare
from ood_pl_bench.leaderboard.store import load_run

from .leaderboard_util import copy_tree

pytest_plugins = ["tests.leaderboard_fixtures"]

QA_HELD_OUT = ["beer", "ai", "stackoverflow", "iot", "italian", "coffee", "quantumcomputing", "matheducators",
               "cardano", "bioinformatics"]


def test_a_run_compared_with_itself(lb_runs, lb_base):
    # A run directory against its own submission: the same samples, read from two layouts.
    result = compare(lb_runs["sft"], lb_base / "se-amazon/qa/sft-test-smoke-seed0")
    names = [m["metric"] for m in result["metrics"]]
    assert names[:4] == ["pl_accuracy", "pl_likelihood_accuracy", "gold_reward", "kl"]
    assert any(n.startswith("win_rate[proxy:gold-rm@") for n in names)
    for m in result["metrics"]:
        assert [d["domain"] for d in m["domains"]] == QA_HELD_OUT
        for d in m["domains"] + [m["macro"]]:
            assert d["diff"] == 0.0 and d["ci_low"] == 0.0 and d["ci_high"] == 0.0
            assert d["p_value" if d is m["macro"] else "p_bootstrap"] == 1.0
        for d in m["domains"]:
            assert d["p_bootstrap_holm"] == 1.0
            if m["mcnemar"]:
                assert d["mcnemar"]["b01"] == d["mcnemar"]["b10"] == 0
                assert d["mcnemar"]["p_value"] == 1.0 and d["p_mcnemar_holm"] == 1.0


def test_trained_solver_against_the_reference(lb_runs):
    result = compare(lb_runs["sft"], lb_runs["reference"])
    sft, ref = load_run(lb_runs["sft"]), load_run(lb_runs["reference"])
    pl = next(m for m in result["metrics"] if m["metric"] == "pl_accuracy")
    assert pl["mcnemar"] and pl["unit"] == "pair"
    raw = []
    for d in pl["domains"]:
        outcomes = [r["outcome"] for r in sft.rows("held_out", d["domain"], "pairs")]
        # pi_ref ties every pair (0.5): McNemar counts the trained solver's wins and losses.
        assert all(r["outcome"] == 0.5 for r in ref.rows("held_out", d["domain"], "pairs"))
        assert d["mcnemar"]["b10"] == outcomes.count(1.0) and d["mcnemar"]["b01"] == outcomes.count(0.0)
        stored = sft.domains()[d["domain"]]["metrics"]["pl_accuracy"]["value"]
        assert d["a"] == pytest.approx(stored) and d["b"] == 0.5
        assert d["diff"] == pytest.approx(stored - 0.5)
        assert d["ci_low"] <= d["diff"] <= d["ci_high"]
        raw.append(d["mcnemar"]["p_value"])
    # Holm: never below the raw p-value, capped at 1, and the smallest is multiplied by the number of tests.
    holm = [d["p_mcnemar_holm"] for d in pl["domains"]]
    assert all(h >= p for h, p in zip(holm, raw)) and max(holm) <= 1.0
    assert min(holm) == pytest.approx(min(1.0, len(raw) * min(raw)))
    macro = pl["macro"]
    assert macro["a"] == sft.results["aggregates"]["held_out"]["pl_accuracy"]["value"]
    assert macro["diff"] == pytest.approx(macro["a"] - 0.5, abs=1e-12)
    assert macro["n_domains"] == 10 and macro["n"] == 60
    # Swapping A and B flips every difference.
    back = compare(lb_runs["reference"], lb_runs["sft"], metrics=["pl_accuracy", "gold_reward"])
    for m_back in back["metrics"]:
        m = next(x for x in result["metrics"] if x["metric"] == m_back["metric"])
        assert m_back["macro"]["diff"] == pytest.approx(-m["macro"]["diff"], abs=1e-12)
        for d_back, d in zip(m_back["domains"], m["domains"]):
            assert d_back["diff"] == pytest.approx(-d["diff"], abs=1e-12)
            assert d_back["p_bootstrap"] == pytest.approx(d["p_bootstrap"], abs=0.05)


def test_compare_refusals(lb_runs, lb_env):
    with pytest.raises(UsageError, match="rm_accuracy"):
        compare(lb_runs["sft"], lb_runs["reference"], metrics=["rm_accuracy"])
    with pytest.raises(SubmissionError, match="does not exist"):
        compare(lb_runs["sft"], lb_env / "missing")
    other = copy_tree(lb_runs["reference"], lb_env / "other")
    results = json.loads((other / "results.json").read_text())
    results["data_hash"] = "f" * 16
    (other / "results.json").write_text(json.dumps(results))
    with pytest.raises(SubmissionError, match="not comparable: data_hash"):
        compare(lb_runs["sft"], other)


def test_cli_compare(lb_runs, capsys):
    assert main(["compare", str(lb_runs["sft"]), str(lb_runs["reference"]), "--format", "json",
                 "--metric", "pl_accuracy"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [m["metric"] for m in out["metrics"]] == ["pl_accuracy"]
    assert main(["compare", str(lb_runs["sft"]), str(lb_runs["reference"])]) == 0
    text = capsys.readouterr().out
    assert "macro held-out" in text and "McNemar" in text
    assert main(["compare", str(lb_runs["sft"]), str(lb_runs["reference"]), "--format", "md"]) == 0
    assert "### pl_accuracy (paired over pairs)" in capsys.readouterr().out
