"""pi_ref unchanged: PL accuracy is exactly 0.5 (every implicit margin is zero)."""

from __future__ import annotations

from dataclasses import dataclass

from ood_pl_bench.solver import DomainPolicy, Solver


@dataclass
class ReferenceConfig:
    """The reference policy has no options."""


class ReferenceSolver(Solver):
    """Returns the reference policy (zero LoRA adapters) for every domain; trains nothing."""

    name = "reference"
    description = "pi_ref unchanged (the null row: PL accuracy exactly 0.5)"
    Config = ReferenceConfig

    def fit(self) -> None:
        """Nothing to train."""

    def policy_for(self, domain: str) -> DomainPolicy:
        """The reference policy itself."""
        return DomainPolicy(adapter=None)

    def load(self, directory) -> bool:
        """Nothing to load: fitting is free, so a resumed run is always 'loaded'."""
        return True
