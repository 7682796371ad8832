"""Generation metrics of one domain (SPEC section 5): ``gold_reward``, always paired with ``kl``.

Inputs are per-sample numbers (k samples per prompt, possibly uneven) with the prompt id of each
sample. The resampling unit is the prompt: samples of one prompt are averaged first, each prompt
then counts once, and the bootstrap CI resamples prompts. With the same number of samples per
prompt (the benchmark's fixed k) the value equals the plain mean over samples; with uneven counts
it is the mean of per-prompt means, so a prompt with more samples does not weigh more.
"""

from __future__ import annotations

from typing import Any, Hashable, Sequence

import numpy as np

from .schema import mean_metric
from .stats import as_1d


def per_prompt_means(values: Any, prompt_ids: Sequence[Hashable]) -> tuple[list[Hashable], np.ndarray]:
    """Average per-sample ``values`` within each prompt.

    Returns:
        ``(ids, means)``: the distinct prompt ids in order of first appearance and their means.

    Raises:
        ValueError: ``values`` and ``prompt_ids`` differ in length, or a non-finite value.
    """
    arr = as_1d(values)
    ids = list(prompt_ids)
    if len(ids) != arr.size:
        raise ValueError(f"need one prompt id per sample, got {len(ids)} ids for {arr.size} samples")
    index: dict[Hashable, int] = {}
    groups = np.fromiter((index.setdefault(pid, len(index)) for pid in ids), dtype=np.int64, count=len(ids))
    sums = np.bincount(groups, weights=arr, minlength=len(index))
    counts = np.bincount(groups, minlength=len(index))
    return list(index), sums / np.maximum(counts, 1)


def prompt_mean_metric(
    values: Any,
    prompt_ids: Sequence[Hashable],
    *,
    seed: int = 0,
    confidence: float = 0.95,
    n_resamples: int = 2000,
) -> dict:
    """Metric dict of the mean over prompts of per-prompt mean values, bootstrap CI over prompts.

    ``n`` is the number of prompts and ``n_samples`` the number of samples. No samples: value None,
    n 0; one prompt: its mean and no interval.
    """
    _, means = per_prompt_means(values, prompt_ids)
    return mean_metric(
        means, seed=seed, confidence=confidence, n_resamples=n_resamples, n_samples=len(prompt_ids)
    )


def gold_reward_report(
    rewards: Any,
    prompt_ids: Sequence[Hashable],
    seed: int = 0,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
) -> dict:
    """The ``gold_reward`` metric dict: mean gold reward of the generations, bootstrap CI over prompts.

    ``rewards`` holds one gold reward per generated sample, ``prompt_ids`` the prompt of each; see
    :func:`prompt_mean_metric` for the estimator and the keys (``n`` prompts, ``n_samples``).
    """
    return prompt_mean_metric(rewards, prompt_ids, seed=seed, confidence=confidence, n_resamples=n_resamples)


def kl_report(
    policy_logprob_sums: Any,
    ref_logprob_sums: Any,
    prompt_ids: Sequence[Hashable],
    seed: int = 0,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
) -> dict:
    """The ``kl`` metric dict: mean of ``sum_t (log pi_theta - log pi_ref)`` over the samples.

    Each entry is a sample's log-probability summed over its generated tokens, under the policy and
    under the reference. This is the Monte Carlo estimate of KL(pi_theta || pi_ref) on samples
    from the policy; single estimates may be negative. Averaged and bootstrapped over prompts as
    in :func:`prompt_mean_metric`.
    """
    policy = as_1d(policy_logprob_sums, "policy_logprob_sums")
    ref = as_1d(ref_logprob_sums, "ref_logprob_sums")
    if policy.size != ref.size:
        raise ValueError(f"policy and reference log-probs differ in length: {policy.size} and {ref.size}")
    return prompt_mean_metric(policy - ref, prompt_ids, seed=seed, confidence=confidence, n_resamples=n_resamples)


def generation_report(
    rewards: Any,
    policy_logprob_sums: Any,
    ref_logprob_sums: Any,
    prompt_ids: Sequence[Hashable],
    seed: int = 0,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
) -> dict[str, dict]:
    """``{"gold_reward": metric, "kl": metric}`` on the same samples: the pair SPEC section 5 requires."""
    opts = dict(confidence=confidence, n_resamples=n_resamples)
    return {
        "gold_reward": gold_reward_report(rewards, prompt_ids, seed, **opts),
        "kl": kl_report(policy_logprob_sums, ref_logprob_sums, prompt_ids, seed, **opts),
    }
