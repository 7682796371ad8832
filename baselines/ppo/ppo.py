"""A compact PPO for LoRA policies with a KL-penalised reward (RLHF-style, one file).

Follows Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences", arXiv
1909.08593) and the implementation details catalogued by Huang et al. 2024 ("The N+ Implementation
Details of RLHF with PPO: A Case Study on TL;DR Summarization", arXiv 2403.17031); the numbers in
brackets below refer to those details:

* per-token reward  r_t = −β·(log π_θ − log π_ref)(y_t | x, y_<t), plus the reward-model score
  r_ψ(x, y) on the last response token [KL in the reward, Ziegler §2.2; Huang detail 7];
* the reward-model score is normalised (mean 0, std 1) on samples of the initial policy θ₀ = π_ref,
  here the first rollout of the domain [reward normalisation, Huang detail 4];
* a scalar value head on the policy's last hidden state, zero-initialised; GAE (γ, λ) over the
  response tokens; per-batch advantage whitening [Huang details 8, 9];
* clipped surrogate objective (ratio clip ε), clipped value loss, loss = pg + c_v·vf, token-level
  masked means, gradient-norm clipping [Huang details 10, 11];
* samples drawn from the current policy with the evaluation decoding (temperature 1, no top-k/p),
  so the sampling distribution equals the one whose log-probs the ratio uses, and optimised on the
  exact sampled token ids (no decode/re-encode round trip) [Huang details 5, 6];
* optional adaptive β toward a KL target (Ziegler §2.2).

The value head shares the LoRA-adapted backbone (one forward gives log-probs and values); the
policy's log-prob head runs in fp32 like :meth:`Policy.response_logprobs`. Token layout as in
scoring: ``[prompt ids][response ids]`` right-padded, the prompt from ``Policy.prompt_ids``.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from ..common import Curves

RewardFn = Callable[[list[str], list[str]], torch.Tensor]


@dataclass
class PPOHyper:
    """The algorithm's hyperparameters (``baselines.ppo.PPOConfig`` adds the reward model's).

    Defaults follow Huang et al. 2024 / Ziegler et al. 2019 where the budget allows (clip 0.2,
    value clip 0.2, γ = 1, λ = 0.95, whitened advantages, normalised reward). The amount of PPO
    is sized for ``oodpl run --method ppo`` on a 2-core CPU, where PPO runs once per held-out
    *and* per source domain (20 times for qa): 2 iterations of 8 prompts and 2 epochs (4 Adam steps,
    ~25 s) per domain, with a correspondingly large learning rate. That is a short PPO; for a
    longer one, e.g. ``--set updates=8 rollout_prompts=16 lr=3e-4`` (several times the wall time).
    """

    beta: float = field(default=0.05, metadata={
        "help": "β: KL penalty coefficient in the per-token reward r_t = −β·log(π_θ/π_ref) (+ r_ψ at the end)"})
    kl_target: float | None = field(default=None, metadata={
        "help": "adaptive β (Ziegler et al. 2019): target KL per sample in nats; None keeps β fixed"})
    kl_horizon: int = field(default=10000, metadata={"help": "adaptive β: horizon (samples) of the controller"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate (LoRA adapters and value head)"})
    updates: int = field(default=2, metadata={"help": "PPO iterations (rollout + optimisation) per domain"})
    rollout_prompts: int = field(default=8, metadata={
        "help": "prompts per rollout (one sample each, from the current policy)"})
    ppo_epochs: int = field(default=2, metadata={"help": "optimisation passes over each rollout"})
    minibatch_size: int = field(default=8, metadata={"help": "samples per gradient step"})
    clip_ratio: float = field(default=0.2, metadata={"help": "ε of the clipped surrogate objective"})
    clip_value: float = field(default=0.2, metadata={"help": "clip range of the value-function update"})
    vf_coef: float = field(default=0.1, metadata={"help": "weight of the value loss"})
    gamma: float = field(default=1.0, metadata={"help": "discount γ of GAE"})
    lam: float = field(default=0.95, metadata={"help": "λ of GAE"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient-norm clipping (0: off)"})
    normalize_reward: bool = field(default=True, metadata={
        "help": "normalise r_ψ to mean 0 / std 1 with the first rollout (samples of θ₀ = π_ref)"})

    def validate_ppo(self) -> None:
        """Raise ValueError for impossible values."""
        if self.beta < 0 or self.lr <= 0:
            raise ValueError("beta must be >= 0 and lr > 0")
        if self.kl_target is not None and self.kl_target <= 0:
            raise ValueError("kl_target must be > 0 or None")
        if self.updates < 0 or self.rollout_prompts < 1 or self.ppo_epochs < 1 or self.minibatch_size < 1:
            raise ValueError("updates must be >= 0; rollout_prompts, ppo_epochs, minibatch_size >= 1")
        if not (0 < self.clip_ratio < 1 and self.clip_value > 0):
            raise ValueError("clip_ratio must be in (0, 1) and clip_value > 0")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError("gamma and lam must be in [0, 1]")


class AdaptiveKLController:
    """Ziegler et al. 2019 §2.2: β ← β·(1 + clip(KL/target − 1, −0.2, 0.2)·n/horizon)."""

    def __init__(self, beta: float, target: float | None, horizon: int):
        self.value, self.target, self.horizon = beta, target, horizon

    def update(self, kl: float, n_samples: int) -> None:
        """Move β toward the KL target after a rollout of ``n_samples`` samples (no-op if fixed)."""
        if self.target is None:
            return
        error = max(-0.2, min(0.2, kl / self.target - 1.0))
        self.value *= 1.0 + error * n_samples / self.horizon


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1."""
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Whiten ``x`` with the mean/variance of its masked entries (Huang detail 9)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return out if shift_mean else out + mean


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the token axis; returns (advantages, returns).

    ``mask[:, t]`` marks response tokens; the value after the last response token is 0 (the
    episode ends), so δ_t = r_t + γ·V_{t+1}·m_{t+1} − V_t and A_t = δ_t + γλ·m_{t+1}·A_{t+1}.
    """
    T = rewards.shape[1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        nxt_mask = mask[:, t + 1] if t + 1 < T else torch.zeros_like(mask[:, 0])
        nxt_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(values[:, 0])
        delta = rewards[:, t] + gamma * nxt_value * nxt_mask - values[:, t]
        last = delta + gamma * lam * nxt_mask * last
        adv[:, t] = last
    adv = adv * mask
    return adv, (adv + values) * mask


class ValueHead(nn.Module):
    """V(s_t): a linear unit on the policy's last hidden state, zero-initialised (V ≡ 0 at start)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Values of every position: Tensor[B, T]."""
        return self.linear(hidden.float()).squeeze(-1)


_SOFTCAP_ATTRS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def token_forward(policy, value_head: ValueHead | None, batch: dict[str, torch.Tensor], start: int,
                  reference: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (fp32 head) and values on positions ``start .. width−2``.

    Position t predicts token t+1, so column j of the outputs belongs to the token at
    ``start + j + 1``; the action mask is ``response_mask[:, start + 1:]``. ``reference=True``
    disables the adapters (π_ref) and returns no values.
    """
    ids, attn = batch["input_ids"], batch["attention_mask"]
    width = ids.shape[1]
    position_ids = (attn.long().cumsum(-1) - 1).clamp(min=0)
    model = policy.model
    softcapped = any(getattr(model.config, a, None) for a in _SOFTCAP_ATTRS)
    ctx = model.disable_adapter() if reference else contextlib.nullcontext()
    with ctx, torch.autocast(device_type=policy.device.type, dtype=torch.bfloat16,
                             enabled=getattr(policy, "dtype", "fp32") == "bf16"):
        out = model(input_ids=ids, attention_mask=attn, position_ids=position_ids, use_cache=False,
                    output_hidden_states=True, logits_to_keep=(width - start) if softcapped else 1)
        hidden = out.hidden_states[-1][:, start:width - 1]
        with torch.autocast(device_type=policy.device.type, enabled=False):
            if softcapped:
                logits = out.logits[:, :-1].float()
            else:
                logits = model.get_output_embeddings()(hidden.float())
            values = None if reference or value_head is None else value_head(hidden)
    targets = ids[:, start + 1:]
    logprobs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)
    return logprobs, values


@torch.no_grad()
def sample(policy, prompts: Sequence[str], decoding, seed: int, batch_size: int) -> list[list[int]]:
    """One response per prompt from the current policy: generated token ids, ending with a stop
    token when the sample finished. Seeded through a forked global RNG (deterministic on CPU)."""
    from transformers import GenerationConfig

    prompt_ids = [policy.prompt_ids(p) for p in prompts]
    greedy = decoding.temperature <= 0
    config = GenerationConfig(  # explicit: no model-specific sampling defaults leak in
        do_sample=not greedy, num_beams=1, repetition_penalty=1.0,
        max_new_tokens=min(decoding.max_new_tokens, policy.task.max_response_tokens),
        eos_token_id=list(policy.stop_token_ids), pad_token_id=policy.pad_token_id,
        temperature=None if greedy else float(decoding.temperature),
        top_p=None if greedy else float(decoding.top_p), top_k=None if greedy else int(decoding.top_k))
    out: list[list[int]] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for lo in range(0, len(prompt_ids), max(1, batch_size)):
            chunk = prompt_ids[lo:lo + max(1, batch_size)]
            width = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), width), policy.pad_token_id, dtype=torch.long)
            attn = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, p in enumerate(chunk):  # left padding for generation
                ids[r, width - len(p):] = torch.tensor(p)
                attn[r, width - len(p):] = 1
            with torch.autocast(device_type=policy.device.type, dtype=torch.bfloat16,
                                enabled=getattr(policy, "dtype", "fp32") == "bf16"):
                gen = policy.model.generate(input_ids=ids.to(policy.device), attention_mask=attn.to(policy.device),
                                            generation_config=config)
            for row in gen[:, width:].cpu().tolist():
                for pos, t in enumerate(row):
                    if t in policy.stop_token_ids:
                        row = row[:pos + 1]
                        break
                out.append(row)
    return out


def collate(policy, prompts: Sequence[str], responses: Sequence[list[int]]) -> dict[str, torch.Tensor]:
    """``[prompt ids][response ids]`` rows, right-padded, with ``response_mask`` (as ``Policy.encode``)."""
    rows = [(policy.prompt_ids(p), list(r)) for p, r in zip(prompts, responses)]
    width = max(len(p) + len(r) for p, r in rows)
    ids = torch.full((len(rows), width), policy.pad_token_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    resp = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, r) in enumerate(rows):
        ids[i, :len(p) + len(r)] = torch.tensor(p + r, dtype=torch.long)
        attn[i, :len(p) + len(r)] = 1
        resp[i, len(p):len(p) + len(r)] = 1
    return {"input_ids": ids.to(policy.device), "attention_mask": attn.to(policy.device),
            "response_mask": resp.to(policy.device)}


def decode(policy, response: list[int]) -> str:
    """Response text without its stop token (what the reward model and the benchmark see)."""
    if response and response[-1] in policy.stop_token_ids:
        response = response[:-1]
    return policy.tokenizer.decode(response, skip_special_tokens=True)


@dataclass
class Rollout:
    """One batch of experience: tokens, masks and the per-token quantities PPO needs."""

    batch: dict[str, torch.Tensor]
    start: int
    mask: torch.Tensor          # [B, T] action (response-token) mask
    logprobs: torch.Tensor      # [B, T] log π_θold
    ref_logprobs: torch.Tensor  # [B, T] log π_ref
    values: torch.Tensor        # [B, T] V_old
    advantages: torch.Tensor    # [B, T] whitened
    returns: torch.Tensor       # [B, T]
    scores: torch.Tensor        # [B] raw reward-model scores
    kl: torch.Tensor            # [B] Σ_t (log π_θold − log π_ref)


def score_start(batch: dict[str, torch.Tensor]) -> int:
    """First position whose next-token prediction is a response token (min over rows)."""
    resp = batch["response_mask"]
    has = resp.bool().any(-1)
    if not bool(has.any()):
        return resp.shape[1] - 2
    return max(int(resp.float().argmax(-1)[has].min()) - 1, 0)


@torch.no_grad()
def make_rollout(policy, value_head: ValueHead, prompts: Sequence[str], responses: Sequence[list[int]],
                 scores: torch.Tensor, beta: float, hp: PPOHyper, reward_shift: float = 0.0,
                 reward_scale: float = 1.0) -> Rollout:
    """Score sampled responses (token ids) and build the rollout: KL-penalised per-token rewards,
    GAE and whitened advantages (rewards use ``(score − shift) / scale``)."""
    batch = collate(policy, prompts, responses)
    start = score_start(batch)
    mask = batch["response_mask"][:, start + 1:].float()
    logprobs, values, ref_logprobs = [], [], []
    for lo in range(0, mask.shape[0], hp.minibatch_size):  # chunks bound the [B, T, vocab] logits
        rows = {k: v[lo:lo + hp.minibatch_size] for k, v in batch.items()}
        lp, v = token_forward(policy, value_head, rows, start)
        logprobs.append(lp)
        values.append(v)
        ref_logprobs.append(token_forward(policy, None, rows, start, reference=True)[0])
    logprobs, values, ref_logprobs = torch.cat(logprobs), torch.cat(values), torch.cat(ref_logprobs)
    kl_tokens = (logprobs - ref_logprobs) * mask
    rewards = -beta * kl_tokens
    last = (mask.cumsum(-1) * mask).argmax(-1)  # index of each row's last response token
    rows = torch.arange(mask.shape[0])
    has = mask.sum(-1) > 0
    norm_scores = (scores.float() - reward_shift) / reward_scale
    rewards[rows[has], last[has]] += norm_scores[has]
    values = values * mask
    adv, returns = gae(rewards, values, mask, hp.gamma, hp.lam)
    adv = masked_whiten(adv, mask)
    return Rollout(batch=batch, start=start, mask=mask, logprobs=logprobs, ref_logprobs=ref_logprobs,
                   values=values, advantages=adv, returns=returns, scores=scores.float(),
                   kl=kl_tokens.sum(-1))


def ppo_loss(new_logprobs: torch.Tensor, new_values: torch.Tensor, ro: Rollout, idx: torch.Tensor,
             hp: PPOHyper) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate + clipped value loss on rows ``idx`` of rollout ``ro``."""
    mask = ro.mask[idx]
    old_lp, old_v = ro.logprobs[idx], ro.values[idx]
    adv, ret = ro.advantages[idx], ro.returns[idx]
    ratio = torch.exp(new_logprobs - old_lp)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1.0 - hp.clip_ratio, 1.0 + hp.clip_ratio)
    pg_loss = masked_mean(torch.max(pg1, pg2), mask)
    v_clipped = old_v + torch.clamp(new_values - old_v, -hp.clip_value, hp.clip_value)
    vf_loss = 0.5 * masked_mean(torch.max((new_values - ret) ** 2, (v_clipped - ret) ** 2), mask)
    loss = pg_loss + hp.vf_coef * vf_loss
    with torch.no_grad():
        stats = {
            "pg_loss": pg_loss.item(), "vf_loss": vf_loss.item(),
            "clipfrac": masked_mean((torch.abs(ratio - 1.0) > hp.clip_ratio).float(), mask).item(),
            "approx_kl": masked_mean(0.5 * (new_logprobs - old_lp) ** 2, mask).item(),
        }
    return loss, stats


def ppo_update(policy, value_head: ValueHead, opt: torch.optim.Optimizer, ro: Rollout, hp: PPOHyper,
               rng: random.Random) -> dict[str, float]:
    """``ppo_epochs`` passes of minibatch SGD on one rollout; returns mean statistics."""
    params = [p for g in opt.param_groups for p in g["params"]]
    n = ro.mask.shape[0]
    sums: dict[str, float] = {}
    count = 0
    for _ in range(hp.ppo_epochs):
        order = list(range(n))
        rng.shuffle(order)
        for lo in range(0, n, hp.minibatch_size):
            idx = torch.tensor(order[lo:lo + hp.minibatch_size])
            batch = {k: v[idx] for k, v in ro.batch.items()}  # same columns: outputs align with ro
            new_lp, new_v = token_forward(policy, value_head, batch, ro.start)
            loss, stats = ppo_loss(new_lp, new_v, ro, idx, hp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if hp.max_grad_norm > 0:
                stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm))
            opt.step()
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
    return {k: v / max(1, count) for k, v in sums.items()}


def train_ppo(policy, prompts: Sequence[str], reward_fn: RewardFn, hp: PPOHyper, decoding, seed: int,
              log: Callable[[str], None] = lambda msg: None, progress=None) -> Curves:
    """Run ``hp.updates`` PPO iterations on ``policy`` (its LoRA adapters are trained in place).

    Each iteration samples ``hp.rollout_prompts`` prompts (seeded shuffles of ``prompts``, one
    response each, from the current policy with ``decoding``), scores them with
    ``reward_fn(prompts, texts) -> Tensor[B]``, builds a :class:`Rollout` and runs
    :func:`ppo_update`. Returns per-iteration curves (score, KL, β, losses, clip fraction, …).
    Deterministic for a seed on CPU.
    """
    curves = Curves()
    if hp.updates == 0 or not prompts:
        return curves
    hidden = policy.model.get_output_embeddings().weight.shape[1]
    gen = torch.Generator().manual_seed(seed)
    value_head = ValueHead(hidden).to(policy.device)
    opt = torch.optim.Adam([{"params": policy.trainable_parameters()},
                            {"params": list(value_head.parameters())}], lr=hp.lr, eps=1e-5)
    kl_ctl = AdaptiveKLController(hp.beta, hp.kl_target, hp.kl_horizon)
    rng = random.Random(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    queue: list[str] = []
    shift, scale = 0.0, 1.0
    task = progress.add_task("ppo", total=hp.updates) if progress is not None else None
    for it in range(hp.updates):
        batch_prompts = []
        while len(batch_prompts) < min(hp.rollout_prompts, len(prompts)):
            if not queue:
                queue = list(prompts)
                rng.shuffle(queue)
            batch_prompts.append(queue.pop())
        responses = sample(policy, batch_prompts, decoding, seed=rng.randrange(2**31),
                           batch_size=len(batch_prompts))
        texts = [decode(policy, r) for r in responses]
        scores = reward_fn(batch_prompts, texts).float()
        if it == 0 and hp.normalize_reward:
            # θ₀ = π_ref: the first rollout is a sample of the reference policy (Huang detail 4).
            shift = float(scores.mean())
            scale = float(scores.std()) if len(scores) > 1 and float(scores.std()) > 1e-6 else 1.0
        ro = make_rollout(policy, value_head, batch_prompts, responses, scores, kl_ctl.value, hp,
                          reward_shift=shift, reward_scale=scale)
        stats = ppo_update(policy, value_head, opt, ro, hp, rng)
        kl = float(ro.kl.mean())
        if not math.isfinite(kl) or not all(math.isfinite(v) for v in stats.values()):
            raise FloatingPointError(f"PPO diverged at iteration {it + 1} (non-finite KL or loss); "
                                     "lower lr or raise beta")
        curves.add(score=float(ro.scores.mean()), kl=kl, beta=kl_ctl.value,
                   response_tokens=float(ro.mask.sum(-1).mean()), reward_shift=shift,
                   reward_scale=scale, **stats)
        log(f"ppo {it + 1}/{hp.updates}: score {float(ro.scores.mean()):+.4f} kl {kl:.4f} "
            f"beta {kl_ctl.value:.4f} clipfrac {stats.get('clipfrac', 0.0):.3f}")
        kl_ctl.update(kl, len(batch_prompts))
        if task is not None:
            progress.advance(task)
    if task is not None:
        progress.remove_task(task)
    return curves
