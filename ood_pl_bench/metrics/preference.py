"""Preference metrics on test pairs (SPEC section 5): ``pl_accuracy`` and friends, ``rm_accuracy``.

Inputs are per-pair numbers, one entry per pair (lists or 1-D arrays of equal length):

* log-probabilities are sums over the response tokens only, ``log pi(y | x)``, for the chosen
  response ``y_w`` and the rejected one ``y_l``, under the policy ``pi_theta`` and the reference
  ``pi_ref``;
* rewards are the method's reward model scores ``r(x, y_w)`` and ``r(x, y_l)``.

Per-pair outcomes are 1 (the chosen response wins), 0.5 (a tie: the two sides differ by at most
``atol``) or 0. Every accuracy is the mean of per-pair outcomes over all pairs, never a mean of
batch means: collect the per-pair numbers of every batch, concatenate, then call these functions.

The implicit margin of a pair is ``(log pi_theta - log pi_ref)(y_w) - (log pi_theta - log pi_ref)(y_l)``
(in nats, not scaled by beta). For the reference policy itself (theta = theta_0, identical log-probs)
every margin is exactly 0, every outcome a tie and ``pl_accuracy`` exactly 0.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.special

from .schema import accuracy_metric, mean_metric, metric
from .stats import as_1d


def _same_length(**arrays: Any) -> list[np.ndarray]:
    out = [as_1d(v, k) for k, v in arrays.items()]
    sizes = {k: a.size for k, a in zip(arrays, out)}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"per-pair inputs must have equal lengths, got {sizes}")
    return out


def _outcomes_from_diff(diff: np.ndarray, atol: float) -> np.ndarray:
    """1 where ``diff > atol``, 0 where ``diff < -atol``, 0.5 otherwise."""
    atol = float(atol)
    if not atol >= 0.0:
        raise ValueError(f"atol must be >= 0, got {atol}")
    out = np.full(diff.shape, 0.5)
    out[diff > atol] = 1.0
    out[diff < -atol] = 0.0
    return out


def _policy_and_ref(policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any) -> list[np.ndarray]:
    return _same_length(
        policy_chosen=policy_chosen, policy_rejected=policy_rejected, ref_chosen=ref_chosen, ref_rejected=ref_rejected
    )


def _margins(pc: np.ndarray, pr: np.ndarray, rc: np.ndarray, rr: np.ndarray) -> np.ndarray:
    return (pc - rc) - (pr - rr)


def implicit_margins(
    policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any
) -> np.ndarray:
    """Per-pair implicit margins ``(policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)``.

    Identical policy and reference log-probs give margins of exactly 0.

    Raises:
        ValueError: unequal lengths, not 1-D, or a non-finite entry.
    """
    return _margins(*_policy_and_ref(policy_chosen, policy_rejected, ref_chosen, ref_rejected))


def pl_outcomes(
    policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any, atol: float = 0.0
) -> np.ndarray:
    """Per-pair implicit-reward outcomes: 1 if the implicit margin is > ``atol``, 0 if < ``-atol``,
    else 0.5 (a tie).

    For the reference policy (policy log-probs equal to the reference ones) every outcome is 0.5.
    ``atol`` > 0 absorbs numerical noise, e.g. when the policy's log-probs at theta_0 were computed
    in a different batch or precision than the cached reference ones.
    """
    return _outcomes_from_diff(implicit_margins(policy_chosen, policy_rejected, ref_chosen, ref_rejected), atol)


def likelihood_outcomes(policy_chosen: Any, policy_rejected: Any, atol: float = 0.0) -> np.ndarray:
    """Per-pair outcomes of the sign of the paper's ``A = log pi_theta(y_w) - log pi_theta(y_l)``:
    1 if ``A > atol``, 0 if ``A < -atol``, else 0.5."""
    pc, pr = _same_length(policy_chosen=policy_chosen, policy_rejected=policy_rejected)
    return _outcomes_from_diff(pc - pr, atol)


def rm_outcomes(reward_chosen: Any, reward_rejected: Any, atol: float = 0.0) -> np.ndarray:
    """Per-pair reward-model outcomes: 1 if ``r(y_w) - r(y_l) > atol``, 0 if ``< -atol``, else 0.5."""
    rc, rr = _same_length(reward_chosen=reward_chosen, reward_rejected=reward_rejected)
    return _outcomes_from_diff(rc - rr, atol)


def _check_beta(beta: float) -> float:
    beta = float(beta)
    if not (np.isfinite(beta) and beta > 0.0):
        raise ValueError(f"beta must be a positive number, got {beta}")
    return beta


def bt_log_likelihoods(margins: Any, beta: float = 1.0) -> np.ndarray:
    """Per-pair Bradley-Terry log-likelihoods ``log sigmoid(beta * margin)`` (numerically stable)."""
    return scipy.special.log_expit(_check_beta(beta) * as_1d(margins, "margins"))


def bt_log_likelihood(margins: Any, beta: float = 1.0) -> float | None:
    """Held-out Bradley-Terry log-likelihood: the mean over pairs of ``log sigmoid(beta * margin)``.

    With the implicit reward ``beta * (log pi_theta - log pi_ref)`` this is the mean log-probability
    the policy's implicit reward model gives the human label (log 0.5 for the reference policy).
    Stable for large margins of either sign (``scipy.special.log_expit``). ``None`` with no pairs.
    """
    lls = bt_log_likelihoods(margins, beta)
    return float(lls.mean()) if lls.size else None


def preference_report(
    policy_chosen: Any,
    policy_rejected: Any,
    ref_chosen: Any,
    ref_rejected: Any,
    *,
    beta: float = 1.0,
    seed: int = 0,
    atol: float = 0.0,
    confidence: float = 0.95,
    n_resamples: int = 2000,
) -> dict[str, dict]:
    """All preference metrics of one domain's test pairs, as metric dicts (:mod:`.schema`).

    Returns a dict with keys:

    * ``pl_accuracy`` -- mean of :func:`pl_outcomes`; bootstrap CI over pairs (``ci_low``,
      ``ci_high``), Wilson interval (``wilson_low``, ``wilson_high``) and ``ties``;
    * ``pl_likelihood_accuracy`` -- mean of :func:`likelihood_outcomes`, same extra keys;
    * ``pl_margin`` -- mean implicit margin (nats, unscaled by beta) with a bootstrap CI;
    * ``pl_ties`` -- the number of tied pairs (an int, no interval);
    * ``pl_bt_loglik`` -- :func:`bt_log_likelihood` with a bootstrap CI over pairs and key ``beta``.

    ``n`` is the number of pairs in each. With no pairs every value is None and ``n`` is 0.
    ``n_resamples=0`` skips the bootstrap (values and Wilson intervals only).
    """
    pc, pr, rc, rr = _policy_and_ref(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    margins = _margins(pc, pr, rc, rr)
    outcomes = _outcomes_from_diff(margins, atol)
    opts = dict(confidence=confidence, n_resamples=n_resamples, seed=seed)
    accuracy = accuracy_metric(outcomes, **opts)
    return {
        "pl_accuracy": accuracy,
        "pl_likelihood_accuracy": accuracy_metric(_outcomes_from_diff(pc - pr, atol), **opts),
        "pl_margin": mean_metric(margins, **opts),
        "pl_ties": metric(accuracy["ties"], n=margins.size),
        "pl_bt_loglik": mean_metric(bt_log_likelihoods(margins, beta), beta=_check_beta(beta), **opts),
    }


def rm_report(
    reward_chosen: Any,
    reward_rejected: Any,
    seed: int = 0,
    *,
    atol: float = 0.0,
    confidence: float = 0.95,
    n_resamples: int = 2000,
) -> dict[str, dict]:
    """``{"rm_accuracy": metric}``: mean of :func:`rm_outcomes` over pairs, with a bootstrap CI,
    the Wilson interval (``wilson_low``, ``wilson_high``) and ``ties``. No pairs: value None, n 0."""
    outcomes = rm_outcomes(reward_chosen, reward_rejected, atol)
    return {"rm_accuracy": accuracy_metric(outcomes, confidence=confidence, n_resamples=n_resamples, seed=seed)}
