"""Metrics from per-sample rows, and aggregation over domains: the benchmark's scoring protocol.

Everything in ``results.json`` follows from the per-sample files through these functions, so
``oodpl validate`` can recompute a submission exactly. CIs use a fixed bootstrap seed
(``BOOTSTRAP_SEED``), independent of the run seed, so recomputation is exact.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np

from .metrics import generation as gen_metrics
from .metrics import preference as pref_metrics
from .metrics import stats
from .metrics.schema import CI_BOOTSTRAP_STRATIFIED, metric, not_applicable

BOOTSTRAP_SEED = 0
PL_METRICS = ("pl_accuracy", "pl_likelihood_accuracy", "pl_margin", "pl_ties", "pl_bt_loglik")
# Metrics aggregated over domains, with the per-sample values their macro CI resamples.
AGGREGATED = {
    "pl_accuracy": ("pairs", "outcome"),
    "pl_likelihood_accuracy": ("pairs", "likelihood_outcome"),
    "rm_accuracy": ("pairs", "rm_outcome"),
    "gold_reward": ("generations", "gold_reward"),
    "kl": ("generations", "kl"),
}
IN_DISTRIBUTION_METRICS = ("pl_accuracy", "pl_likelihood_accuracy", "rm_accuracy")


def pair_metrics(rows: list[dict], *, explicit_likelihood: bool, has_reward_model: bool,
                 beta: float = 1.0) -> dict[str, dict]:
    """PL metrics and rm_accuracy of one domain from its per-pair rows.

    ``beta`` scales implicit margins in the held-out Bradley-Terry log-likelihood (the method's own
    reward factor; 1.0 for methods without one). It is recorded in the metric, so validation can
    recompute it.
    """
    out: dict[str, dict] = {}
    if explicit_likelihood:
        out.update(pref_metrics.preference_report(
            [r["policy_chosen"] for r in rows], [r["policy_rejected"] for r in rows],
            [r["ref_chosen"] for r in rows], [r["ref_rejected"] for r in rows], beta=beta, seed=BOOTSTRAP_SEED))
    else:
        reason = "the method has no explicit policy likelihood (implicit policy, e.g. best-of-n)"
        out.update({name: not_applicable(reason) for name in PL_METRICS})
    if has_reward_model:
        out.update(pref_metrics.rm_report([r["rm_chosen"] for r in rows], [r["rm_rejected"] for r in rows],
                                          seed=BOOTSTRAP_SEED))
    else:
        out["rm_accuracy"] = not_applicable("the method has no reward model")
    return out


def generation_metrics(rows: list[dict], *, explicit_likelihood: bool) -> dict[str, dict]:
    """Gold reward (and KL when the policy has a likelihood) of one domain from its generation rows."""
    ids = [r["prompt_id"] for r in rows]
    out = {"gold_reward": gen_metrics.gold_reward_report([r["gold_reward"] for r in rows], ids, seed=BOOTSTRAP_SEED)}
    if explicit_likelihood:
        out["kl"] = gen_metrics.kl_report([r["policy_logprob"] for r in rows], [r["ref_logprob"] for r in rows],
                                          ids, seed=BOOTSTRAP_SEED)
    else:
        out["kl"] = not_applicable("no explicit policy likelihood to estimate KL from")
    return out


def _per_unit_values(rows: list[dict], key: str, kind: str) -> np.ndarray:
    """Values a macro CI resamples: per pair for pair metrics, per prompt mean for generations."""
    kept = [r for r in rows if r.get(key) is not None]
    if kind == "pairs":
        return np.asarray([r[key] for r in kept], dtype=float)
    return gen_metrics.per_prompt_means([r[key] for r in kept], [r["prompt_id"] for r in kept])[1]


def macro(domain_metrics: dict[str, dict[str, dict]], rows: dict[str, dict[str, list[dict]]],
          names: Iterable[str]) -> dict[str, dict]:
    """Macro averages (each domain counts once) with stratified bootstrap CIs.

    ``domain_metrics``: domain -> metric name -> metric dict. ``rows``: domain -> {"pairs": [...],
    "generations": [...]}.
    """
    out: dict[str, dict] = {}
    for name in names:
        kind, key = AGGREGATED[name]
        per_domain = {d: m.get(name) for d, m in domain_metrics.items()}
        if not per_domain or any(v is None or not v.get("applicable", True) for v in per_domain.values()):
            reasons = {v.get("reason") for v in per_domain.values() if v and v.get("reason")}
            out[name] = not_applicable("; ".join(sorted(reasons)) or "not computed on every domain")
            continue
        value = stats.macro_average({d: v["value"] for d, v in per_domain.items()})
        samples = {d: _per_unit_values(rows[d][kind], key, kind) for d in per_domain}
        lo, hi = stats.macro_bootstrap_ci(samples, seed=BOOTSTRAP_SEED)
        out[name] = metric(value, ci=(lo, hi), n=len(per_domain), ci_method=CI_BOOTSTRAP_STRATIFIED)
    return out


def aggregate(held_out: dict[str, dict[str, dict]], held_out_rows: dict[str, dict[str, list[dict]]],
              source: dict[str, dict[str, dict]], source_rows: dict[str, dict[str, list[dict]]]) -> dict:
    """The ``aggregates`` block: held-out macro, in-distribution macro, and gap = in − held."""
    held = macro(held_out, held_out_rows, AGGREGATED)
    ind = macro(source, source_rows, IN_DISTRIBUTION_METRICS) if source else {}
    gap: dict[str, float | None] = {}
    for name in IN_DISTRIBUTION_METRICS:
        a, b = ind.get(name), held.get(name)
        if a and b and a.get("value") is not None and b.get("value") is not None:
            gap[name] = stats.generalization_gap(a["value"], b["value"])
        else:
            gap[name] = None
    return {"held_out": held, "in_distribution": ind, "gap": gap}


def protocol_record(task: Any) -> dict:
    """The ``protocol`` block of results.json: truncation, decoding, sample counts and folds of
    ``task`` as the run's profile applied it."""
    return {
        "max_prompt_tokens": task.max_prompt_tokens, "max_response_tokens": task.max_response_tokens,
        "eval_decoding": dataclasses.asdict(task.eval_decoding),
        "reference_decoding": dataclasses.asdict(task.reference_decoding),
        "samples_per_eval_prompt": task.samples_per_eval_prompt,
        "reference_samples_per_prompt": task.reference_samples_per_prompt,
        "folds": [dataclasses.asdict(f) for f in task.folds],
    }
