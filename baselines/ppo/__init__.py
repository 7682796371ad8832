"""The ``ppo`` baseline: a Bradley-Terry reward model on the pooled source pairs, then PPO with the
KL-penalised reward on each held-out domain's unlabeled prompts."""

from .ppo import PPOHyper, train_ppo
from .solver import PPOConfig, PPOSolver

__all__ = ["PPOConfig", "PPOHyper", "PPOSolver", "train_ppo"]
