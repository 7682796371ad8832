"""End-to-end runner tests on the smoke profile: null row, schema, resume after a kill."""

from __future__ import annotations

import json

import pytest

from ood_pl_bench import evaluation, runner
from ood_pl_bench.registry import solvers
from ood_pl_bench.results import RunResults
from ood_pl_bench.runner import RunConfig, comparable_metrics

from .sft_solver import SFTSolver


@pytest.fixture
def sft_registered():
    solvers.register("sft-test", SFTSolver)
    yield
    solvers._extra.pop("sft-test", None)
    solvers.reset()


@pytest.mark.parametrize("task", ["qa", "sentiment"])
def test_reference_smoke_null_row(smoke_env, task):
    results = runner.run(RunConfig(method="reference", task=task, profile="smoke"), out=smoke_env / task)
    parsed = RunResults.model_validate(results)
    held = [d for d in parsed.domains if d.role == "held_out"]
    assert len(held) == 10
    for d in held:
        assert d.metrics["pl_accuracy"].value == 0.5, d.domain
        assert d.metrics["pl_ties"].value == d.n_test_pairs
        assert d.metrics["gold_reward"].value is not None
        assert d.metrics["gold_reward"].ci_low is not None
        assert d.metrics["kl"].value == 0.0
        assert d.metrics["rm_accuracy"].applicable is False
        assert d.fold and d.task == task
        # the offline proxy judge is named in every win-rate column; pi_ref vs itself ties
        win = [k for k in d.metrics if k.startswith("win_rate[proxy:gold-rm")]
        assert len(win) == 1 and d.metrics[win[0]].value == 0.5
    assert parsed.aggregates.held_out["pl_accuracy"].value == 0.5
    assert parsed.judge.startswith("proxy:gold-rm")
    assert any(k.startswith("win_rate[") for k in parsed.aggregates.held_out)
    assert parsed.reduced is True
    assert {d.role for d in parsed.domains} == {"held_out", "source"}
    # per-sample files refer to items by id and hash, never copy source text
    pairs_file = smoke_env / task / held[0].samples["pairs"].path
    row = json.loads(pairs_file.read_text().splitlines()[0])
    assert {"pair_id", "pair_hash", "ref_chosen", "outcome"} <= set(row)
    assert "prompt" not in row and "chosen" not in row


def test_killed_run_resumes_to_identical_results(smoke_env, sft_registered, monkeypatch):
    cfg = RunConfig(method="sft-test", task="qa", profile="smoke", seed=3)
    full = runner.run(cfg, out=smoke_env / "full")

    # Kill in the middle of the third held-out domain (after its pairs were scored).
    calls = {"n": 0}
    real = evaluation.score_generations

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed mid-domain")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "score_generations", dying)
    with pytest.raises(KeyboardInterrupt):
        runner.run(cfg, out=smoke_env / "resumed")
    manifest = json.loads((smoke_env / "resumed" / "manifest.json").read_text())
    assert "fit:A" in manifest["units"] and len(manifest["units"]) == 3  # fit + 2 domains
    assert not (smoke_env / "resumed" / "results.json").exists()
    monkeypatch.setattr(evaluation, "score_generations", real)
    resumed = runner.run(cfg, out=smoke_env / "resumed")
    assert comparable_metrics(resumed) == comparable_metrics(full)
    # the trained method actually moved away from the reference
    assert any(d["metrics"]["pl_accuracy"]["value"] != 0.5 for d in resumed["domains"])


def test_run_dir_with_other_config_is_refused(smoke_env):
    from ood_pl_bench.errors import UsageError

    runner.run(RunConfig(method="reference", task="qa", profile="smoke", domains=("coffee",),
                         in_distribution=False), out=smoke_env / "r")
    with pytest.raises(UsageError, match="different configuration"):
        runner.run(RunConfig(method="reference", task="qa", profile="smoke", seed=1, domains=("coffee",),
                             in_distribution=False), out=smoke_env / "r")


def test_results_name_the_commit_the_run_started_with(smoke_env, monkeypatch):
    """Editing the checkout during a run must not relabel its results; units keep their own commit."""
    from ood_pl_bench import envinfo

    out = smoke_env / "commit"
    # The checkout "changes" as soon as the run has finished a unit.
    monkeypatch.setattr(envinfo, "git_commit", lambda: "edited" if (out / "manifest.json").exists() else "original")
    cfg = RunConfig(method="reference", task="qa", profile="smoke", domains=("coffee",), in_distribution=False)
    results = runner.run(cfg, out=out)
    assert results["git_commit"] == "original"
    manifest = json.loads((out / "manifest.json").read_text())
    assert {u["git_commit"] for u in manifest["units"].values()} == {"original"}
