"""Per-unit values of a metric and paired tests between two runs (used by the table and ``compare``).

The *unit* of a metric is what its CI resamples (:data:`ood_pl_bench.protocol.AGGREGATED`): a test
pair for the preference metrics (``pl_accuracy``, ``pl_likelihood_accuracy``, ``rm_accuracy``: the
pair's outcome 1 / 0.5 / 0), a prompt for ``gold_reward`` and ``kl`` (the mean over its samples), and
a prompt for ``win_rate[<judge>]`` (the mean outcome of its judged pairs, recomputed from the
verdicts). Two runs of the same task, edition and profile score the same units, so their values
pair up one to one.

:func:`paired_macro` tests the difference of two macro averages (each domain counts once) with
:func:`ood_pl_bench.metrics.stats.paired_bootstrap` on the pooled units of all held-out domains,
each unit weighted by ``N / (K n_d)`` (``N`` units in all, ``K`` domains, ``n_d`` units in its domain) so
that the mean of the weighted values is exactly the macro average and the observed difference is
exactly the difference of the two macro scores. Resamples draw units jointly for both runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SubmissionError
from .store import LoadedRun

UNIT_METRICS = {
    "pl_accuracy": ("pairs", "outcome", "pair_id"),
    "pl_likelihood_accuracy": ("pairs", "likelihood_outcome", "pair_id"),
    "rm_accuracy": ("pairs", "rm_outcome", "pair_id"),
    "gold_reward": ("generations", "gold_reward", "prompt_id"),
    "kl": ("generations", "kl", "prompt_id"),
}
OUTCOME_METRICS = ("pl_accuracy", "pl_likelihood_accuracy", "rm_accuracy")
"""Metrics whose units are 1 / 0.5 / 0 outcomes: McNemar applies."""
N_RESAMPLES = 2000
SEED = 0


class NotComparable(SubmissionError):
    """Two runs do not score the same units of a metric (other items, profile or edition)."""


def judge_of(metric: str) -> str | None:
    """The judge id of a ``win_rate[<judge>]`` metric name, else None."""
    if metric.startswith("win_rate[") and metric.endswith("]"):
        return metric[len("win_rate["):-1]
    return None


def is_supported(metric: str) -> bool:
    """Whether per-unit values of ``metric`` can be read from sample files."""
    return metric in UNIT_METRICS or judge_of(metric) is not None


def macro_value(run: LoadedRun, metric: str) -> float | None:
    """The run's stored held-out macro value of ``metric`` (None when absent or not applicable)."""
    m = run.results.get("aggregates", {}).get("held_out", {}).get(metric)
    if not isinstance(m, dict) or not m.get("applicable", True):
        return None
    v = m.get("value")
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def unit_values(run: LoadedRun, domain: str, metric: str, role: str = "held_out") -> tuple[list[str], np.ndarray]:
    """``(unit ids, values)`` of ``metric`` in one domain, in the run's order.

    Raises:
        SubmissionError: the sample file is missing or damaged, or the metric is not supported.
    """
    from ..metrics.generation import per_prompt_means

    jid = judge_of(metric)
    if jid is not None:
        from ..judges.win_rate import judgement_outcome, judgements_sample_key

        stored = run.domains(role).get(domain, {}).get("metrics", {}).get(metric, {})
        policy = stored.get("unparseable_policy", "tie") if isinstance(stored, dict) else "tie"
        rows = run.rows(role, domain, judgements_sample_key(jid))
        kept = []
        for r in rows:
            outcome = judgement_outcome(r, unparseable=policy)[0]
            if outcome is not None:
                kept.append((str(r["prompt_id"]), outcome))
        ids, means = per_prompt_means([o for _, o in kept], [i for i, _ in kept])
        return [str(i) for i in ids], np.asarray(means, dtype=float)
    if metric not in UNIT_METRICS:
        raise SubmissionError(f"metric {metric!r} has no per-sample values to compare; choose one of: "
                              f"{', '.join(UNIT_METRICS)}, win_rate[<judge>]")
    kind, key, id_key = UNIT_METRICS[metric]
    rows = [r for r in run.rows(role, domain, kind) if r.get(key) is not None]
    if kind == "pairs":
        return [str(r[id_key]) for r in rows], np.asarray([float(r[key]) for r in rows], dtype=float)
    ids, means = per_prompt_means([float(r[key]) for r in rows], [str(r[id_key]) for r in rows])
    return [str(i) for i in ids], np.asarray(means, dtype=float)


def aligned(run_a: LoadedRun, run_b: LoadedRun, domain: str, metric: str,
            role: str = "held_out") -> tuple[list[str], np.ndarray, np.ndarray]:
    """The two runs' values of ``metric`` in ``domain`` on the same units, in run A's order.

    Raises:
        NotComparable: the runs score different units (names a few that differ).
    """
    ids_a, a = unit_values(run_a, domain, metric, role)
    ids_b, b = unit_values(run_b, domain, metric, role)
    if ids_a == ids_b:
        return ids_a, a, b
    if sorted(ids_a) != sorted(ids_b) or len(set(ids_a)) != len(ids_a):
        only_a = sorted(set(ids_a) - set(ids_b))[:3]
        only_b = sorted(set(ids_b) - set(ids_a))[:3]
        raise NotComparable(f"{run_a.label} and {run_b.label} do not score the same units of {metric} in {domain} "
                            f"({len(ids_a)} and {len(ids_b)} units; only in the first: {only_a or '-'}; "
                            f"only in the second: {only_b or '-'}): compare runs of the same edition and profile")
    index = {u: i for i, u in enumerate(ids_b)}
    return ids_a, a, b[[index[u] for u in ids_a]]


def paired_domain(a: np.ndarray, b: np.ndarray, *, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> dict:
    """Paired bootstrap of ``mean(a) - mean(b)`` over one domain's units (see ``stats.paired_bootstrap``)."""
    from ..metrics.stats import paired_bootstrap

    return paired_bootstrap(a, b, n_resamples=n_resamples, seed=seed)


def paired_macro(run_a: LoadedRun, run_b: LoadedRun, metric: str, domains: list[str] | None = None, *,
                 n_resamples: int = N_RESAMPLES, seed: int = SEED) -> dict:
    """Paired bootstrap of the difference of two held-out macro averages of ``metric`` (A − B).

    Returns:
        ``{"diff", "ci_low", "ci_high", "p_value", "n", "n_domains", "unit"}`` (see the module docstring).

    Raises:
        NotComparable: the runs score different units; SubmissionError: damaged sample files.
    """
    from ..metrics.stats import paired_bootstrap

    if domains is None:
        domains = [d for d in run_a.domains("held_out") if d in run_b.domains("held_out")]
    parts_a, parts_b = [], []
    for d in domains:
        _, a, b = aligned(run_a, run_b, d, metric)
        if a.size == 0:
            raise NotComparable(f"{metric} has no per-sample values in {d}")
        parts_a.append(a)
        parts_b.append(b)
    if not parts_a:
        raise NotComparable(f"{run_a.label} and {run_b.label} share no held-out domain")
    total, k = sum(p.size for p in parts_a), len(parts_a)
    weights = np.concatenate([np.full(p.size, total / (k * p.size)) for p in parts_a])
    out = paired_bootstrap(np.concatenate(parts_a) * weights, np.concatenate(parts_b) * weights,
                           n_resamples=n_resamples, seed=seed)
    out.update(n_domains=k, unit=unit_name(metric))
    return out


def unit_name(metric: str) -> str:
    """What one unit of ``metric`` is (``pair`` or ``prompt``)."""
    if metric in UNIT_METRICS:
        return "pair" if UNIT_METRICS[metric][0] == "pairs" else "prompt"
    return "prompt"


def tied(test: dict[str, Any]) -> bool:
    """Whether a paired test's 95% CI of the difference contains 0 (or there is no CI)."""
    lo, hi = test.get("ci_low"), test.get("ci_high")
    if lo is None or hi is None:
        return True
    return lo <= 0.0 <= hi
