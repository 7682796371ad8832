"""Preference metrics on hand-computed pairs: outcomes, ties, reference policy, batches, empty input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import log_expit

from ood_pl_bench.metrics import preference as P
from ood_pl_bench.metrics import stats

# Three pairs: margins (-1 + 1.5) - (-2 + 2) = 0.5, 0 - 0 = 0, (-3 + 2) - (-1 + 2) = -2
PC, PR, RC, RR = [-1.0, -2.0, -3.0], [-2.0, -2.0, -1.0], [-1.5, -2.0, -2.0], [-2.0, -2.0, -2.0]


def test_hand_computed_outcomes():
    assert P.implicit_margins(PC, PR, RC, RR).tolist() == [0.5, 0.0, -2.0]
    assert P.pl_outcomes(PC, PR, RC, RR).tolist() == [1.0, 0.5, 0.0]
    # A = policy_chosen - policy_rejected = 1, 0, -2
    assert P.likelihood_outcomes(PC, PR).tolist() == [1.0, 0.5, 0.0]
    assert P.rm_outcomes([2.0, 1.0, 0.0], [1.0, 1.0, 3.0]).tolist() == [1.0, 0.5, 0.0]


def test_atol_makes_small_differences_ties():
    margins_zero_ref = dict(ref_chosen=[0.0] * 3, ref_rejected=[0.0] * 3)
    out = P.pl_outcomes([0.05, -0.05, 0.2], [0.0, 0.0, 0.0], atol=0.1, **margins_zero_ref)
    assert out.tolist() == [0.5, 0.5, 1.0]
    assert P.likelihood_outcomes([1.0, 1.0], [1.125, 0.5], atol=0.125).tolist() == [0.5, 1.0]
    assert P.rm_outcomes([0.0], [0.1], atol=0.1).tolist() == [0.5]
    with pytest.raises(ValueError):
        P.rm_outcomes([0.0], [0.1], atol=-1.0)


def test_report_hand_computed():
    rep = P.preference_report(PC, PR, RC, RR, beta=1.0, seed=0, n_resamples=200)
    assert set(rep) == {"pl_accuracy", "pl_likelihood_accuracy", "pl_margin", "pl_ties", "pl_bt_loglik"}
    acc = rep["pl_accuracy"]
    assert acc["value"] == 0.5 and acc["n"] == 3 and acc["ties"] == 1  # outcomes [1, 0, 0.5]
    assert (acc["wilson_low"], acc["wilson_high"]) == pytest.approx(stats.wilson_interval(1.5, 3))
    assert acc["ci_method"] == "bootstrap_percentile" and acc["ci_low"] <= 0.5 <= acc["ci_high"]
    assert rep["pl_likelihood_accuracy"]["value"] == 0.5
    assert rep["pl_margin"]["value"] == pytest.approx(-0.5)  # (0.5 + 0 - 2) / 3
    assert rep["pl_ties"]["value"] == 1 and rep["pl_ties"]["ci_low"] is None
    expected_ll = (log_expit(0.5) + math.log(0.5) + log_expit(-2.0)) / 3
    assert rep["pl_bt_loglik"]["value"] == pytest.approx(expected_ll)
    assert rep["pl_bt_loglik"]["beta"] == 1.0
    assert rep == P.preference_report(PC, PR, RC, RR, beta=1.0, seed=0, n_resamples=200)


def test_reference_policy_is_exactly_one_half():
    rng = np.random.default_rng(0)
    chosen, rejected = rng.normal(-50, 10, size=41), rng.normal(-50, 10, size=41)
    assert np.all(P.pl_outcomes(chosen, rejected, chosen, rejected) == 0.5)
    rep = P.preference_report(chosen, rejected, chosen, rejected, beta=0.1, n_resamples=100)
    assert rep["pl_accuracy"]["value"] == 0.5
    assert rep["pl_accuracy"]["ci_low"] == rep["pl_accuracy"]["ci_high"] == 0.5
    assert rep["pl_ties"]["value"] == 41
    assert rep["pl_margin"]["value"] == 0.0
    assert rep["pl_bt_loglik"]["value"] == pytest.approx(math.log(0.5))
    # reference log-probs recomputed with float noise: atol absorbs it
    noisy = chosen + rng.normal(0, 1e-6, size=41)
    assert np.all(P.pl_outcomes(noisy, rejected, chosen, rejected, atol=1e-4) == 0.5)


def test_uneven_batches_equal_one_batch():
    rng = np.random.default_rng(7)
    n = 37
    pc, pr, rc, rr = (rng.normal(-20, 3, size=n) for _ in range(4))
    whole = P.preference_report(pc, pr, rc, rr, seed=5, n_resamples=200)
    cuts = [0, 5, 25, 37]  # batches of 5, 20 and 12 pairs
    batches = [tuple(x[a:b].tolist() for x in (pc, pr, rc, rr)) for a, b in zip(cuts, cuts[1:])]
    joined = [sum((list(batch[i]) for batch in batches), []) for i in range(4)]
    assert P.preference_report(*joined, seed=5, n_resamples=200) == whole
    per_batch = [P.pl_outcomes(*batch) for batch in batches]
    assert np.concatenate(per_batch).mean() == whole["pl_accuracy"]["value"]
    # a mean of batch means would weigh the 5-pair batch like the 20-pair one
    assert np.mean([o.mean() for o in per_batch]) != pytest.approx(whole["pl_accuracy"]["value"])


def test_empty_input_gives_none_not_a_crash():
    rep = P.preference_report([], [], [], [])
    for name, entry in rep.items():
        assert entry["value"] is None and entry["n"] == 0 and entry["ci_low"] is None, name
    assert rep["pl_accuracy"]["wilson_low"] is None
    assert P.rm_report([], [])["rm_accuracy"]["value"] is None
    assert P.bt_log_likelihood([]) is None
    assert P.pl_outcomes([], [], [], []).shape == (0,)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="equal lengths"):
        P.pl_outcomes([1.0, 2.0], [1.0], [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        P.pl_outcomes([float("nan")], [1.0], [1.0], [1.0])
    with pytest.raises(ValueError):
        P.bt_log_likelihood([1.0], beta=0.0)
    with pytest.raises(ValueError):
        P.preference_report([[1.0]], [[1.0]], [[1.0]], [[1.0]])


def test_bt_log_likelihood_stable_and_scaled():
    assert P.bt_log_likelihood([0.0]) == pytest.approx(math.log(0.5))
    assert P.bt_log_likelihood([2.0], beta=0.5) == pytest.approx(-0.31326168751822286)  # log sigmoid(1)
    with np.errstate(all="raise"):
        assert P.bt_log_likelihood([1000.0, -1000.0]) == pytest.approx(-500.0)


def test_rm_report_hand_computed():
    rep = P.rm_report([2.0, 1.0, 0.0, 5.0], [1.0, 1.0, 3.0, 4.0], seed=0)
    acc = rep["rm_accuracy"]
    assert set(rep) == {"rm_accuracy"}
    assert acc["value"] == 0.625 and acc["n"] == 4 and acc["ties"] == 1  # [1, 0.5, 0, 1]
    assert (acc["wilson_low"], acc["wilson_high"]) == pytest.approx(stats.wilson_interval(2.5, 4))


finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
pairs = st.lists(st.tuples(finite, finite, finite, finite), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(pairs)
def test_property_accuracy_bounds_and_swap(rows):
    pc, pr, rc, rr = (list(col) for col in zip(*rows))
    acc = P.pl_outcomes(pc, pr, rc, rr).mean()
    swapped = P.pl_outcomes(pr, pc, rr, rc).mean()
    assert 0.0 <= acc <= 1.0
    assert swapped == pytest.approx(1.0 - acc)
    lik = P.likelihood_outcomes(pc, pr).mean()
    assert P.likelihood_outcomes(pr, pc).mean() == pytest.approx(1.0 - lik)


@settings(max_examples=30, deadline=None)
@given(st.lists(finite, min_size=1, max_size=30), st.floats(min_value=0.01, max_value=10))
def test_property_bt_loglik_nonpositive_and_monotone(margins, beta):
    ll = P.bt_log_likelihood(margins, beta)
    assert ll <= 0.0
    assert P.bt_log_likelihood([m + 1.0 for m in margins], beta) >= ll
