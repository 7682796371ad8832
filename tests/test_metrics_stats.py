"""Statistics helpers and the metric-dict schema, on hand-computed cases."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from ood_pl_bench.metrics import schema, stats

Z95 = 1.959963984540054  # Phi^-1(0.975)


def wilson_by_hand(s: float, n: int, z: float = Z95) -> tuple[float, float]:
    p = s / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


# --- wilson_interval -------------------------------------------------------------------------


def test_wilson_matches_table_value_and_closed_form():
    lo, hi = stats.wilson_interval(3, 10)
    assert (lo, hi) == pytest.approx((0.1078, 0.6032), abs=1e-4)  # textbook value for 3/10
    assert (lo, hi) == pytest.approx(wilson_by_hand(3, 10), abs=1e-12)


def test_wilson_half_credit_uses_closed_form_and_is_continuous():
    assert stats.wilson_interval(2.5, 5) == pytest.approx(wilson_by_hand(2.5, 5), abs=1e-12)
    # [1, 0, 0.5] -> 1.5 successes out of 3
    assert stats.wilson_interval(1.5, 3) == pytest.approx(wilson_by_hand(1.5, 3), abs=1e-12)
    assert stats.wilson_interval(3 - 1e-9, 10) == pytest.approx(stats.wilson_interval(3, 10), abs=1e-8)


def test_wilson_edges():
    assert stats.wilson_interval(0, 0) == (None, None)
    assert stats.wilson_interval(0, 10)[0] == 0.0
    assert stats.wilson_interval(10, 10)[1] == 1.0
    lo90, hi90 = stats.wilson_interval(3, 10, confidence=0.90)
    lo95, hi95 = stats.wilson_interval(3, 10)
    assert lo95 < lo90 < hi90 < hi95
    for bad in [(11, 10), (-1, 10), (1, -1), (1, 2.5), (float("nan"), 3)]:
        with pytest.raises(ValueError):
            stats.wilson_interval(*bad)
    with pytest.raises(ValueError):
        stats.wilson_interval(1, 2, confidence=1.0)


# --- bootstrap_ci ----------------------------------------------------------------------------


def test_bootstrap_ci_contains_mean_and_is_deterministic():
    values = np.random.default_rng(1).normal(size=60)
    ci = stats.bootstrap_ci(values, n_resamples=500, seed=3)
    assert ci == stats.bootstrap_ci(values, n_resamples=500, seed=3)
    assert ci != stats.bootstrap_ci(values, n_resamples=500, seed=4)
    assert ci[0] < values.mean() < ci[1]
    lo, hi = stats.bootstrap_ci(values, n_resamples=500, seed=3, method="BCa")
    assert lo < values.mean() < hi


def test_bootstrap_ci_small_and_constant_data_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stats.bootstrap_ci([]) == (None, None)
        assert stats.bootstrap_ci([0.7]) == (None, None)
        m = float(np.mean([0.1] * 7))  # 0.09999999999999999: the interval collapses onto the estimate
        assert stats.bootstrap_ci([0.1] * 7) == (m, m)
        assert stats.bootstrap_ci([0.5] * 4, method="BCa") == (0.5, 0.5)
        # BCa is undefined here (equal jackknife values): falls back to the percentile interval
        lo, hi = stats.bootstrap_ci([0, 0, 0, 0, 1], method="BCa", n_resamples=300)
    assert 0.0 <= lo <= 0.2 <= hi <= 1.0
    with pytest.raises(ValueError):
        stats.bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError):
        stats.bootstrap_ci([1.0, 2.0], method="basic")


# --- paired_bootstrap ------------------------------------------------------------------------


def test_paired_bootstrap_identical_and_dominating():
    same = stats.paired_bootstrap([1, 0, 1, 0.5], [1, 0, 1, 0.5], n_resamples=200)
    assert same == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0, "n": 4}
    better = stats.paired_bootstrap([1, 1, 1], [0, 0, 0], n_resamples=199)
    assert better["diff"] == 1.0 and better["ci_low"] == better["ci_high"] == 1.0
    assert better["p_value"] == pytest.approx(1 / 200)


def test_paired_bootstrap_keeps_pairs():
    rng = np.random.default_rng(0)
    base = rng.normal(size=80)
    a, b = base + 0.1, base  # tiny shift, huge shared noise: only paired resampling sees it
    res = stats.paired_bootstrap(a, b, n_resamples=300, seed=1)
    assert res["diff"] == pytest.approx(0.1)
    assert res["ci_low"] == pytest.approx(0.1) and res["ci_high"] == pytest.approx(0.1)
    assert res["p_value"] < 0.01
    assert res == stats.paired_bootstrap(a, b, n_resamples=300, seed=1)


def test_paired_bootstrap_edges():
    assert stats.paired_bootstrap([], []) == {"diff": None, "ci_low": None, "ci_high": None, "p_value": None, "n": 0}
    one = stats.paired_bootstrap([1.0], [0.0])
    assert one["diff"] == 1.0 and one["ci_low"] is None and one["p_value"] is None
    with pytest.raises(ValueError):
        stats.paired_bootstrap([1, 0], [1])


# --- mcnemar ---------------------------------------------------------------------------------


def test_mcnemar_hand_table():
    # 5 both right, 3 both wrong, 8 only b right, 2 only a right
    a = [1] * 5 + [0] * 3 + [0] * 8 + [1] * 2
    b = [1] * 5 + [0] * 3 + [1] * 8 + [0] * 2
    res = stats.mcnemar(a, b)
    assert (res["b01"], res["b10"], res["n"]) == (8, 2, 18)
    assert res["p_value"] == pytest.approx(2 * (1 + 10 + 45) / 1024)  # 2 P(X <= 2), X ~ Bin(10, 1/2)


def test_mcnemar_ties_rule():
    # reference policy (all ties) vs a coin-flipping method: no evidence either way
    res = stats.mcnemar([0.5] * 6, [1, 0, 1, 0, 1, 0])
    assert (res["b01"], res["b10"], res["p_value"]) == (3, 3, 1.0)
    res = stats.mcnemar([0.5, 0.5, 1, 0], [1, 0.5, 0.5, 0])
    assert (res["b01"], res["b10"]) == (1, 1)
    assert stats.mcnemar([1, 0], [1, 0])["p_value"] == 1.0
    assert stats.mcnemar([], []) == {"b01": 0, "b10": 0, "p_value": None, "n": 0}
    with pytest.raises(ValueError):
        stats.mcnemar([1, 0], [1])
    with pytest.raises(ValueError):
        stats.mcnemar([2], [1])


# --- holm ------------------------------------------------------------------------------------


def test_holm_known_values():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(1*0.04, 0.06)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1, monotone
    assert stats.holm([0.02, None, 0.04]) == pytest.approx([0.04, None, 0.04])
    assert stats.holm([]) == []
    assert stats.holm([0.3]) == [0.3]
    for bad in ([1.5], [-0.1], [float("nan")]):
        with pytest.raises(ValueError):
            stats.holm(bad)


# --- macro average and its CI, gap ----------------------------------------------------------


def test_macro_average_counts_each_domain_once():
    assert stats.macro_average({"a": 0.5, "b": 1.0, "c": 0.0}) == 0.5
    assert stats.macro_average({"a": None, "b": None}) is None
    assert stats.macro_average({"a": 0.2, "b": 0.4}, domains=["b", "a"]) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="'b'"):
        stats.macro_average({"a": 0.5, "b": None})
    with pytest.raises(ValueError, match="missing"):
        stats.macro_average({"a": 0.5}, domains=["a", "b"])
    with pytest.raises(ValueError):
        stats.macro_average({})
    with pytest.raises(ValueError):
        stats.macro_average({"a": float("nan")})


def test_macro_bootstrap_ci_is_stratified():
    big = [0.0, 1.0] * 500  # mean 0.5, 1000 pairs
    small = [1.0, 1.0, 1.0]  # mean 1.0, 3 pairs, constant
    lo, hi = stats.macro_bootstrap_ci({"big": big, "small": small}, n_resamples=300, seed=0)
    # macro average 0.75 (pooled would be ~0.5); only "big" varies, by about +-0.03 / 2
    assert 0.72 < lo < 0.75 < hi < 0.78
    assert (lo, hi) == stats.macro_bootstrap_ci({"small": small, "big": big}, n_resamples=300, seed=0)


def test_macro_bootstrap_ci_edges():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stats.macro_bootstrap_ci({"a": [1.0], "b": [0.0, 0.0]}) == (0.5, 0.5)
    with pytest.raises(ValueError):
        stats.macro_bootstrap_ci({"a": [1.0, 0.0], "b": []})
    with pytest.raises(ValueError):
        stats.macro_bootstrap_ci({})
    with pytest.raises(ValueError):
        stats.macro_bootstrap_ci({"a": [1.0, 0.0]}, domains=["a", "b"])


def test_generalization_gap():
    assert stats.generalization_gap(0.7, 0.6) == pytest.approx(0.1)
    assert stats.generalization_gap(0.5, 0.6) == pytest.approx(-0.1)
    assert stats.generalization_gap(None, 0.6) is None
    assert stats.generalization_gap(0.6, None) is None


# --- schema ----------------------------------------------------------------------------------


def test_metric_shape_and_json():
    m = schema.metric(np.float64(0.5), (np.float64(0.25), 0.75), n=np.int64(4), ci_method="wilson", ties=np.int64(1))
    assert m == {
        "value": 0.5, "ci_low": 0.25, "ci_high": 0.75, "n": 4, "applicable": True,
        "ci_method": "wilson", "ties": 1,
    }
    assert type(m["value"]) is float and type(m["n"]) is int and type(m["ties"]) is int
    assert json.loads(json.dumps(m)) == m
    schema.check_metric(m)
    empty = schema.metric(None, n=0, ci_method="wilson")
    assert empty["ci_method"] is None  # no interval, no method
    schema.check_metric(empty)
    own = schema.metric(0.5, (0.4, 0.6), n=2, ci_method="jackknife")  # a plug-in's own method name
    schema.check_metric(own)


def test_metric_refuses_bad_values():
    for kwargs in (
        dict(value=float("nan"), n=1),
        dict(value=0.5, ci=(0.6, 0.4), n=1, ci_method="wilson"),
        dict(value=0.5, ci=(0.4, None), n=1, ci_method="wilson"),
        dict(value=0.5, ci=(0.4, 0.6), n=1),
        dict(value=0.5, ci=(0.4, 0.6), n=1, ci_method=" "),
        dict(value=0.5, n=-1),
        dict(value=0.5, n=1, applicable=False),
    ):
        with pytest.raises(ValueError):
            schema.metric(**kwargs)


def test_not_applicable_and_check_metric():
    na = schema.not_applicable("dpo has no reward model")
    assert na == {
        "value": None, "ci_low": None, "ci_high": None, "n": 0, "applicable": False,
        "ci_method": None, "reason": "dpo has no reward model",
    }
    schema.check_metric(na)
    with pytest.raises(ValueError):
        schema.not_applicable("")
    good = schema.metric(0.5, (0.4, 0.6), n=3, ci_method="bootstrap_percentile")
    for broken in (
        {k: v for k, v in good.items() if k != "n"},
        {**good, "ci_high": None},
        {**good, "ci_method": None},
        {**good, "ci_method": ""},
        {**good, "value": None},
        {**good, "n": True},
        {**na, "value": 0.5},
        [good],
    ):
        with pytest.raises(ValueError):
            schema.check_metric(broken)


def test_as_1d_refuses_nested_and_scalars():
    assert stats.as_1d([1, 2]).dtype == np.float64
    for bad in (3.0, [[1, 2]], [[1], [2, 3]], ["x"]):
        with pytest.raises(ValueError):
            stats.as_1d(bad)


def test_statistic_without_axis_gives_the_same_resamples():
    a, b = [1.0, 0.0, 1.0, 1.0, 0.5, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0, 0.5, 1.0, 0.0, 0.0]
    plain = lambda x: float(np.median(x))  # noqa: E731 (no ``axis``: scipy loops over resamples)
    opts = dict(n_resamples=100, seed=2)
    assert stats.paired_bootstrap(a, b, statistic=plain, **opts) == stats.paired_bootstrap(a, b, statistic=np.median, **opts)
    assert stats.bootstrap_ci(a, statistic=plain, **opts) == stats.bootstrap_ci(a, statistic=np.median, **opts)
    per_domain = {"x": a, "y": b, "z": [3.0]}
    assert stats.macro_bootstrap_ci(per_domain, statistic=plain, **opts) == stats.macro_bootstrap_ci(
        per_domain, statistic=np.median, **opts
    )
