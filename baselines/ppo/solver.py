"""The ``ppo`` solver: r_ψ (Bradley-Terry, pooled source pairs) + PPO per held-out domain.

``fit`` trains (or loads from the shared cache) the fold's Bradley-Terry reward model r_ψ. For each
held-out domain, ``policy_for`` starts from θ₀ (= π_ref) and runs :func:`baselines.ppo.ppo.train_ppo`
on that domain's unlabeled training prompts with reward r_ψ − β·KL, generating with the current
policy and the task's evaluation decoding. No held-out preference label is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ood_pl_bench.solver import DomainPolicy

from ..common import BTRewardOptions, BTRewardSolver, load_adapter, resolve_seed, save_adapter
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


class PPOSolver(BTRewardSolver):
    """Bradley-Terry RM on pooled source pairs, then PPO on each held-out domain's prompts."""

    name = "ppo"
    description = "BT reward model on source pairs, then PPO (r - beta*KL) on each held-out domain's prompts"
    Config = PPOConfig

    def use_reward_model(self, reward_model: Any) -> None:
        """Run PPO with ``reward_model`` instead of the Bradley-Terry one (``metarm``'s
        ``meta_test=ppo`` hands its meta-learned r_φ over through this hook)."""
        self.rm = reward_model

    def policy_for(self, domain: str) -> DomainPolicy:
        """PPO from θ₀ on ``domain``'s training prompts; the adapter and curves are kept in
        ``<work_dir>/ppo/`` (a resumed run reuses a finished domain)."""
        if self.rm is None:
            raise RuntimeError("ppo: policy_for called before fit or load")
        path = Path(self.ctx.work_dir) / "ppo" / f"{domain}.safetensors"
        info = {"method": "ppo", "fold": self.ctx.fold.name, "domain": domain}
        if path.exists():
            return DomainPolicy(adapter=load_adapter(path), info=info)
        policy = self.policy()
        policy.load_adapter_state(None)  # θ₀ = π_ref for every domain
        prompts = [p["prompt"] for p in self.ctx.data.train_prompts(domain)]
        rm, batch_size = self.rm, self.ctx.profile.batch_size

        def reward(xs: list[str], ys: list[str]):
            return rm.score(xs, ys, batch_size=batch_size)

        seed = resolve_seed(self.config.seed, self.ctx.seed, f"ppo:{domain}")
        self.ctx.log(f"ppo on {domain}: {len(prompts)} prompts, {self.config.updates} iterations")
        try:
            curves = train_ppo(policy, prompts, reward, self.config.hyper(), self.ctx.task.eval_decoding,
                               seed, log=self.ctx.log, progress=self.ctx.progress)
            adapter = policy.adapter_state()
        finally:
            policy.load_adapter_state(None)
        save_adapter(path, adapter)
        curves.save(path.with_suffix(".curves.json"))
        info["final_score"] = curves.data["score"][-1] if curves.data.get("score") else None
        info["final_kl"] = curves.data["kl"][-1] if curves.data.get("kl") else None
        return DomainPolicy(adapter=adapter, info=info)
