"""The weighted meta-test: align π_θ on one domain with a frozen reward model, without labels.

From θ₀ (the reference adapters), T steps of the inner-loop update of meta-training on the domain's
cached reference samples: θ ← θ + lr·Σ_b w_b ∇_θ log π_θ(y_b|x_b), with w the softmax of r/β within
each prompt's group (or the clipped exp(r/β)), i.e. weighted maximum likelihood toward
π* ∝ π_ref·exp(r/β). ``optimizer="adam"`` runs Adam on the same loss −Σ_b w_b log π_θ(y_b|x_b).

It is a function of (policy, reward model, samples, options, seed) only, so the ``rwr`` ablation can
run exactly this procedure with its Bradley-Terry reward model. Deterministic for a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .hypergrad import group_index, inner_weights


@dataclass
class WeightedUpdate:
    """The options of the weighted update (shared by the inner loop and the meta-test)."""

    steps: int
    lr: float
    beta: float
    prompts_per_step: int
    samples_per_prompt: int
    weights: str = "softmax"
    max_log_weight: float = 5.0
    optimizer: str = "sgd"


@dataclass
class MetaTestResult:
    """The adapted adapters and per-step diagnostics (mean reward and weight entropy of the batches)."""

    adapter: dict[str, torch.Tensor]
    curves: dict[str, list[float]] = field(default_factory=dict)


def usable_rows(rows: list[dict]) -> list[dict]:
    """Reference-sample rows that have at least one non-empty sample."""
    return [r for r in rows if any(s.get("text") for s in r.get("samples", []))]


def draw_batch(rows: list[dict], order: list[int], rng: random.Random, n_prompts: int,
               n_samples: int) -> list[tuple[dict, list[int]]]:
    """Take ``n_prompts`` rows from ``order`` (refilled with a fresh shuffle when it runs out) and
    ``n_samples`` distinct sample indices of each (all of them when a row has fewer)."""
    out = []
    for _ in range(min(n_prompts, len(rows))):
        if not order:
            order.extend(range(len(rows)))
            rng.shuffle(order)
        row = rows[order.pop()]
        idx = [i for i, s in enumerate(row["samples"]) if s.get("text")]
        if len(idx) > n_samples:
            idx = sorted(rng.sample(idx, n_samples))
        out.append((row, idx))
    return out


def flatten(batch: list[tuple[dict, list[int]]]) -> tuple[list[str], list[str], list[bool], list[int]]:
    """(prompts, sample texts, finished flags, group sizes) of a drawn batch, prompt by prompt."""
    prompts, texts, finished, sizes = [], [], [], []
    for row, idx in batch:
        for i in idx:
            s = row["samples"][i]
            prompts.append(row["prompt"])
            texts.append(s["text"])
            finished.append(bool(s.get("finished", True)))
        sizes.append(len(idx))
    return prompts, texts, finished, sizes


def weighted_meta_test(policy: Any, reward_model: Any, rows: list[dict], options: WeightedUpdate,
                       seed: int, log: Callable[[str], None] = lambda msg: None) -> MetaTestResult:
    """Run the weighted meta-test on ``rows`` (reference samples of one domain) and return the
    adapted LoRA state; ``policy`` is left at θ₀ afterwards.

    Rewards of the frozen ``reward_model`` are computed once per (prompt, sample) and cached.
    """
    rows = usable_rows(rows)
    policy.load_adapter_state(None)
    curves: dict[str, list[float]] = {"reward": [], "weight_entropy": [], "weighted_loglik": []}
    if options.steps == 0 or not rows:
        return MetaTestResult(adapter=policy.adapter_state(), curves=curves)
    rng = random.Random(seed)
    params = policy.trainable_parameters()
    if options.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=options.lr)
    else:
        opt = torch.optim.SGD(params, lr=options.lr)
    reward_cache: dict[tuple[str, int], float] = {}
    order: list[int] = []
    was_training = reward_model.training
    reward_model.eval()
    try:
        for step in range(options.steps):
            batch = draw_batch(rows, order, rng, options.prompts_per_step, options.samples_per_prompt)
            prompts, texts, finished, sizes = flatten(batch)
            keys = [(row["prompt_id"], i) for row, idx in batch for i in idx]
            missing = [j for j, k in enumerate(keys) if k not in reward_cache]
            if missing:
                scores = reward_model.score([prompts[j] for j in missing], [texts[j] for j in missing],
                                            batch_size=max(1, len(missing))).tolist()
                for j, sc in zip(missing, scores):
                    reward_cache[keys[j]] = float(sc)
            r = torch.tensor([reward_cache[k] for k in keys], dtype=torch.float32)
            groups = group_index(sizes)
            w = inner_weights(r, groups, options.beta, options.weights, options.max_log_weight)
            # A prompt's samples share one packed row: the prompt runs once per group.
            drawn = [(row["prompt"], [row["samples"][i] for i in idx]) for row, idx in batch]
            logp = policy.grouped_response_logprobs(
                [prompt for prompt, _ in drawn], [[s["text"] for s in group] for _, group in drawn],
                [[bool(s.get("finished", True)) for s in group] for _, group in drawn])
            loss = -(w.to(device=logp.device, dtype=logp.dtype) * logp).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ent = float(-(w * torch.log(w.clamp_min(1e-12))).sum() / max(1, len(sizes)))
            curves["reward"].append(float(r.mean()))
            curves["weight_entropy"].append(ent)
            curves["weighted_loglik"].append(float(-loss.detach()))
        adapter = policy.adapter_state()
    finally:
        reward_model.train(was_training)
        policy.load_adapter_state(None)
    log(f"meta-test: {options.steps} {options.optimizer} steps, mean batch reward "
        f"{sum(curves['reward']) / len(curves['reward']):+.4f}")
    return MetaTestResult(adapter=adapter, curves=curves)
