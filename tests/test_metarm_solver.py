"""The metarm solver: meta-training helps on a synthetic OOD problem, runs end to end on the smoke
profile, and a rerun reuses the finished meta-training."""

from __future__ import annotations

import contextlib
import json
import random

import pytest
import torch

from baselines.metarm import MetaRMConfig, MetaRMSolver, meta_train
from baselines.metarm.metatest import WeightedUpdate, weighted_meta_test
from baselines.metarm.solver import SourceDomain
from ood_pl_bench import runner
from ood_pl_bench.errors import UsageError
from ood_pl_bench.runner import RunConfig, comparable_metrics
from ood_pl_bench.solver import build_config

# --- a synthetic OOD problem: one preference rule shared by every domain ------------------------------

GOOD, BAD = "terrible", "wonderful"  # the fresh tiny reward model happens to prefer BAD: it must learn
WORDS = {
    "coffee": "beans grind water brew cup hot fresh boiling home".split(),
    "italian": "read listen speak friends notes practice day write learn".split(),
    "code": "error stack trace message print values variables check code".split(),
    "held_out": "battery screen bright product quality seller days emails knife".split(),
}


def _domain(name: str, n_prompts: int, n_pairs: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Reference samples and pairs of one domain: two responses with the same domain words that
    differ only in the marker word (GOOD is preferred); different domains use different words."""
    rng = random.Random(seed)
    words = WORDS[name]

    def twins() -> tuple[str, str]:
        body = [rng.choice(words) for _ in range(rng.randint(3, 5))]
        at = rng.randint(0, len(body))
        return (" ".join(body[:at] + [GOOD] + body[at:]), " ".join(body[:at] + [BAD] + body[at:]))

    rows = []
    for i in range(n_prompts):
        samples = list(twins())
        rng.shuffle(samples)
        rows.append({"prompt_id": f"{name}-{i}", "prompt": f"How do I {rng.choice(words)} the {rng.choice(words)}?",
                     "samples": [{"text": t, "ref_logprob": 0.0, "finished": True} for t in samples]})
    pairs = []
    for i in range(n_pairs):
        chosen, rejected = twins()
        pairs.append({"pair_id": f"{name}-p{i}", "item_id": f"{name}-p{i}", "chosen": chosen, "rejected": rejected,
                      "prompt": f"What about {rng.choice(words)} and {rng.choice(words)}?"})
    return rows, pairs


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    """Tiny policy (fp32), the three source domains and the held-out domain's samples and pairs."""
    monkeypatch.setenv("OODPL_CACHE", str(tmp_path / "cache"))
    from ood_pl_bench.models.policy import Policy
    from ood_pl_bench.models.resolve import resolve_policy, resolve_reward_backbone
    from ood_pl_bench.models.reward import RewardModel
    from ood_pl_bench.profiles import get_profile
    from ood_pl_bench.tasks import get_task

    task = get_profile("smoke").apply(get_task("qa"))
    policy = Policy(resolve_policy("tiny-llama"), task, dtype="fp32", seed=0)
    backbone = resolve_reward_backbone("tiny-bert")
    sources = []
    for i, name in enumerate(("coffee", "italian", "code")):
        rows, pairs = _domain(name, 8, 16, i)
        sources.append(SourceDomain(name, pairs, rows))
    held_rows, held_pairs = _domain("held_out", 8, 32, 99)
    n = len(held_pairs)
    ref = policy.sequence_logprobs([p["prompt"] for p in held_pairs] * 2,
                                   [p["chosen"] for p in held_pairs] + [p["rejected"] for p in held_pairs],
                                   reference=True)
    ref_lp = {p["pair_id"]: (float(ref[i]), float(ref[n + i])) for i, p in enumerate(held_pairs)}
    return {"policy": policy, "make_rm": lambda: RewardModel.from_pretrained(backbone, seed=0),
            "sources": sources, "held_rows": held_rows, "held_pairs": held_pairs, "ref_lp": ref_lp}


def _held_out_metrics(s: dict, rm, cfg: MetaRMConfig) -> tuple[float, float]:
    """(pl_accuracy, rm_accuracy) on the held-out pairs after the weighted meta-test with ``rm``,
    computed by the benchmark's own scoring code."""
    from ood_pl_bench import protocol
    from ood_pl_bench.evaluation import score_pairs
    from ood_pl_bench.solver import DomainPolicy

    options = WeightedUpdate(steps=cfg.meta_test_steps, lr=cfg.test_lr, beta=cfg.beta,
                             prompts_per_step=cfg.test_prompts, samples_per_prompt=cfg.samples_per_prompt)
    adapted = weighted_meta_test(s["policy"], rm, s["held_rows"], options, seed=5)
    rows = score_pairs(s["policy"], DomainPolicy(adapter=adapted.adapter), s["held_pairs"], s["ref_lp"],
                       reward_model=rm, batch_size=16, timer=lambda phase: contextlib.nullcontext())
    metrics = protocol.pair_metrics(rows, explicit_likelihood=True, has_reward_model=True)
    return metrics["pl_accuracy"]["value"], metrics["rm_accuracy"]["value"]


def test_meta_training_improves_held_out_domain_and_is_deterministic(synthetic):
    cfg = MetaRMConfig(meta_steps=4, alpha=0.02, eta=1e-2, beta=0.25, inner_prompts=2, outer_pairs=4,
                       meta_test_steps=4)
    runs = []
    for _ in range(2):
        rm = synthetic["make_rm"]()
        before = _held_out_metrics(synthetic, rm, cfg)
        curves = meta_train(synthetic["policy"], rm, synthetic["sources"], cfg, seed=1)
        after = _held_out_metrics(synthetic, rm, cfg)
        runs.append((before, after, curves, {k: v.clone() for k, v in rm.state_dict().items()}))
    (pl0, rm0), (pl1, rm1), curves, _ = runs[0]
    assert rm1 > rm0, (rm0, rm1)
    assert pl1 > pl0, (pl0, pl1)
    assert len(curves["outer_loss"]) == cfg.meta_steps
    # same seed, same numbers
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    for k in ("outer_loss", "pl_accuracy", "rm_accuracy", "hypergrad_norm", "domain"):
        assert curves[k] == runs[1][2][k], k
    for k, v in runs[0][3].items():
        assert torch.equal(v, runs[1][3][k]), k


def test_exact_hypergradient_runs_in_meta_training(synthetic):
    cfg = MetaRMConfig(meta_steps=1, inner_steps=2, hypergrad="exact", alpha=0.02, eta=1e-2, beta=0.25,
                       inner_prompts=1, outer_pairs=2, weights="exp")
    curves = meta_train(synthetic["policy"], synthetic["make_rm"](), synthetic["sources"], cfg, seed=0)
    assert len(curves["outer_loss"]) == 1 and curves["hypergrad_norm"][0] > 0


def test_implicit_outer_margin_weighs_every_pair_near_one_half(synthetic):
    """With outer_margin=implicit the outer loss is −log σ(A − A_ref): about log 2 after a small inner
    step, whatever the pairs' raw likelihood margins."""
    import math

    cfg = MetaRMConfig(meta_steps=4, alpha=1e-3, eta=1e-2, beta=0.25, inner_prompts=2, outer_pairs=3,
                       outer_margin="implicit")
    curves = meta_train(synthetic["policy"], synthetic["make_rm"](), synthetic["sources"], cfg, seed=0)
    assert all(abs(x - math.log(2)) < 0.05 for x in curves["outer_loss"]), curves["outer_loss"]
    assert all(x > 0 for x in curves["hypergrad_norm"])


@pytest.mark.parametrize("outer_margin", ["likelihood", "implicit"])
def test_curves_score_the_implicit_and_likelihood_margins(synthetic, monkeypatch, outer_margin):
    """pl_accuracy is the sign of A − A_ref and pl_likelihood_accuracy the sign of A, whichever margin
    the loss takes (a stub hypergradient returns known margins)."""
    from baselines.metarm import hypergrad as hg
    from baselines.metarm import solver as metarm_solver

    implicit = torch.tensor([1.0, -1.0, 2.0])   # A − A_ref of the three outer pairs
    seen = {}

    def stub(loglik, reward_fn, rm_params, theta0, inner, outer, *, margin_offset=None, **kw):
        ref = hg.pair_margins(loglik, theta0, outer).detach()
        seen["ref"] = ref
        assert (margin_offset is not None) == (outer_margin == "implicit")
        if margin_offset is not None:
            torch.testing.assert_close(margin_offset, ref, rtol=0, atol=0)
        margins = implicit if outer_margin == "implicit" else ref + implicit
        return hg.MetaGradient(loss=torch.tensor(0.5), margins=margins,
                               grads={k: torch.zeros_like(p) for k, p in rm_params.items()}, theta={})

    monkeypatch.setitem(metarm_solver.HYPERGRADIENTS, "analytic", stub)
    cfg = MetaRMConfig(meta_steps=1, outer_pairs=3, outer_margin=outer_margin)
    curves = meta_train(synthetic["policy"], synthetic["make_rm"](), synthetic["sources"], cfg, seed=0)
    assert curves["pl_accuracy"] == [pytest.approx(2 / 3)]
    likelihood = seen["ref"] + implicit
    expected = float(torch.where(likelihood > 0, 1.0, torch.where(likelihood == 0, 0.5, 0.0)).mean())
    assert curves["pl_likelihood_accuracy"] == [pytest.approx(expected)]


# --- config -----------------------------------------------------------------------------------------


def test_config_validation_and_help():
    import dataclasses

    for f in dataclasses.fields(MetaRMConfig):
        assert f.metadata.get("help"), f.name
    MetaRMConfig().validate()
    for bad in ({"samples_per_prompt": 1}, {"beta": 0.0}, {"weights": "linear"}, {"hypergrad": "fd"},
                {"inner_steps": 0}, {"meta_test_optimizer": "rmsprop"}, {"meta_test_lr": -1.0},
                {"outer_margin": "reference"}):
        with pytest.raises(UsageError):
            build_config(MetaRMConfig, bad)
    cfg = build_config(MetaRMConfig, {"meta_test_lr": "0.01", "weights": "exp", "seed": "3"})
    assert cfg.meta_test_lr == 0.01 and cfg.weights == "exp" and cfg.seed == 3
    assert MetaRMConfig(meta_test_optimizer="adam").test_lr == 1e-3
    assert "meta_test_steps" not in MetaRMConfig().meta_training_options()


def test_meta_test_ppo_without_ppo_baseline_is_a_clear_error(monkeypatch):
    from baselines.metarm import ppo_bridge

    monkeypatch.setattr(ppo_bridge, "ppo_available", lambda: (False, "no solver named 'ppo' is installed"))
    with pytest.raises(UsageError, match="meta_test=ppo needs the ppo baseline"):
        build_config(MetaRMConfig, {"meta_test": "ppo"})
    with pytest.raises(UsageError, match="only apply to meta_test=weighted"):
        build_config(MetaRMConfig, {"meta_test": "ppo", "meta_test_steps": "9"})


# --- end to end through the runner ------------------------------------------------------------------


def test_smoke_run_end_to_end(smoke_env):
    out = smoke_env / "qa"
    results = runner.run(RunConfig(method="metarm", task="qa", profile="smoke"), out=out)
    held = [d for d in results["domains"] if d["role"] == "held_out"]
    assert len(held) == 10
    for d in held:
        assert d["metrics"]["rm_accuracy"]["applicable"] is True
        assert 0.0 <= d["metrics"]["rm_accuracy"]["value"] <= 1.0
        assert d["metrics"]["kl"]["value"] != 0.0  # the meta-test moved the policy
    steps = MetaRMConfig().meta_steps
    for fold in ("A", "B"):
        curves = json.loads((out / "curves" / f"{fold}.json").read_text())
        for key in ("outer_loss", "pl_accuracy", "rm_accuracy"):
            assert len(curves[key]) == steps, key
        assert (out / "curves" / f"{fold}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / "solver" / fold / "reward_model" / "model.safetensors").is_file()


def test_rerun_reuses_meta_training(smoke_env, monkeypatch):
    from baselines.metarm import solver as solver_mod

    cfg = RunConfig(method="metarm", task="qa", profile="smoke", seed=5, domains=("coffee", "cardano"),
                    in_distribution=False)
    with pytest.raises(KeyboardInterrupt):
        runner.run(cfg, out=smoke_env / "r", stop_after_units=2)  # fit:A and one domain, then "killed"

    def no_fit(self):
        raise AssertionError("fit must not run again")

    with monkeypatch.context() as m:
        m.setattr(MetaRMSolver, "fit", no_fit)
        resumed = runner.run(cfg, out=smoke_env / "r")
    assert {d["domain"] for d in resumed["domains"]} == {"coffee", "cardano"}

    # Another run directory that only changes the meta-test reuses the cached meta-training.
    def no_meta_train(*args, **kwargs):
        raise AssertionError("meta-training must be reused")

    monkeypatch.setattr(solver_mod, "meta_train", no_meta_train)
    other = RunConfig(method="metarm", task="qa", profile="smoke", seed=5, domains=("coffee", "cardano"),
                      in_distribution=False, method_options={"meta_test_steps": 2})
    changed = runner.run(other, out=smoke_env / "r2")
    meta = json.loads((smoke_env / "r2" / "solver" / "A" / "metarm.json").read_text())
    first = json.loads((smoke_env / "r" / "solver" / "A" / "metarm.json").read_text())
    assert meta["key"] == first["key"]
    assert (smoke_env / "r2" / "curves" / "A.png").is_file()
    assert comparable_metrics(changed) != comparable_metrics(resumed)  # the meta-test did change


def test_meta_test_ppo_through_the_ppo_baseline(smoke_env):
    from ood_pl_bench.registry import solvers

    if "ppo" not in solvers.names():
        pytest.skip("the ppo baseline is not installed")
    cfg = RunConfig(method="metarm", task="qa", profile="smoke", seed=5, domains=("coffee",),
                    in_distribution=False, method_options={"meta_test": "ppo"})
    results = runner.run(cfg, out=smoke_env / "ppo")
    (held,) = [d for d in results["domains"] if d["role"] == "held_out"]
    assert held["metrics"]["kl"]["value"] != 0.0
    assert held["metrics"]["rm_accuracy"]["applicable"] is True
    assert (smoke_env / "ppo" / "solver" / "A" / "ppo" / "coffee.safetensors").is_file()


def test_training_device_key_leaves_cpu_keys_unchanged():
    """Cached BT and meta-trained RMs name a non-CPU training device; CPU keys get no field."""
    from ood_pl_bench.paths import training_device_key

    assert training_device_key(torch.device("cpu")) == {} == training_device_key("cpu")
    assert training_device_key(torch.device("cuda:1")) == {"device": "cuda"} == training_device_key("cuda:0")
