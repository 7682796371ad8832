"""``rwr``: reward-weighted regression with the Bradley-Terry reward model r_ψ, through *exactly*
metarm's meta-test — the ablation that isolates the meta-learned reward model.

On each held-out domain, from θ₀ (= π_ref), T steps of the weighted update
θ ← θ + lr·Σ_b w_b ∇_θ log π_θ(y_b|x_b) on the domain's cached reference samples, w the softmax
of r_ψ/β within each prompt's group (SPEC section 4). The update is
:func:`baselines.metarm.weighted_meta_test` itself, its options are built the way
``MetaRMSolver.policy_for`` builds them, the option defaults are read from
:class:`~baselines.metarm.MetaRMConfig`, and the batches are drawn with metarm's own seed for the
domain. So ``rwr`` and ``metarm`` run with the same options and seed differ in one thing only: r_ψ
(Bradley-Terry on pooled source pairs) instead of r_φ (meta-learned).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from baselines.metarm import MetaRMConfig, WeightedUpdate, weighted_meta_test
from ood_pl_bench.runner import derive_seed
from ood_pl_bench.solver import DomainPolicy

from ..common import BTRewardOptions, BTRewardSolver

_METARM = {f.name: f for f in dataclasses.fields(MetaRMConfig)}


def _as_metarm(name: str) -> Any:
    """A dataclass field with metarm's default and help text for option ``name``."""
    f = _METARM[name]
    return field(default=f.default, metadata={"help": f"{f.metadata.get('help', '')} [as metarm]".replace("r_φ", "r_ψ")})


@dataclass
class RWRConfig(BTRewardOptions):
    """Options of ``rwr``: metarm's meta-test options (same names and defaults) plus ``rm_*``."""

    beta: float = _as_metarm("beta")
    alpha: float = _as_metarm("alpha")
    samples_per_prompt: int = _as_metarm("samples_per_prompt")
    inner_prompts: int = _as_metarm("inner_prompts")
    weights: str = _as_metarm("weights")
    max_log_weight: float = _as_metarm("max_log_weight")
    meta_test_steps: int = _as_metarm("meta_test_steps")
    meta_test_optimizer: str = _as_metarm("meta_test_optimizer")
    meta_test_lr: float | None = _as_metarm("meta_test_lr")
    meta_test_prompts: int | None = _as_metarm("meta_test_prompts")
    seed: int | None = field(default=None, metadata={
        "help": "seed of the meta-test batches; None: the run seed (batches then match metarm's)"})

    def metarm_config(self) -> MetaRMConfig:
        """A MetaRMConfig carrying these meta-test options (metarm derives lr and batch from it)."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in _METARM}
        return MetaRMConfig(**shared)

    def validate(self) -> None:
        """Raise ValueError for impossible values (metarm's own checks, then the reward model's)."""
        self.metarm_config().validate()
        self.validate_rm()

    def weighted_update(self) -> WeightedUpdate:
        """The meta-test options, built exactly as ``MetaRMSolver.policy_for`` builds them."""
        cfg = self.metarm_config()
        return WeightedUpdate(steps=cfg.meta_test_steps, lr=cfg.test_lr, beta=cfg.beta,
                              prompts_per_step=cfg.test_prompts, samples_per_prompt=cfg.samples_per_prompt,
                              weights=cfg.weights, max_log_weight=cfg.max_log_weight,
                              optimizer=cfg.meta_test_optimizer)


class RWRSolver(BTRewardSolver):
    """Bradley-Terry RM on pooled source pairs, then metarm's weighted meta-test per held-out domain."""

    name = "rwr"
    description = "BT reward model + metarm's weighted meta-test (ablation isolating the meta-learned RM)"
    Config = RWRConfig

    def __init__(self, config: RWRConfig, ctx: Any):
        super().__init__(config, ctx)
        self.test_curves: dict[str, dict[str, list[float]]] = {}

    def policy_for(self, domain: str) -> DomainPolicy:
        """T weighted steps from θ₀ with the frozen r_ψ on ``domain``'s reference samples."""
        if self.rm is None:
            raise RuntimeError("rwr: policy_for called before fit or load")
        options = self.config.weighted_update()
        base = self.config.seed if self.config.seed is not None else self.ctx.seed
        seed = derive_seed(int(base), f"metarm:test:{domain}")  # metarm's seed: identical batches
        rows = self.ctx.data.reference_samples(domain)
        result = weighted_meta_test(self.policy(), self.rm, rows, options, seed, log=self.ctx.log)
        self.test_curves[domain] = result.curves
        rewards = result.curves.get("reward") or []
        return DomainPolicy(adapter=result.adapter, info={
            "method": "rwr", "fold": self.ctx.fold.name, "meta_test_steps": options.steps,
            "mean_batch_reward": sum(rewards) / len(rewards) if rewards else None})
