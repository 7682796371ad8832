"""Every baseline runs end to end through the runner on the smoke profile (tiny models, few items)."""

from __future__ import annotations

import json

import pytest
import torch

from ood_pl_bench import runner
from ood_pl_bench.results import RunResults
from ood_pl_bench.runner import RunConfig

# Small budgets: these tests check wiring and reporting, not learning.
FAST = {
    "dpo": {"steps": "3", "batch_size": "2"},
    "ppo": {"updates": "2", "rollout_prompts": "4", "minibatch_size": "4", "ppo_epochs": "1"},
    "rwr": {"meta_test_steps": "2"},
    "bon": {"n": "3"},
}
DOMAINS = ("coffee", "beer")  # one held-out domain of each qa fold


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run far faster single-threaded on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run(method: str, out, **kwargs) -> dict:
    cfg = RunConfig(method=method, task="qa", profile="smoke", method_options=dict(FAST[method]),
                    domains=DOMAINS, **kwargs)
    results = runner.run(cfg, out=out)
    RunResults.model_validate(results)
    return results


def _held(results: dict) -> list[dict]:
    return [d for d in results["domains"] if d["role"] == "held_out"]


@pytest.mark.parametrize("method", ["dpo", "ppo", "rwr"])
def test_trained_baselines_smoke(smoke_env, method):
    results = _run(method, smoke_env / method)
    held = _held(results)
    assert {d["domain"] for d in held} == set(DOMAINS)
    for d in held:
        m = d["metrics"]
        assert m["pl_accuracy"]["value"] is not None and m["kl"]["value"] is not None
        assert m["gold_reward"]["value"] is not None
        if method == "dpo":
            assert m["rm_accuracy"]["applicable"] is False
        else:  # ppo and rwr report their Bradley-Terry reward model
            assert m["rm_accuracy"]["value"] is not None
    # the methods moved the policy away from the reference on at least one domain
    assert any(d["metrics"]["kl"]["value"] != 0.0 for d in held)
    assert results["method"] == method and results["method_config"]


def test_bon_smoke_reports_pl_metrics_as_not_applicable(smoke_env):
    results = _run("bon", smoke_env / "bon", in_distribution=False)
    for d in _held(results):
        m = d["metrics"]
        for name in ("pl_accuracy", "pl_likelihood_accuracy", "pl_margin", "pl_ties", "pl_bt_loglik", "kl"):
            assert m[name]["applicable"] is False and m[name]["value"] is None, name
            assert "not applicable" in json.dumps(m[name]) or m[name].get("reason")
        assert m["rm_accuracy"]["value"] is not None
        assert m["gold_reward"]["value"] is not None
    agg = results["aggregates"]["held_out"]
    assert agg["pl_accuracy"]["applicable"] is False
    assert agg["rm_accuracy"]["value"] is not None and agg["gold_reward"]["value"] is not None


def test_ppo_rwr_bon_share_one_reward_model_and_resume(smoke_env):
    a = _run("rwr", smoke_env / "rwr", in_distribution=False)
    b = _run("bon", smoke_env / "bon", in_distribution=False)
    record = lambda name, fold: json.loads((smoke_env / name / "solver" / fold / "bt_rm.json").read_text())
    for fold in ("A", "B"):
        assert record("rwr", fold)["key"] == record("bon", fold)["key"]
    rm_acc = lambda r: {d["domain"]: d["metrics"]["rm_accuracy"]["value"] for d in _held(r)}
    assert rm_acc(a) == rm_acc(b)  # the same r_ψ scores the same test pairs identically
    again = _run("rwr", smoke_env / "rwr", in_distribution=False)  # all units done: a pure reload
    assert runner.comparable_metrics(again) == runner.comparable_metrics(a)


def test_best_of_n_picks_the_top_scored_candidate():
    from baselines.bon import best_of_n

    texts = [["a", "b", "c", "d"], ["e", "f"]]
    scores = torch.tensor([0.1, 0.9, 0.5, 0.5, -1.0, -2.0])
    assert best_of_n(texts, scores, n=2) == [["b", "c"], ["e"]]


def test_rwr_uses_metarm_defaults_and_update():
    from baselines.metarm import MetaRMConfig
    from baselines.rwr import RWRConfig

    rwr, meta = RWRConfig(), MetaRMConfig()
    update = rwr.weighted_update()
    assert (update.steps, update.lr, update.beta) == (meta.meta_test_steps, meta.test_lr, meta.beta)
    assert (update.prompts_per_step, update.samples_per_prompt) == (meta.test_prompts, meta.samples_per_prompt)
    assert update.weights == meta.weights and update.optimizer == meta.meta_test_optimizer
