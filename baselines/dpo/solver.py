"""DPO (Rafailov et al., 2023, "Direct Preference Optimization: Your Language Model is Secretly a
Reward Model") on the pooled train pairs of a fold's source domains.

The policy is π_θ = the frozen reference plus LoRA adapters θ (θ₀ = zero adapters = π_ref), so the
reference log-probs come from the same network with the adapters disabled. The loss of a pair
(x, y_w, y_l) is

    −log σ(β · [(log π_θ − log π_ref)(y_w|x) − (log π_θ − log π_ref)(y_l|x)]),

with log-probs summed over response tokens (the same sums the benchmark scores). One adapter is
trained per fold and applied, as is, to every held-out domain of the fold: DPO has no way to use
the unlabeled held-out prompts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ood_pl_bench.solver import DomainPolicy, Solver

from ..common import (
    Curves,
    linear_warmup_decay,
    load_adapter,
    resolve_seed,
    save_adapter,
)


@dataclass
class DPOConfig:
    """Options of the ``dpo`` baseline (``oodpl run --method dpo --set key=value``).

    Defaults: β = 0.1 and a LoRA learning rate of 5e-4 (the usual DPO settings for adapters);
    32 steps of 4 pairs (128 pairs per fold, ~20% of qa's pooled source pairs, ~12% of
    sentiment's) keep ``oodpl run --method dpo --task qa`` (two folds) near 15 minutes on a 2-core
    CPU, where evaluation alone takes about 11. More steps: ``--set steps=N``.
    """

    beta: float = field(default=0.1, metadata={
        "help": "β of the DPO loss: the KL-regularisation strength of the implicit reward β·log(π_θ/π_ref)"})
    lr: float = field(default=5e-4, metadata={"help": "AdamW learning rate of the LoRA adapters"})
    steps: int = field(default=32, metadata={
        "help": "optimizer steps per fold (steps × batch_size pairs are drawn, cycling through shuffled epochs)"})
    batch_size: int = field(default=4, metadata={
        "help": "preference pairs per optimizer step (over all processes under accelerate launch)"})
    gradient_accumulation_steps: int = field(default=1, metadata={
        "help": "micro-batches per optimizer step (each process splits its share of a batch into this many)"})
    warmup_ratio: float = field(default=0.1, metadata={
        "help": "fraction of steps with a linear learning-rate warm-up; the rest decays linearly to 0"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient-norm clipping (0: off)"})
    label_smoothing: float = field(default=0.0, metadata={
        "help": "conservative DPO: probability ε that a label is flipped (0 = standard DPO)"})
    seed: int | None = field(default=None, metadata={
        "help": "seed of the data order; None: derived from the run seed and the fold"})

    def validate(self) -> None:
        """Raise ValueError for impossible values."""
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError("steps must be >= 0 and batch_size >= 1")
        if self.gradient_accumulation_steps < 1:
            raise ValueError("gradient_accumulation_steps must be >= 1")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")


class DPOStepOutput(NamedTuple):
    """Loss and diagnostics of one DPO batch (the quantities TRL's DPOTrainer logs).

    ``chosen_rewards`` / ``rejected_rewards``: implicit rewards β·(log π_θ − log π_ref) per pair
    (detached); ``reward_accuracy``: fraction of pairs with chosen reward > rejected reward;
    ``margins``: chosen − rejected rewards.
    """

    loss: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    reward_accuracy: torch.Tensor
    margins: torch.Tensor


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float, label_smoothing: float = 0.0) -> DPOStepOutput:
    """The DPO loss of a batch from summed response log-probs (each a Tensor[B]).

    loss = mean_b [ −(1−ε)·log σ(β·Δ_b) − ε·log σ(−β·Δ_b) ] with
    Δ_b = (log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l) − log π_ref(y_l)); ε = 0 is the original
    DPO loss (TRL's ``loss_type="sigmoid"``).
    """
    chosen_logratios = policy_chosen - ref_chosen
    rejected_logratios = policy_rejected - ref_rejected
    logits = beta * (chosen_logratios - rejected_logratios)
    losses = -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return DPOStepOutput(
        loss=losses.mean(),
        chosen_rewards=chosen_rewards,
        rejected_rewards=rejected_rewards,
        reward_accuracy=(chosen_rewards > rejected_rewards).float().mean(),
        margins=chosen_rewards - rejected_rewards,
    )


def dpo_batch(policy, pairs: list[dict], beta: float, label_smoothing: float = 0.0) -> DPOStepOutput:
    """Encode ``pairs`` as one [chosen; rejected] batch and return :func:`dpo_loss` on it.

    The reference log-probs are computed without gradients on the same batch with the adapters
    disabled, so they equal the frozen base model's.
    """
    prompts = [p["prompt"] for p in pairs]
    batch = policy.encode(prompts + prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs])
    with torch.no_grad():
        ref = policy.response_logprobs(batch, reference=True)
    logps = policy.response_logprobs(batch)
    n = len(pairs)
    return dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], beta, label_smoothing)


def train_dpo(policy, pairs: list[dict], config: DPOConfig, seed: int,
              log=lambda msg: None, progress=None, dp=None) -> Curves:
    """Train ``policy``'s adapters with DPO on ``pairs`` for ``config.steps`` steps; returns curves.

    Batches are consecutive slices of seeded shuffles of ``pairs`` (a new shuffle per epoch), so
    the data order depends on ``seed`` only. AdamW with linear warm-up and linear decay.

    Data parallel (``dp`` from :mod:`ood_pl_bench.distributed`, under ``accelerate launch``): every
    process draws the same batch, takes its strided share, and the gradients are averaged over
    processes before the step, so N processes take the steps one process takes (up to float
    round-off when the shares are equal). ``gradient_accumulation_steps`` splits a process's share
    into micro-batches whose losses are weighted by their size (the step sees the batch mean).
    """
    from ood_pl_bench.distributed import shard_items

    curves = Curves()
    if config.steps == 0 or not pairs:
        return curves
    params = policy.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup_decay(config.steps, config.warmup_ratio))
    rng = random.Random(seed)
    order: list[int] = []
    task = progress.add_task("dpo", total=config.steps) if progress is not None else None
    policy.train(True)
    for step in range(config.steps):
        idx = []
        while len(idx) < min(config.batch_size, len(pairs)):
            if not order:
                order = list(range(len(pairs)))
                rng.shuffle(order)
            idx.append(order.pop())
        mine = shard_items(idx, dp)
        if not mine:
            raise ValueError(f"batch_size {len(idx)} is smaller than the {dp.world_size} processes: "
                             "raise --set batch_size")
        opt.zero_grad(set_to_none=True)
        micro = max(1, -(-len(mine) // config.gradient_accumulation_steps))
        stats = {"loss": 0.0, "reward_accuracy": 0.0, "margin": 0.0, "chosen_reward": 0.0, "rejected_reward": 0.0}
        for lo in range(0, len(mine), micro):
            part = mine[lo:lo + micro]
            out = dpo_batch(policy, [pairs[i] for i in part], config.beta, config.label_smoothing)
            share = len(part) / len(mine)
            (out.loss * share).backward()
            for key, value in (("loss", out.loss), ("reward_accuracy", out.reward_accuracy),
                               ("margin", out.margins.mean()), ("chosen_reward", out.chosen_rewards.mean()),
                               ("rejected_reward", out.rejected_rewards.mean())):
                stats[key] += float(value.item()) * share
        if dp is not None:
            dp.average_gradients(params)
            stats = dp.mean(stats)
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        opt.step()
        sched.step()
        curves.add(**stats, lr=sched.get_last_lr()[0])
        if step % 10 == 0 or step == config.steps - 1:
            log(f"dpo step {step + 1}/{config.steps}: loss {stats['loss']:.4f} "
                f"acc {stats['reward_accuracy']:.2f} margin {stats['margin']:+.4f}")
        if task is not None:
            progress.advance(task)
    policy.train(False)
    if task is not None:
        progress.remove_task(task)
    return curves


class DPOSolver(Solver):
    """DPO on the pooled source pairs; the fold's adapter is applied to every held-out domain."""

    name = "dpo"
    description = "DPO on the pooled source pairs, applied to held-out domains as is"
    Config = DPOConfig
    data_parallel = True

    def __init__(self, config: DPOConfig, ctx):
        super().__init__(config, ctx)
        self.adapter: dict[str, torch.Tensor] | None = None
        self.curves = Curves()

    def fit(self) -> None:
        """Train LoRA adapters with DPO on the pooled train pairs of the fold's source domains."""
        cfg = self.config
        policy = self.ctx.make_policy()
        pairs = self.ctx.data.source_pairs()
        seed = resolve_seed(cfg.seed, self.ctx.seed, f"dpo:{self.ctx.fold.name}")
        self.ctx.log(f"dpo: {len(pairs)} source pairs, {cfg.steps} steps of {cfg.batch_size}")
        self.curves = train_dpo(policy, pairs, cfg, seed, log=self.ctx.log, progress=self.ctx.progress,
                                dp=self.ctx.dp)
        self.adapter = policy.adapter_state()

    def policy_for(self, domain: str) -> DomainPolicy:
        """The fold's DPO adapter, unchanged, for every held-out domain."""
        return DomainPolicy(adapter=self.adapter, info={"adapter": "dpo", "fold": self.ctx.fold.name})

    def save(self, directory: Path) -> None:
        """Save the adapter and curves to ``directory``."""
        save_adapter(Path(directory) / "dpo_adapter.safetensors", self.adapter)
        self.curves.save(Path(directory) / "dpo_curves.json")

    def load(self, directory: Path) -> bool:
        """Load a saved adapter; False when ``fit`` has not finished before."""
        path = Path(directory) / "dpo_adapter.safetensors"
        if not path.exists():
            return False
        self.adapter = load_adapter(path)
        self.curves = Curves.load(Path(directory) / "dpo_curves.json")
        return True

    def training_curves(self) -> dict[str, list[float]]:
        """Per-step loss, reward accuracy, margin, implicit rewards and learning rate."""
        return self.curves.as_dict()
