"""A small training solver used by runner tests: a few SGD steps of SFT on sampled source pairs.

It exercises the parts of the runner that the reference solver does not (fit, checkpoint, adapters,
randomness), so resume tests are meaningful.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
from safetensors.torch import load_file, save_file

from ood_pl_bench.solver import DomainPolicy, Solver


@dataclass
class SFTConfig:
    """Options of the test SFT solver."""

    steps: int = field(default=3, metadata={"help": "SGD steps"})
    lr: float = field(default=5e-2, metadata={"help": "learning rate"})
    batch_size: int = field(default=4, metadata={"help": "pairs per step"})


class SFTSolver(Solver):
    """Fits LoRA adapters to the chosen responses of randomly drawn source pairs."""

    name = "sft-test"
    Config = SFTConfig

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.adapter = None

    def fit(self) -> None:
        """A few SGD steps on random batches of pooled source pairs."""
        policy = self.ctx.make_policy()
        pairs = self.ctx.data.source_pairs()
        opt = torch.optim.SGD(policy.trainable_parameters(), lr=self.config.lr)
        for _ in range(self.config.steps):
            batch = random.sample(pairs, min(self.config.batch_size, len(pairs)))
            enc = policy.encode([p["prompt"] for p in batch], [p["chosen"] for p in batch])
            loss = -policy.response_logprobs(enc).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.adapter = policy.adapter_state()

    def policy_for(self, domain: str) -> DomainPolicy:
        """The same adapter for every domain."""
        return DomainPolicy(adapter=self.adapter)

    def save(self, directory) -> None:
        """Save the adapter as safetensors."""
        save_file({k: v.contiguous() for k, v in self.adapter.items()}, str(directory / "adapter.safetensors"))

    def load(self, directory) -> bool:
        """Load the adapter if fit finished before."""
        path = directory / "adapter.safetensors"
        if not path.exists():
            return False
        self.adapter = load_file(str(path))
        return True
