"""The shape of one metric value in results, and builders that fill it from per-sample values.

Every metric in ``results.json`` (per domain and aggregated) is a plain, JSON-ready dict::

    {
        "value": float | int | None,  # the estimate; None when there is no data or it does not apply
        "ci_low": float | None,       # confidence interval; None when none can be estimated
        "ci_high": float | None,
        "n": int,                     # the number of units the estimate is over (pairs, prompts, domains)
        "applicable": bool,           # False when the metric does not apply to the method
        "ci_method": str | None,      # how the interval was made (e.g. CI_METHODS), None without one
        ...                           # optional extra keys, e.g. "wilson_low", "wilson_high", "ties",
    }                                 # "reason" (why not applicable), "n_samples", "beta"

Rules:

* ``value`` is ``None`` exactly when there is nothing to estimate: no data (``n == 0``) or a metric
  that does not apply (``applicable`` False, see :func:`not_applicable`, which adds a ``"reason"``).
  Counts (e.g. ``pl_ties``) are ints; every other value is a float.
* ``ci_low`` and ``ci_high`` are both numbers or both ``None``; ``ci_method`` is ``None`` when they
  are. Numpy scalars are converted to Python numbers so the dict serialises as is; NaN and infinite
  values are refused (``ValueError``): JSON has no place for them.
* Extra keys never replace the six core keys (:data:`METRIC_KEYS`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from . import stats

METRIC_KEYS = ("value", "ci_low", "ci_high", "n", "applicable", "ci_method")
"""The six keys every metric dict has."""

CI_BOOTSTRAP_PERCENTILE = "bootstrap_percentile"
CI_BOOTSTRAP_BCA = "bootstrap_bca"
CI_WILSON = "wilson"
CI_BOOTSTRAP_STRATIFIED = "bootstrap_stratified"
CI_METHODS = (CI_BOOTSTRAP_PERCENTILE, CI_BOOTSTRAP_BCA, CI_WILSON, CI_BOOTSTRAP_STRATIFIED)
"""The ``ci_method`` names this package writes (the last: a macro average's CI, resampled within
each domain by :func:`ood_pl_bench.metrics.stats.macro_bootstrap_ci`). Any non-empty string is
accepted, so a plug-in may name its own method."""

_BOOTSTRAP_CI_METHOD = {"percentile": CI_BOOTSTRAP_PERCENTILE, "bca": CI_BOOTSTRAP_BCA}


def _number(x: Any, what: str) -> float | int | None:
    """Return ``x`` as a Python float (int for ints), None for None; refuse NaN and infinities."""
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_)):
        raise ValueError(f"{what} must be a number, got a bool")
    if isinstance(x, (int, np.integer)):
        return int(x)
    out = float(x)
    if not math.isfinite(out):
        raise ValueError(f"{what} must be finite, got {out}")
    return out


def _check_ci_method(ci_method: Any) -> None:
    if not (isinstance(ci_method, str) and ci_method.strip()):
        raise ValueError(f"an interval needs a ci_method name (e.g. one of {CI_METHODS}), got {ci_method!r}")


def metric(
    value: float | int | None,
    ci: Sequence[float | None] = (None, None),
    *,
    n: int,
    ci_method: str | None = None,
    **extra: Any,
) -> dict:
    """Return a metric dict (the module docstring gives the shape).

    Args:
        value: the estimate, or None when there is no data.
        ci: ``(lo, hi)``; ``(None, None)`` for none. ``ci_method`` is dropped to None without one.
        n: the number of units (pairs, prompts, domains) the estimate is over.
        ci_method: a non-empty name, preferably one of :data:`CI_METHODS`; required with ``ci``.
        **extra: additional keys (numpy scalars become Python numbers).

    Raises:
        ValueError: a non-finite number, half an interval, ``lo > hi``, a missing ``ci_method``,
            ``n < 0``, or an extra key that would replace a core key.
    """
    lo, hi = ci
    lo, hi = _number(lo, "ci_low"), _number(hi, "ci_high")
    if (lo is None) != (hi is None):
        raise ValueError(f"a confidence interval needs both ends, got ({lo}, {hi})")
    if lo is not None:
        if lo > hi:
            raise ValueError(f"confidence interval ends are reversed: ({lo}, {hi})")
        _check_ci_method(ci_method)
    else:
        ci_method = None
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    clash = set(extra) & set(METRIC_KEYS)
    if clash:
        raise ValueError(f"extra keys may not replace core metric keys: {sorted(clash)}")
    out = {
        "value": _number(value, "value"),
        "ci_low": lo,
        "ci_high": hi,
        "n": n,
        "applicable": True,
        "ci_method": ci_method,
    }
    for key, val in extra.items():
        numeric = isinstance(val, (float, int, np.floating, np.integer)) and not isinstance(val, bool)
        out[key] = _number(val, key) if numeric else val
    return out


def not_applicable(reason: str, **extra: Any) -> dict:
    """Return the metric dict of a metric that does not apply, e.g. ``rm_accuracy`` for ``dpo``.

    ``{"value": None, "ci_low": None, "ci_high": None, "n": 0, "applicable": False,
    "ci_method": None, "reason": reason, **extra}``.
    """
    if not reason:
        raise ValueError("not_applicable needs a reason")
    out = metric(None, n=0, reason=str(reason), **extra)
    out["applicable"] = False
    return out


def check_metric(obj: Any) -> None:
    """Raise ``ValueError`` naming the problem if ``obj`` is not a well-formed metric dict.

    Checks the core keys and their types, both-or-neither interval ends with ``lo <= hi`` and a known
    ``ci_method`` name, finiteness, and that a ``None`` value goes with ``n == 0`` or not applicable.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"a metric must be a dict, got {type(obj).__name__}")
    missing = [k for k in METRIC_KEYS if k not in obj]
    if missing:
        raise ValueError(f"metric is missing keys {missing}")
    if not isinstance(obj["applicable"], bool):
        raise ValueError("metric key 'applicable' must be true or false")
    if not isinstance(obj["n"], int) or isinstance(obj["n"], bool) or obj["n"] < 0:
        raise ValueError(f"metric key 'n' must be an int >= 0, got {obj['n']!r}")
    for key in ("value", "ci_low", "ci_high"):
        val = obj[key]
        if val is not None and (
            isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val)
        ):
            raise ValueError(f"metric key {key!r} must be a finite number or null, got {val!r}")
    lo, hi = obj["ci_low"], obj["ci_high"]
    if (lo is None) != (hi is None):
        raise ValueError("metric has only one confidence interval end")
    if lo is not None:
        if lo > hi:
            raise ValueError(f"metric confidence interval ends are reversed: ({lo}, {hi})")
        _check_ci_method(obj["ci_method"])
    elif obj["ci_method"] is not None:
        raise ValueError("metric names a ci_method but has no confidence interval")
    if not obj["applicable"] and obj["value"] is not None:
        raise ValueError("a metric that is not applicable must have value null")
    if obj["applicable"] and obj["value"] is None and obj["n"] != 0:
        raise ValueError(f"metric has no value but n = {obj['n']}")


def mean_metric(
    values: Any,
    *,
    statistic: Callable = np.mean,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    method: str = "percentile",
    **extra: Any,
) -> dict:
    """Metric dict of ``statistic(values)`` with a bootstrap CI over the values.

    ``n`` is ``len(values)``. No values: value None, n 0, no interval. One value: that value and no
    interval (see :func:`ood_pl_bench.metrics.stats.bootstrap_ci`). ``n_resamples=0`` skips the
    bootstrap: the value with no interval.
    """
    arr = stats.as_1d(values)
    if arr.size == 0:
        return metric(None, n=0, **extra)
    if n_resamples == 0:
        return metric(float(statistic(arr)), n=arr.size, **extra)
    ci = stats.bootstrap_ci(
        arr, statistic=statistic, confidence=confidence, n_resamples=n_resamples, seed=seed, method=method
    )
    return metric(
        float(statistic(arr)), ci, n=arr.size, ci_method=_BOOTSTRAP_CI_METHOD[method.lower()], **extra
    )


def accuracy_metric(
    outcomes: Any,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    **extra: Any,
) -> dict:
    """Metric dict of an accuracy (or win rate) from per-item outcomes in [0, 1] (1 / 0.5 tie / 0).

    ``value`` is the mean outcome over all items (never a mean of batch means), with a percentile
    bootstrap CI over items (``ci_low``/``ci_high``) and the Wilson interval (``wilson_low``/
    ``wilson_high``; half-credit ties use the closed form, see
    :func:`ood_pl_bench.metrics.stats.wilson_interval`); ``ties`` counts outcomes equal to 0.5.
    No outcomes: value None, n 0, no intervals, ties None. ``n_resamples=0`` skips the bootstrap
    (the Wilson interval is still given).
    """
    arr = stats.as_1d(outcomes, "outcomes")
    if np.any((arr < 0) | (arr > 1)):
        raise ValueError("outcomes must lie in [0, 1] (1 correct, 0.5 tie, 0 wrong)")
    if arr.size == 0:
        return metric(None, n=0, wilson_low=None, wilson_high=None, ties=None, **extra)
    wilson = stats.wilson_interval(float(arr.sum()), int(arr.size), confidence=confidence)
    return mean_metric(
        arr,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        wilson_low=wilson[0],
        wilson_high=wilson[1],
        ties=int(np.count_nonzero(arr == 0.5)),
        **extra,
    )
