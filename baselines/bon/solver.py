"""Best-of-n: for each requested sample, draw n candidates from π_ref and keep the one the fold's
Bradley-Terry reward model r_ψ scores highest. No policy is trained.

The aligned policy is implicit (a re-ranking of π_ref's samples), so it has no likelihood of its own:
the runner reports the PL metrics and KL as not applicable and scores r_ψ (rm_accuracy) and the
generations (gold reward, win rate). For reference, the KL of best-of-n to π_ref is at most
log n − (n−1)/n (Stiennon et al. 2020, appendix; Beirami et al. 2024).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ood_pl_bench.solver import DomainPolicy

from ..common import BTRewardOptions, BTRewardSolver


@dataclass
class BoNConfig(BTRewardOptions):
    """Options of the ``bon`` baseline (plus the reward model's ``rm_*`` options)."""

    n: int = field(default=4, metadata={
        "help": "candidates drawn from π_ref per returned sample (generation cost grows n-fold)"})
    batch_size: int = field(default=16, metadata={
        "help": "generation batch size of the candidates (larger batches sample faster on CPU)"})

    def validate(self) -> None:
        """Raise ValueError for impossible values."""
        if self.n < 1 or self.batch_size < 1:
            raise ValueError(f"n and batch_size must be >= 1, got {self.n}, {self.batch_size}")
        self.validate_rm()


def best_of_n(candidates: Sequence[Sequence[str]], scores: torch.Tensor, n: int) -> list[list[str]]:
    """Pick the best of each consecutive group of ``n`` candidates of every prompt.

    ``candidates[i]`` holds k·n texts of prompt i (group j = candidates j·n … j·n+n−1);
    ``scores`` the reward of every candidate, flattened prompt by prompt. Ties go to the earliest
    candidate. Returns k texts per prompt.
    """
    out, pos = [], 0
    for group in candidates:
        chosen = []
        for lo in range(0, len(group), n):
            block = scores[pos + lo: pos + min(lo + n, len(group))]
            chosen.append(group[lo + int(torch.argmax(block))])
        pos += len(group)
        out.append(chosen)
    return out


class BoNSolver(BTRewardSolver):
    """Best-of-n from π_ref ranked by the Bradley-Terry reward model, at evaluation time."""

    name = "bon"
    description = "best-of-n samples from pi_ref ranked by a BT reward model (no policy training)"
    Config = BoNConfig

    def policy_for(self, domain: str) -> DomainPolicy:
        """An implicit policy: ``generate`` re-ranks π_ref's samples; no explicit likelihood."""
        if self.rm is None:
            raise RuntimeError("bon: policy_for called before fit or load")
        n = self.config.n

        def generate(prompts: list[str], num_samples: int, seed: int) -> list[list[str]]:
            return self.generate(prompts, num_samples, seed)

        return DomainPolicy(generate=generate, explicit_likelihood=False, info={
            "method": "bon", "n": n, "fold": self.ctx.fold.name,
            "kl_upper_bound_nats": math.log(n) - (n - 1) / n})

    def generate(self, prompts: list[str], num_samples: int, seed: int) -> list[list[str]]:
        """``num_samples`` best-of-n texts per prompt: n·num_samples samples of π_ref (the task's
        evaluation decoding, seeded per prompt and sample index), each block of n ranked by r_ψ."""
        policy, n = self.policy(), self.config.n
        policy.load_adapter_state(None)
        groups = policy.generate(prompts, self.ctx.task.eval_decoding, num_samples=num_samples * n, seed=seed,
                                 batch_size=self.config.batch_size, reference=True)
        texts = [[s["text"] for s in group] for group in groups]
        flat_prompts = [p for p, group in zip(prompts, texts) for _ in group]
        flat_texts = [t for group in texts for t in group]
        scores = self.rm.score(flat_prompts, flat_texts, batch_size=self.ctx.profile.batch_size) \
            if flat_texts else torch.zeros(0)
        return best_of_n(texts, scores, n)
