"""Pure win-rate maths on hand-made verdicts, the proxy judge, judge_domain, and the evaluate module."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ood_pl_bench.judges.base import POLICY_FIRST, REFERENCE_FIRST, Judge, JudgeItem, Verdict
from ood_pl_bench.judges.proxy import ProxyJudge, gold_revision
from ood_pl_bench.judges.win_rate import (
    fit_length_logistic, judge_domain, lc_win_rate_key, length_controlled_win_rate, macro_win_rate, pair_outcome,
    side_preference, win_rate_from_verdicts, win_rate_key, win_rate_report,
)
from ood_pl_bench.metrics.schema import check_metric

from .judge_fixtures import FakeGold, generation_rows, make_prompts


def test_side_preference_and_pair_outcome_table():
    assert side_preference("A", POLICY_FIRST) == 1 and side_preference("B", POLICY_FIRST) == -1
    assert side_preference("A", REFERENCE_FIRST) == -1 and side_preference("B", REFERENCE_FIRST) == 1
    assert side_preference("tie", REFERENCE_FIRST) == 0 and side_preference(None, POLICY_FIRST) is None
    assert pair_outcome(1, 1) == (1.0, "win")
    assert pair_outcome(-1, -1) == (0.0, "loss")
    assert pair_outcome(0, 0) == (0.5, "tie")
    assert pair_outcome(1, -1) == (0.5, "inconsistent")  # a position-biased judge
    assert pair_outcome(1, 0) == (0.5, "inconsistent")
    assert pair_outcome(None, 1) == (0.5, "unparseable")
    assert pair_outcome(None, 1, unparseable="exclude") == (None, "unparseable")
    with pytest.raises(ValueError):
        pair_outcome(1, 1, unparseable="drop")


def test_hand_made_win_rate_counts():
    # pairs: win, win, loss, inconsistent (A,A = position bias), tie, unparseable
    pf = ["A", "A", "B", "A", "tie", None]
    rf = ["B", "B", "A", "A", "tie", "B"]
    out = win_rate_from_verdicts(pf, rf, [10, 20, 5, 7, 8, 9], [10, 10, 10, 7, 8, 9], n_resamples=200)
    wr = out["win_rate"]
    check_metric(wr)
    check_metric(out["lc_win_rate"])
    assert wr["value"] == pytest.approx((1 + 1 + 0 + 0.5 + 0.5 + 0.5) / 6)
    assert (wr["wins"], wr["ties"], wr["losses"]) == (2, 3, 1)
    assert wr["inconsistent"] == 1 and wr["inconsistency_rate"] == pytest.approx(1 / 5)
    assert wr["unparseable"] == 1 and wr["unparseable_pairs"] == 1 and wr["n_pairs"] == 6
    assert wr["mean_length_policy"] == pytest.approx(59 / 6) and wr["mean_length_reference"] == pytest.approx(54 / 6)
    assert wr["ci_low"] <= wr["value"] <= wr["ci_high"] and wr["ci_method"] == "bootstrap_percentile"
    assert wr["wilson_low"] < wr["value"] < wr["wilson_high"]
    excl = win_rate_from_verdicts(pf, rf, [1] * 6, [1] * 6, unparseable="exclude", n_resamples=0)["win_rate"]
    assert excl["value"] == pytest.approx(3 / 5) and excl["excluded"] == 1 and excl["unparseable"] == 1


def test_each_prompt_counts_once():
    # prompt p0 has 3 samples (all wins), p1 has 1 sample (a loss): mean of prompt means = 0.5
    out = win_rate_from_verdicts(["A"] * 3 + ["B"], ["B"] * 3 + ["A"], [1] * 4, [1] * 4,
                                 ["p0", "p0", "p0", "p1"], n_resamples=100)
    assert out["win_rate"]["value"] == 0.5 and out["win_rate"]["n"] == 2 and out["win_rate"]["n_pairs"] == 4
    assert out["lc_win_rate"]["value"] == pytest.approx(0.5, abs=1e-6)


def test_empty_input_gives_empty_metrics():
    out = win_rate_from_verdicts([], [], [], [])
    assert out["win_rate"]["value"] is None and out["win_rate"]["n"] == 0
    assert out["lc_win_rate"]["value"] is None
    check_metric(out["win_rate"])


def test_lc_equals_win_rate_without_length_differences():
    rng = np.random.default_rng(1)
    y = rng.choice([0.0, 0.5, 1.0], size=80, p=[0.2, 0.2, 0.6])
    lc = length_controlled_win_rate(y, np.zeros(80), n_resamples=0)
    assert lc["value"] == pytest.approx(y.mean(), abs=1e-3)
    assert fit_length_logistic([1, 1, 1], [5, -3, 2])["lc_win_rate"] == 1.0
    assert fit_length_logistic([0, 0], [5, -3])["lc_win_rate"] == 0.0


def test_lc_removes_a_pure_length_effect():
    # A judge that only rewards length (P(policy preferred) = sigmoid(0.02 * length difference)),
    # and a policy that is longer on average: the raw win rate is high, the LC win rate is ~0.5.
    rng = np.random.default_rng(3)
    diffs = rng.normal(60, 80, 3000).round()
    y = (rng.random(diffs.size) < 1 / (1 + np.exp(-0.02 * diffs))).astype(float)
    out = win_rate_from_verdicts(["A" if o else "B" for o in y], ["B" if o else "A" for o in y],
                                 list(200 + diffs), [200.0] * diffs.size, n_resamples=200)
    assert out["win_rate"]["value"] > 0.7
    lc = out["lc_win_rate"]
    assert lc["value"] == pytest.approx(0.5, abs=0.03)
    assert lc["ci_low"] < 0.5 < lc["ci_high"] and lc["slope"] > 0


def test_lc_recovers_the_logistic_intercept():
    rng = np.random.default_rng(0)
    d = rng.normal(40, 100, 4000)
    p = 1 / (1 + np.exp(-(1.0 + 0.01 * d)))
    y = (rng.random(d.size) < p).astype(float)
    fit = fit_length_logistic(y, d)
    assert fit["lc_win_rate"] == pytest.approx(1 / (1 + np.exp(-1.0)), abs=0.03)
    assert fit["slope"] / fit["scale"] == pytest.approx(0.01, rel=0.2)
    assert y.mean() > fit["lc_win_rate"]  # the policy is longer on average, so raw > LC


_verdict = st.sampled_from(["A", "B", "tie", None])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_verdict, _verdict, st.integers(0, 300), st.integers(0, 300)), min_size=1, max_size=25))
def test_swapping_sides_mirrors_the_win_rate(pairs):
    pf, rf, lp, lr = (list(x) for x in zip(*pairs))
    out = win_rate_from_verdicts(pf, rf, lp, lr, n_resamples=0)
    # The reference's view: it was shown first exactly in the other order; positions are unchanged.
    mirror = win_rate_from_verdicts(rf, pf, lr, lp, n_resamples=0)
    wr, mwr = out["win_rate"], mirror["win_rate"]
    assert 0.0 <= wr["value"] <= 1.0
    assert wr["value"] + mwr["value"] == pytest.approx(1.0)
    assert (wr["wins"], wr["ties"], wr["losses"]) == (mwr["losses"], mwr["ties"], mwr["wins"])
    assert wr["wins"] + wr["ties"] + wr["losses"] == len(pairs)
    assert out["lc_win_rate"]["value"] + mirror["lc_win_rate"]["value"] == pytest.approx(1.0, abs=1e-6)


class ScriptedJudge(Judge):
    """In-process judge: prefers the text with more 'good'; ``bias`` makes it always answer A."""

    def __init__(self, bias: bool = False):
        super().__init__()
        self.bias = bias
        self.items: list[JudgeItem] = []

    @property
    def judge_id(self) -> str:
        return "scripted:test@v1"

    def compare(self, items):
        self.items.extend(items)
        out = []
        for it in items:
            if "[[confuse]]" in it.text_a + it.text_b:
                v = Verdict(None, "hmm", False)
            elif self.bias:
                v = Verdict("A", "A", True)
            else:
                a, b = it.text_a.count("good"), it.text_b.count("good")
                v = Verdict("A" if a > b else "B" if b > a else "tie", "x", True, price=0.01, latency=0.1)
            self.usage.add(v)
            out.append(v)
        return out


def test_judge_domain_pairs_both_orders_and_reports_by_judge_id():
    prompts = make_prompts(4)
    policy = generation_rows(prompts, ["good good", "good", "[[confuse]]", "meh"] * 2, k=2)
    reference = generation_rows(prompts, ["meh", "good", "good", "good"])  # one reference sample per prompt
    judge = ScriptedJudge()
    rows, metrics = judge_domain(judge, prompts, policy, reference, seed=5, n_resamples=100)
    assert len(rows) == 8 and len(judge.items) == 16
    first, second = judge.items[0], judge.items[1]
    assert (first.order, second.order) == (POLICY_FIRST, REFERENCE_FIRST)
    assert first.text_a == second.text_b == "good good" and first.text_b == second.text_a == "meh"
    assert first.seed == 5 and first.prompt == prompts[0]["prompt"]
    assert {r["reference_sample"] for r in rows} == {0}
    wr = metrics[win_rate_key("scripted:test@v1")]
    lc = metrics[lc_win_rate_key("scripted:test@v1")]
    check_metric(wr)
    check_metric(lc)
    assert wr["judge"] == "scripted:test@v1" and wr["unparseable"] == 4 and wr["unparseable_pairs"] == 2
    # prompt means: p0 two wins (1); p1 unparseable + loss (0.25); p2 win + tie (0.75); p3 as p1
    assert wr["value"] == pytest.approx((1 + 0.25 + 0.75 + 0.25) / 4)
    assert (wr["wins"], wr["ties"], wr["losses"]) == (3, 3, 2) and wr["n"] == 4 and wr["n_pairs"] == 8
    assert wr["price_usd"] == pytest.approx(0.01 * 12) and wr["judge_time_s"] == pytest.approx(1.2)
    for row in rows:
        assert "text" not in row and "prompt" not in row
        assert set(row[POLICY_FIRST]) >= {"winner", "raw", "parse_ok", "price_usd", "latency_s", "cached"}
    # recomputing from the rows (what validate does) gives the same numbers
    again = win_rate_report(rows, n_resamples=100)
    assert again["win_rate"]["value"] == wr["value"] and again["lc_win_rate"]["value"] == lc["value"]


def test_position_biased_judge_gives_all_ties():
    prompts = make_prompts(5)
    rows, metrics = judge_domain(ScriptedJudge(bias=True), prompts, generation_rows(prompts, ["good"] * 5),
                                 generation_rows(prompts, ["bad"] * 5), n_resamples=50)
    wr = metrics[win_rate_key("scripted:test@v1")]
    assert wr["value"] == 0.5 and wr["ties"] == 5 and wr["inconsistency_rate"] == 1.0
    assert {r["status"] for r in rows} == {"inconsistent"}


def test_judge_domain_refuses_missing_prompts_or_references():
    prompts = make_prompts(2)
    policy = generation_rows(prompts, ["a", "b"])
    with pytest.raises(ValueError, match="no reference generation"):
        judge_domain(ScriptedJudge(), prompts, policy, policy[:1])
    with pytest.raises(ValueError, match="not in the prompt list"):
        judge_domain(ScriptedJudge(), prompts[:1], policy, policy)


def test_proxy_judge_agrees_in_both_orders_and_scores_each_text_once():
    gold = FakeGold("rev42")
    judge = ProxyJudge(gold)
    prompts = make_prompts(3)
    rows, metrics = judge_domain(judge, prompts, generation_rows(prompts, ["good", "bad", "ok"]),
                                 generation_rows(prompts, ["ok", "ok", "ok"]), n_resamples=50)
    key = win_rate_key("proxy:gold-rm@rev42")
    assert metrics[key]["value"] == pytest.approx(0.5)  # win, loss, tie
    assert metrics[key]["inconsistent"] == 0 and metrics[key]["judge"] == "proxy:gold-rm@rev42"
    assert [r["status"] for r in rows] == ["win", "loss", "tie"]
    # 5 distinct (prompt, text) pairs (prompt 2's policy and reference texts are equal), one batch
    assert gold.scored == 5 and gold.calls == 1
    assert judge.usage.verdicts == 6 and judge.usage.price_usd == 0.0


def test_gold_revision_sources():
    assert gold_revision(FakeGold("k1")) == "k1"

    class WithRevision:
        revision = "sha256:abc"

    assert gold_revision(WithRevision()) == "sha256:abc"
    torch = pytest.importorskip("torch")
    lin = torch.nn.Linear(2, 1)
    torch.nn.init.constant_(lin.weight, 0.5)
    torch.nn.init.constant_(lin.bias, 0.0)
    r1 = gold_revision(lin)
    assert r1.startswith("sha256:") and r1 == gold_revision(lin)
    with torch.no_grad():
        lin.bias.add_(1.0)
    assert gold_revision(lin) != r1


def _rows(domain_outcomes: dict[str, list[str]]) -> dict[str, list[dict]]:
    mapping = {"win": ("A", "B"), "loss": ("B", "A"), "tie": ("tie", "tie")}
    out = {}
    for d, outcomes in domain_outcomes.items():
        out[d] = [{"prompt_id": f"{d}{i}", "policy_length": 10, "reference_length": 10,
                   POLICY_FIRST: {"winner": mapping[o][0]}, REFERENCE_FIRST: {"winner": mapping[o][1]}}
                  for i, o in enumerate(outcomes)]
    return out


def test_macro_win_rate_counts_each_domain_once():
    rows = _rows({"big": ["win"] * 30, "small": ["loss", "tie"]})
    macro = macro_win_rate(rows, n_resamples=200)
    assert macro["win_rate"]["value"] == pytest.approx((1.0 + 0.25) / 2)
    assert macro["win_rate"]["n"] == 2 and macro["win_rate"]["ci_low"] <= macro["win_rate"]["value"]
    assert macro["lc_win_rate"]["value"] == pytest.approx((1.0 + 0.25) / 2, abs=1e-3)
    check_metric(macro["win_rate"])
    check_metric(macro["lc_win_rate"])


_EVAL_SCRIPT = r"""
import json, sys
import evaluate
from ood_pl_bench.metrics.hf_evaluate import module_path
from ood_pl_bench.judges.win_rate import win_rate_from_verdicts

pf = ["A", "A", "B", "A", "tie", None, "B"]
rf = ["B", "B", "A", "A", "tie", "B", "B"]
lp = [10, 20, 5, 7, 8, 9, 30]
lr = [10, 10, 10, 7, 8, 9, 10]
wr = evaluate.load(module_path("win_rate"))
for a, b in [(0, 2), (2, 3), (3, 7)]:
    wr.add_batch(policy_first=pf[a:b], reference_first=rf[a:b], policy_length=lp[a:b], reference_length=lr[a:b])
batched = wr.compute()
full = evaluate.load(module_path("win_rate")).compute(policy_first=pf, reference_first=rf, policy_length=lp,
                                                       reference_length=lr, full_report=True, seed=2)
ref = win_rate_from_verdicts(pf, rf, lp, lr, seed=2)
json.dump({"batched": batched, "full": full, "ref": ref}, sys.stdout)
"""


@pytest.mark.slow
def test_evaluate_module_offline(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "HF_MODULES_CACHE": str(tmp_path / "hf" / "modules"),
           "HF_EVALUATE_CACHE": str(tmp_path / "hf" / "evaluate")}
    proc = subprocess.run([sys.executable, "-c", _EVAL_SCRIPT], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    b = out["batched"]
    # win, win, loss, inconsistent, tie, unparseable (tie), inconsistent -> 4 / 7 over all pairs
    assert b["win_rate"] == pytest.approx(4 / 7) and b["n"] == 7
    assert (b["wins"], b["ties"], b["losses"], b["unparseable"], b["inconsistent"]) == (2, 4, 1, 1, 2)
    assert b["lc_win_rate"] == pytest.approx(out["ref"]["lc_win_rate"]["value"])
    assert out["full"] == out["ref"]
