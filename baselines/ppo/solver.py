"""The ``ppo`` solver: r_ψ (Bradley-Terry, pooled source pairs) + PPO per held-out domain.

``fit`` trains (or loads from the shared cache) the fold's Bradley-Terry reward model r_ψ. For each
held-out domain, ``policy_for`` starts from θ₀ (= π_ref) and runs :func:`baselines.ppo.ppo.train_ppo`
on that domain's unlabeled training prompts with reward r_ψ − β·KL, generating with the current
policy and the task's evaluation decoding. No held-out preference label is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from ood_pl_bench.solver import DomainPolicy, Solver

from ..common import BTRewardOptions, Curves, bt_reward_model, load_adapter, resolve_seed, save_adapter
from .ppo import PPOHyper, train_ppo


@dataclass
class PPOConfig(BTRewardOptions, PPOHyper):
    """Options of the ``ppo`` baseline: PPO hyperparameters plus the reward model's (``rm_*``)."""

    seed: int | None = field(default=None, metadata={
        "help": "seed of prompt order and sampling; None: derived from the run seed and the domain"})

    def validate(self) -> None:
        """Raise ValueError for impossible values."""
        self.validate_ppo()
        self.validate_rm()

    def hyper(self) -> PPOHyper:
        """The PPO hyperparameters alone."""
        return PPOHyper(**{f.name: getattr(self, f.name) for f in fields(PPOHyper)})


class PPOSolver(Solver):
    """Bradley-Terry RM on pooled source pairs, then PPO on each held-out domain's prompts."""

    name = "ppo"
    description = "BT reward model on source pairs, then PPO (r - beta*KL) on each held-out domain's prompts"
    Config = PPOConfig
    has_reward_model = True

    def __init__(self, config: PPOConfig, ctx):
        super().__init__(config, ctx)
        self.rm = None
        self._policy = None

    def fit(self) -> None:
        """Train (or load from the cache) the fold's Bradley-Terry reward model."""
        self.rm = bt_reward_model(self.ctx, self.config)

    def policy_for(self, domain: str) -> DomainPolicy:
        """PPO from θ₀ on ``domain``'s training prompts; the adapter is kept in the solver folder."""
        path = Path(self.ctx.work_dir) / "ppo" / f"{domain}.safetensors"
        if path.exists():
            return DomainPolicy(adapter=load_adapter(path), info={"adapter": "ppo", "domain": domain})
        if self._policy is None:
            self._policy = self.ctx.make_policy()
        policy = self._policy
        policy.load_adapter_state(None)  # θ₀ = π_ref for every domain
        prompts = [p["prompt"] for p in self.ctx.data.train_prompts(domain)]
        rm, batch_size = self.rm, self.ctx.profile.batch_size

        def reward(xs: list[str], ys: list[str]):
            return rm.score(xs, ys, batch_size=batch_size)

        seed = resolve_seed(self.config.seed, self.ctx.seed, f"ppo:{domain}")
        self.ctx.log(f"ppo on {domain}: {len(prompts)} prompts, {self.config.updates} iterations")
        curves = train_ppo(policy, prompts, reward, self.config.hyper(), self.ctx.task.eval_decoding, seed,
                           log=self.ctx.log, progress=self.ctx.progress)
        adapter = policy.adapter_state()
        policy.load_adapter_state(None)
        save_adapter(path, adapter)
        curves.save(path.with_suffix(".curves.json"))
        return DomainPolicy(adapter=adapter, info={"adapter": "ppo", "domain": domain})

    def reward_model(self):
        """The Bradley-Terry reward model r_ψ (scored for rm_accuracy)."""
        return self.rm

    def save(self, directory: Path) -> None:
        """Nothing beyond ``bt_rm.json``: the reward model lives in the shared cache."""

    def load(self, directory: Path) -> bool:
        """Reload the fold's reward model; False when it was never trained."""
        if not (Path(directory) / "bt_rm.json").exists():
            return False
        self.rm = bt_reward_model(self.ctx, self.config)
        return True

    def training_curves(self) -> dict[str, list[float]]:
        """Per-domain PPO curves are written beside each domain's adapter (``ppo/<domain>.curves.json``)."""
        return Curves().as_dict()
