"""Generation metrics: gold reward and KL averaged per prompt, bootstrap over prompts."""

from __future__ import annotations

import numpy as np
import pytest

from ood_pl_bench.metrics import generation as G


def test_per_prompt_means_in_first_appearance_order():
    ids, means = G.per_prompt_means([1.0, 10.0, 3.0, 4.0], ["a", "b", "a", "c"])
    assert ids == ["a", "b", "c"]
    assert means.tolist() == [2.0, 10.0, 4.0]


def test_gold_reward_averages_within_prompt_first():
    m = G.gold_reward_report([1.0, 3.0, 10.0], ["p1", "p1", "p2"], seed=0)
    assert m["value"] == 6.0  # mean of per-prompt means (2, 10), not the sample mean 14/3
    assert m["n"] == 2 and m["n_samples"] == 3
    assert m["ci_method"] == "bootstrap_percentile" and m["ci_low"] <= 6.0 <= m["ci_high"]


def test_equal_samples_per_prompt_equal_plain_mean():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=40)
    ids = np.repeat(np.arange(10), 4)  # k = 4 samples per prompt
    rep = G.gold_reward_report(rewards, ids, n_resamples=200)
    assert rep["value"] == pytest.approx(rewards.mean())
    assert rep == G.gold_reward_report(rewards, ids, n_resamples=200)


def test_bootstrap_resamples_prompts_not_samples():
    # samples vary within prompts, but every prompt mean is 1: nothing varies between prompts
    m = G.gold_reward_report([0.0, 2.0, 1.0, 1.0, 3.0, -1.0], [0, 0, 1, 1, 2, 2])
    assert (m["value"], m["ci_low"], m["ci_high"]) == (1.0, 1.0, 1.0)


def test_kl_hand_computed():
    m = G.kl_report([-1.0, -2.0, -3.0], [-2.0, -2.0, -5.0], ["a", "a", "b"])
    assert m["value"] == 1.25  # per-sample 1, 0, 2 -> per-prompt 0.5, 2
    assert m["n"] == 2 and m["n_samples"] == 3
    # the policy at theta_0: KL exactly 0
    same = [-4.0, -7.5, -1.0, -2.0]
    z = G.kl_report(same, same, [0, 0, 1, 1])
    assert (z["value"], z["ci_low"], z["ci_high"]) == (0.0, 0.0, 0.0)


def test_generation_report_pairs_gold_reward_with_kl():
    rep = G.generation_report([1.0, 3.0], [-1.0, -2.0], [-1.5, -2.0], ["a", "b"], seed=1, n_resamples=100)
    assert set(rep) == {"gold_reward", "kl"}
    assert rep["gold_reward"]["value"] == 2.0 and rep["kl"]["value"] == 0.25


def test_empty_and_single_prompt():
    assert G.gold_reward_report([], [])["value"] is None
    assert G.gold_reward_report([], [])["n"] == 0
    assert G.kl_report([], [], [])["value"] is None
    one = G.gold_reward_report([1.0, 2.0], ["a", "a"])
    assert one["value"] == 1.5 and one["n"] == 1 and one["ci_low"] is None and one["ci_method"] is None


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="prompt id"):
        G.gold_reward_report([1.0, 2.0], ["a"])
    with pytest.raises(ValueError, match="differ in length"):
        G.kl_report([1.0, 2.0], [1.0], ["a", "b"])
    with pytest.raises(ValueError, match="finite"):
        G.gold_reward_report([float("inf")], ["a"])
