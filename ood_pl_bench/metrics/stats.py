"""Statistics of SPEC section 5: intervals, method-vs-method tests, multiple testing, aggregation.

Pure functions over numbers and 1-D arrays (numpy/scipy only). Conventions shared by all of them:

* Inputs are lists, tuples or 1-D arrays of finite numbers; NaN or infinite entries raise
  ``ValueError`` (a NaN would otherwise pass silently as "neither better nor worse").
* No data never crashes: an interval that cannot be estimated is ``(None, None)`` and a point
  estimate of nothing is ``None``, which is exactly what the result schema stores
  (:mod:`ood_pl_bench.metrics.schema`).
* Resampling is deterministic for a ``seed`` (a fresh ``numpy.random.default_rng(seed)`` per call).
* Intervals are two-sided at ``confidence`` (default 0.95).
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import scipy.stats

_BOOTSTRAP_METHODS = {"percentile": "percentile", "bca": "BCa"}
_MAX_BATCH_ELEMENTS = 2_000_000  # resamples held in memory at once: n_resamples_batch * n values


def as_1d(values: Any, name: str = "values") -> np.ndarray:
    """Return ``values`` (list, tuple or array) as a 1-D float64 array; refuse NaN and infinities.

    Raises:
        ValueError: not 1-D (a scalar, a nested or ragged list) or a non-finite entry.
    """
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a flat sequence of numbers: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one number per pair or sample), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name} must be finite; entry {bad} is {arr[bad]}")
    return arr


def _check_confidence(confidence: float) -> float:
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return confidence


def _z(confidence: float) -> float:
    return float(scipy.stats.norm.ppf(0.5 + _check_confidence(confidence) / 2.0))


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval for a proportion ``successes / n`` (no continuity correction).

    ``successes`` may carry half credits (ties scored 0.5). When it is a whole number the interval
    is ``scipy.stats.binomtest(successes, n).proportion_ci(confidence, method="wilson")``; otherwise
    the same closed form is evaluated at ``p = successes / n`` (scipy's binomtest needs an integer
    count)::

        z = Phi^-1((1 + confidence) / 2)
        center = (p + z^2 / (2n)) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))
        (lo, hi) = (max(0, center - half), min(1, center + half))

    The two agree at whole numbers, so the interval is continuous in ``successes``. Scoring a tie as
    half a success treats its variance as that of a coin flip, so with ties the interval is
    conservative (ties are less variable than 0/1 outcomes).

    Returns:
        ``(lo, hi)``; ``(None, None)`` when ``n == 0``.

    Raises:
        ValueError: ``n < 0``, ``n`` not a whole number, or ``successes`` outside ``[0, n]``.
    """
    if isinstance(n, bool) or float(n) != int(n):
        raise ValueError(f"n must be a whole number, got {n!r}")
    n = int(n)
    successes = float(successes)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not (math.isfinite(successes) and 0.0 <= successes <= n):
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    confidence = _check_confidence(confidence)
    if n == 0:
        return None, None
    if successes.is_integer():
        ci = scipy.stats.binomtest(int(successes), n).proportion_ci(confidence_level=confidence, method="wilson")
        return float(ci.low), float(ci.high)
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def _takes_axis(statistic: Callable) -> bool:
    try:
        return "axis" in inspect.signature(statistic).parameters
    except (TypeError, ValueError):
        return False


def _combined(statistic: Callable, combine: Callable[..., Any]) -> Callable:
    """A statistic of several samples, ``combine(statistic(s1), statistic(s2), ...)``, that takes
    ``axis`` (so scipy vectorises it) exactly when ``statistic`` does."""
    if _takes_axis(statistic):

        def over_samples(*samples, axis=-1):
            return combine(*(statistic(s, axis=axis) for s in samples))

    else:

        def over_samples(*samples):
            return combine(*(statistic(s) for s in samples))

    return over_samples


def _rng_kwargs(seed: int) -> dict:
    """``rng=`` on scipy >= 1.15, ``random_state=`` before (both take a Generator)."""
    key = "rng" if "rng" in inspect.signature(scipy.stats.bootstrap).parameters else "random_state"
    return {key: np.random.default_rng(seed)}


def _scipy_bootstrap(
    data: tuple[np.ndarray, ...],
    statistic: Callable,
    *,
    paired: bool,
    confidence: float,
    n_resamples: int,
    seed: int,
    method: str,
):
    """Run ``scipy.stats.bootstrap``; a BCa interval that comes out NaN is redone as percentile.

    BCa is undefined when the jackknife values are all equal (scipy then warns and returns NaN);
    the percentile interval of the same resamples is returned in that case, without a warning.
    """
    key = str(method).lower()
    if key not in _BOOTSTRAP_METHODS:
        raise ValueError(f"method must be 'percentile' or 'BCa', got {method!r}")
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    largest = max(len(d) for d in data)
    common = dict(
        n_resamples=int(n_resamples),
        batch=max(1, min(int(n_resamples), _MAX_BATCH_ELEMENTS // max(1, largest))),
        paired=paired,
        confidence_level=_check_confidence(confidence),
    )
    with warnings.catch_warnings():
        if key == "bca":
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", getattr(scipy.stats, "DegenerateDataWarning", RuntimeWarning))
        res = scipy.stats.bootstrap(data, statistic, method=_BOOTSTRAP_METHODS[key], **common, **_rng_kwargs(seed))
    if key == "bca" and not (np.isfinite(res.confidence_interval.low) and np.isfinite(res.confidence_interval.high)):
        res = scipy.stats.bootstrap(
            data, statistic, method="percentile", bootstrap_result=res, **{**common, "n_resamples": 0}
        )
    return res


def bootstrap_ci(
    values: Any,
    statistic: Callable = np.mean,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    method: str = "percentile",
) -> tuple[float | None, float | None]:
    """Bootstrap confidence interval of ``statistic(values)`` with ``scipy.stats.bootstrap``.

    Args:
        values: one number per resampling unit (pair, prompt).
        statistic: a function of a 1-D array; vectorised when it takes ``axis`` (as ``np.mean``).
        confidence: two-sided confidence level.
        n_resamples: bootstrap resamples.
        seed: seeds a fresh ``numpy.random.default_rng``; the same seed gives the same interval.
        method: ``"percentile"`` (default) or ``"BCa"``.

    Returns:
        ``(lo, hi)``. Edge cases, without warnings or NaN:

        * fewer than 2 values: ``(None, None)`` -- one observation says nothing about spread;
        * constant values: ``(s, s)`` with ``s = statistic(values)`` -- every resample is the same;
        * ``"BCa"`` where BCa is undefined (all jackknife values equal): the percentile interval.
    """
    arr = as_1d(values)
    if arr.size < 2:
        return None, None
    if np.ptp(arr) == 0:
        s = float(statistic(arr))
        return s, s
    res = _scipy_bootstrap(
        (arr,), statistic, paired=False, confidence=confidence, n_resamples=n_resamples, seed=seed, method=method
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_bootstrap(
    a: Any,
    b: Any,
    statistic: Callable = np.mean,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    method: str = "percentile",
) -> dict:
    """Paired bootstrap of ``statistic(a) - statistic(b)`` (e.g. two methods on the same pairs).

    Each resample draws one set of indices and applies it to both ``a`` and ``b``
    (``scipy.stats.bootstrap(..., paired=True)``), so the pairing is kept.

    The two-sided p-value of "no difference" uses the bootstrap distribution shifted to the null
    (centred on zero): ``p = (1 + #{b : |d*_b - d| >= |d|}) / (n_resamples + 1)``, where ``d`` is the
    observed difference and ``d*_b`` the resampled ones. It is 1 when ``d == 0`` and at least
    ``1 / (n_resamples + 1)``.

    Returns:
        ``{"diff": d, "ci_low": lo, "ci_high": hi, "p_value": p, "n": len(a)}``. With no pairs every
        value is None; with one pair ``diff`` is set and the rest None.

    Raises:
        ValueError: ``a`` and ``b`` differ in length (or see :func:`as_1d`).
    """
    x, y = as_1d(a, "a"), as_1d(b, "b")
    if x.size != y.size:
        raise ValueError(f"paired_bootstrap needs equal lengths, got {x.size} and {y.size}")
    out = {"diff": None, "ci_low": None, "ci_high": None, "p_value": None, "n": int(x.size)}
    if x.size == 0:
        return out
    diff = float(statistic(x)) - float(statistic(y))
    out["diff"] = diff
    if x.size < 2:
        return out
    res = _scipy_bootstrap(
        (x, y), _combined(statistic, lambda u, v: u - v), paired=True, confidence=confidence, n_resamples=n_resamples, seed=seed, method=method
    )
    dist = np.asarray(res.bootstrap_distribution, dtype=np.float64)
    extreme = int(np.count_nonzero(np.abs(dist - diff) >= abs(diff)))
    out["ci_low"] = float(res.confidence_interval.low)
    out["ci_high"] = float(res.confidence_interval.high)
    out["p_value"] = min(1.0, (1 + extreme) / (dist.size + 1))
    return out


def mcnemar(a_outcomes: Any, b_outcomes: Any) -> dict:
    """Exact McNemar test of two methods scored on the same items (outcomes 1 / 0.5 tie / 0).

    Rule for ties: a pair is discordant when the two outcomes differ, in favour of the higher one.
    ``b01`` counts items where ``b``'s outcome is higher than ``a``'s (a wrong and b right, but also a
    tie against a right answer or a wrong answer against a tie), ``b10`` the reverse; equal outcomes
    are concordant and dropped. The p-value is the exact two-sided binomial test of
    ``b01 ~ Binomial(b01 + b10, 1/2)`` (``scipy.stats.binomtest``). For 0/1 outcomes this is exactly
    the exact McNemar test; with ties it is the sign test of the paired differences, which keeps an
    all-ties method (the reference policy, accuracy 0.5) level with a coin-flipping one, where
    "tie counts as wrong" would not.

    Returns:
        ``{"b01": int, "b10": int, "p_value": float | None, "n": int}``; ``p_value`` is 1.0 when no
        item is discordant and None when there are no items.

    Raises:
        ValueError: lengths differ, or an outcome outside [0, 1].
    """
    x, y = as_1d(a_outcomes, "a_outcomes"), as_1d(b_outcomes, "b_outcomes")
    if x.size != y.size:
        raise ValueError(f"mcnemar needs equal lengths, got {x.size} and {y.size}")
    if np.any((x < 0) | (x > 1)) or np.any((y < 0) | (y > 1)):
        raise ValueError("outcomes must lie in [0, 1] (1 correct, 0.5 tie, 0 wrong)")
    b01 = int(np.count_nonzero(y > x))
    b10 = int(np.count_nonzero(x > y))
    if x.size == 0:
        p = None
    elif b01 + b10 == 0:
        p = 1.0
    else:
        p = float(scipy.stats.binomtest(b01, b01 + b10, 0.5, alternative="two-sided").pvalue)
    return {"b01": b01, "b10": b10, "p_value": p, "n": int(x.size)}


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With the m given p-values sorted ascending, ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``
    (1-based ``j``): monotone in the sorted order and capped at 1. Reject at level ``alpha`` where
    ``adj <= alpha``. ``None`` entries (tests that were not run) stay ``None`` and do not count in m.

    Raises:
        ValueError: a p-value outside [0, 1] or NaN.
    """
    present = [(i, float(p)) for i, p in enumerate(p_values) if p is not None]
    for _, p in present:
        if not 0.0 <= p <= 1.0:  # False for NaN too
            raise ValueError(f"p-values must be in [0, 1], got {p}")
    out: list[float | None] = [None] * len(p_values)
    m = len(present)
    running = 0.0
    for rank, (i, p) in enumerate(sorted(present, key=lambda t: t[1])):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def _check_domains(per_domain: Mapping[str, Any], domains: Iterable[str] | None, what: str) -> None:
    if not per_domain:
        raise ValueError(f"{what} needs at least one domain")
    if domains is not None:
        expected = set(domains)
        missing = sorted(expected - set(per_domain))
        extra = sorted(set(per_domain) - expected)
        if missing or extra:
            raise ValueError(f"{what}: domains missing {missing}, unexpected {extra}")


def macro_average(per_domain: Mapping[str, float | None], domains: Iterable[str] | None = None) -> float | None:
    """Macro average over domains: each domain counts once, whatever its number of pairs/prompts.

    Rule for missing values: all domains must be present. If every value is ``None`` (the metric does
    not apply to the method in any domain) the average is ``None``; if only some are ``None`` it is an
    error, since averaging the rest would silently change which domains the number covers.

    Args:
        per_domain: domain name -> per-domain value (or None).
        domains: when given, exactly these domains must be the keys.

    Raises:
        ValueError: no domains, keys differ from ``domains``, some (not all) values None, or NaN.
    """
    _check_domains(per_domain, domains, "macro_average")
    missing = sorted(d for d, v in per_domain.items() if v is None)
    if len(missing) == len(per_domain):
        return None
    if missing:
        raise ValueError(f"macro_average needs every domain; no value for {missing}")
    values = as_1d([per_domain[d] for d in sorted(per_domain)], "per-domain values")
    return float(np.mean(values))


def macro_bootstrap_ci(
    per_domain_samples: Mapping[str, Any],
    statistic: Callable = np.mean,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    method: str = "percentile",
    domains: Iterable[str] | None = None,
) -> tuple[float, float]:
    """Stratified bootstrap CI of the macro average ``mean_d statistic(samples_d)``.

    Each resample draws within every domain independently (``scipy.stats.bootstrap`` with one sample
    per domain, ``paired=False``), so every domain keeps its size and still counts once. A domain
    with a single value or constant values contributes ``statistic(samples_d)`` to every resample.
    When every domain is like that the interval is ``(m, m)`` with ``m`` the macro average.

    Args:
        per_domain_samples: domain -> its per-unit values (per-pair outcomes, per-prompt rewards).
        statistic, confidence, n_resamples, seed, method: as in :func:`bootstrap_ci`.
        domains: when given, exactly these domains must be the keys.

    Raises:
        ValueError: no domains, keys differ from ``domains``, or a domain without values.
    """
    _check_domains(per_domain_samples, domains, "macro_bootstrap_ci")
    names = sorted(per_domain_samples)
    arrays = {d: as_1d(per_domain_samples[d], f"samples of domain {d!r}") for d in names}
    empty = [d for d in names if arrays[d].size == 0]
    if empty:
        raise ValueError(f"macro_bootstrap_ci needs values in every domain; none for {empty}")
    varies = {d: arrays[d].size >= 2 and np.ptp(arrays[d]) > 0 for d in names}
    varying = [arrays[d] for d in names if varies[d]]
    fixed = sum(float(statistic(arrays[d])) for d in names if not varies[d])
    k = len(names)
    if not varying:
        m = fixed / k
        return m, m
    res = _scipy_bootstrap(
        tuple(varying),
        _combined(statistic, lambda *per_domain: (sum(per_domain) + fixed) / k),
        paired=False,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        method=method,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def generalization_gap(in_distribution: float | None, held_out: float | None) -> float | None:
    """In-distribution score minus held-out score (positive: worse out of distribution).

    ``None`` when either side is ``None`` (e.g. a metric that does not apply).
    """
    if in_distribution is None or held_out is None:
        return None
    gap = float(in_distribution) - float(held_out)
    if not math.isfinite(gap):
        raise ValueError(f"generalization_gap needs finite scores, got {in_distribution} and {held_out}")
    return gap
