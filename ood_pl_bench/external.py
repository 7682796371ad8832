"""Evaluation of an already aligned checkpoint (``oodpl eval``): not a method, a harness.

The checkpoint is loaded as a separate full model and scored against the profile's reference
policy with exactly the protocol of ``oodpl run``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .solver import DomainPolicy, Solver


@dataclass
class ExternalConfig:
    """Which checkpoint to evaluate."""

    policy: str = field(default="", metadata={"help": "local folder or Hugging Face id of the aligned model"})


class ExternalPolicy(Solver):
    """Wraps an external checkpoint; every held-out domain gets the same model."""

    name = "external"
    description = "an already aligned checkpoint (oodpl eval)"
    Config = ExternalConfig

    def __init__(self, config: ExternalConfig, ctx):
        super().__init__(config, ctx)
        self._model = None

    def _load_model(self):
        if self._model is None:
            from .models.policy import Policy
            from .models.resolve import resolve_policy

            resolved = resolve_policy(self.config.policy)
            self._model = Policy(resolved, self.ctx.task, lora=None, dtype=self.ctx.profile.dtype, seed=self.ctx.seed)
        return self._model

    def load(self, directory) -> bool:
        """Nothing is trained; the model is loaded lazily."""
        return True

    def policy_for(self, domain: str) -> DomainPolicy:
        """The external model as a separate scorer and sampler."""
        return DomainPolicy(model=self._load_model(), info={"checkpoint": self.config.policy})
