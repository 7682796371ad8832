"""Win rate of a policy against the reference policy from pairwise judge verdicts (SPEC section 5).

Protocol. Every policy generation is paired with the reference generation of the same prompt
(sample ``s`` with reference sample ``s``, cycling when the reference has fewer) and the pair is
judged twice: policy shown first (:data:`~ood_pl_bench.judges.base.POLICY_FIRST`) and reference
shown first (:data:`~ood_pl_bench.judges.base.REFERENCE_FIRST`). Each verdict becomes a side
preference: +1 policy, -1 reference, 0 tie, None unparseable. The pair's outcome is

* both orders prefer the policy: **win** (1); both prefer the reference: **loss** (0); both tie: tie;
* the orders disagree (including one tie): **inconsistent**, scored as a tie (0.5);
* a verdict is unparseable: **unparseable**, scored as a tie (0.5) by default, or left out of the
  win rate with ``unparseable="exclude"``; either way it is counted and reported.

Win rate. The mean over prompts of each prompt's mean outcome (with one sample per prompt, the
mean over pairs), with a 95% percentile bootstrap CI over prompts (``BOOTSTRAP_SEED``-style fixed
seed) and the Wilson interval over pairs as ``wilson_low``/``wilson_high``. Reported with it: wins,
ties, losses (pairs), ``inconsistent`` and ``inconsistency_rate`` (over pairs with both verdicts
parsed), ``unparseable`` (verdicts) and ``unparseable_pairs``, mean lengths of both sides (in
characters), and the judge's price and time summed over the verdicts.

Length-controlled win rate (``lc_win_rate``). Judges favour longer answers, so a policy can win by
being verbose. We fit, locally with numpy, the logistic model
``P(policy preferred) = sigmoid(b0 + b1 * x)`` with ``x = (len(policy) - len(reference)) / s``
(characters, ``s`` the root-mean-square length difference so ``x`` is unit-free and 0 stays 0), by
maximum likelihood on the soft outcomes (1 / 0.5 / 0 as targets of the Bernoulli log-likelihood,
each prompt weighing as much in total as in the win rate), with a weak Gaussian penalty
``(0.1 * b1**2 + 1e-4 * b0**2) / 2`` that keeps the fit finite when outcomes are separable (e.g.
wins exactly when longer); when every outcome is the same the value is that outcome. Newton's
method, at most 100 steps. The reported value is
``sigmoid(b0)``: the predicted win rate when both answers have the same length. Its CI is a
percentile bootstrap over prompts, refitting on each resample. With no length differences it
equals the win rate (up to the negligible penalty).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from ..io import sha256_text
from ..metrics.schema import CI_BOOTSTRAP_PERCENTILE, metric, mean_metric
from ..metrics.stats import macro_average, macro_bootstrap_ci, wilson_interval
from .base import POLICY_FIRST, REFERENCE_FIRST, Judge, JudgeItem, Verdict

WIN, LOSS, TIE, INCONSISTENT, UNPARSEABLE = "win", "loss", "tie", "inconsistent", "unparseable"
STATUSES = (WIN, LOSS, TIE, INCONSISTENT, UNPARSEABLE)
UNPARSEABLE_POLICIES = ("tie", "exclude")
SLOPE_PENALTY = 0.1
INTERCEPT_PENALTY = 1e-4
BOOTSTRAP_SEED = 0
LC_METHOD = ("logistic fit of the outcome on the length difference (characters, RMS-scaled), "
             "weak L2 penalty; value = predicted win rate at zero length difference")


def win_rate_key(judge_id: str) -> str:
    """The metric name of a judge's win rate: ``win_rate[<judge id>]`` (one column per judge)."""
    return f"win_rate[{judge_id}]"


def lc_win_rate_key(judge_id: str) -> str:
    """The metric name of a judge's length-controlled win rate: ``lc_win_rate[<judge id>]``."""
    return f"lc_win_rate[{judge_id}]"


def side_preference(winner: Optional[str], order: str) -> Optional[int]:
    """The side a verdict prefers: +1 policy, -1 reference, 0 tie, None unparseable.

    ``winner`` is a position (``"A"``/``"B"``/``"tie"``/None); ``order`` says which side was A.
    """
    if winner == "tie":
        return 0
    if winner not in ("A", "B"):
        return None
    if order == POLICY_FIRST:
        return 1 if winner == "A" else -1
    if order == REFERENCE_FIRST:
        return 1 if winner == "B" else -1
    raise ValueError(f"unknown order {order!r}; expected {POLICY_FIRST!r} or {REFERENCE_FIRST!r}")


def pair_outcome(pref_policy_first: Optional[int], pref_reference_first: Optional[int], *,
                 unparseable: str = "tie") -> tuple[Optional[float], str]:
    """``(outcome, status)`` of a pair from its two side preferences (see the module docstring).

    ``outcome`` is 1, 0.5 or 0, or None for an unparseable pair when ``unparseable="exclude"``.
    """
    if unparseable not in UNPARSEABLE_POLICIES:
        raise ValueError(f"unparseable must be one of {UNPARSEABLE_POLICIES}, got {unparseable!r}")
    if pref_policy_first is None or pref_reference_first is None:
        return (0.5 if unparseable == "tie" else None), UNPARSEABLE
    if pref_policy_first != pref_reference_first:
        return 0.5, INCONSISTENT
    return {1: (1.0, WIN), -1: (0.0, LOSS), 0: (0.5, TIE)}[pref_policy_first]


def _as_float_array(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a flat sequence of finite numbers")
    return arr


def _fit_batched(y: np.ndarray, x: np.ndarray, w: np.ndarray, *, max_iter: int = 100,
                 tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Penalised soft-label logistic fits, one per row of the weights ``w`` (shape ``(B, n)``)."""
    from scipy.special import expit

    b0 = np.zeros(w.shape[0])
    b1 = np.zeros(w.shape[0])
    if y.size and np.ptp(y) == 0:
        # All outcomes equal: the fit's limit is that outcome at every length (expit(+-1000) is exactly
        # 1.0 / 0.0); the penalty would otherwise pull an all-wins rate slightly below 1.
        b0[:] = float(np.log(y[0] / (1.0 - y[0]))) if 0.0 < y[0] < 1.0 else (1000.0 if y[0] >= 1.0 else -1000.0)
        return b0, b1
    for _ in range(max_iter):
        p = expit(b0[:, None] + b1[:, None] * x[None, :])
        r = w * (p - y[None, :])
        g0 = r.sum(axis=1) + INTERCEPT_PENALTY * b0
        g1 = (r * x[None, :]).sum(axis=1) + SLOPE_PENALTY * b1
        s = w * p * (1.0 - p)
        h00 = s.sum(axis=1) + INTERCEPT_PENALTY
        h01 = (s * x[None, :]).sum(axis=1)
        h11 = (s * (x * x)[None, :]).sum(axis=1) + SLOPE_PENALTY
        det = h00 * h11 - h01 * h01
        d0 = (h11 * g0 - h01 * g1) / det
        d1 = (h00 * g1 - h01 * g0) / det
        step = np.maximum(1.0, np.maximum(np.abs(d0), np.abs(d1)) / 5.0)  # damp huge first steps
        b0 -= d0 / step
        b1 -= d1 / step
        if float(np.max(np.abs(d0) + np.abs(d1))) < tol:
            break
    return b0, b1


def fit_length_logistic(outcomes: Sequence[float], length_diffs: Sequence[float],
                        weights: Sequence[float] | None = None) -> dict[str, float]:
    """Fit ``P(win) = sigmoid(b0 + b1 * diff / scale)`` on soft outcomes (see the module docstring).

    Returns:
        ``{"lc_win_rate": sigmoid(b0), "intercept": b0, "slope": b1, "scale": scale}``; ``scale`` is
        the RMS length difference (1 when all differences are 0).

    Raises:
        ValueError: no outcomes, lengths differ, an outcome outside [0, 1], or a non-finite value.
    """
    y = _as_float_array(outcomes, "outcomes")
    d = _as_float_array(length_diffs, "length_diffs")
    if y.size == 0 or y.size != d.size:
        raise ValueError(f"need one length difference per outcome and at least one, got {y.size} and {d.size}")
    if np.any((y < 0) | (y > 1)):
        raise ValueError("outcomes must lie in [0, 1]")
    w = np.ones_like(y) if weights is None else _as_float_array(weights, "weights")
    scale = _rms(d)
    b0, b1 = _fit_batched(y, d / scale, w[None, :])
    return {"lc_win_rate": _sigmoid(float(b0[0])), "intercept": float(b0[0]), "slope": float(b1[0]),
            "scale": scale}


def _expit(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(z)


def _rms(d: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(d * d))) if d.size else 0.0
    return rms if rms > 0 else 1.0


def _sigmoid(z: float) -> float:
    from scipy.special import expit

    return float(expit(z))


def _prompt_index(prompt_ids: Sequence[Any] | None, n: int) -> tuple[np.ndarray, int]:
    if prompt_ids is None:
        return np.arange(n), n
    ids = list(prompt_ids)
    if len(ids) != n:
        raise ValueError(f"need one prompt id per pair, got {len(ids)} for {n} pairs")
    index: dict[Any, int] = {}
    return np.fromiter((index.setdefault(p, len(index)) for p in ids), dtype=np.int64, count=n), len(index)


def _bootstrap_counts(n_prompts: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each prompt is drawn in each resample: shape ``(n_resamples, n_prompts)``."""
    idx = rng.integers(0, n_prompts, size=(n_resamples, n_prompts))
    flat = idx + (np.arange(n_resamples) * n_prompts)[:, None]
    return np.bincount(flat.ravel(), minlength=n_resamples * n_prompts).reshape(n_resamples, n_prompts).astype(float)


def _lc_fit_inputs(outcomes: np.ndarray, diffs: np.ndarray, groups: np.ndarray, n_prompts: int):
    per_prompt = np.bincount(groups, minlength=n_prompts).astype(float)
    base = 1.0 / per_prompt[groups]  # each prompt weighs 1 in total, as in the win rate
    return outcomes, diffs / _rms(diffs), base


def length_controlled_win_rate(outcomes: Sequence[float], length_diffs: Sequence[float],
                               prompt_ids: Sequence[Any] | None = None, *, seed: int = BOOTSTRAP_SEED,
                               n_resamples: int = 2000, confidence: float = 0.95) -> dict:
    """Metric dict of the length-controlled win rate, with a bootstrap CI over prompts.

    ``outcomes`` (1 / 0.5 / 0) and ``length_diffs`` (policy minus reference length) are per pair;
    ``prompt_ids`` groups pairs by prompt (default: one prompt per pair). Extras: ``slope`` (per
    ``length_scale`` characters), ``length_scale``, ``method``. ``n`` is the number of prompts.
    """
    y = _as_float_array(outcomes, "outcomes")
    d = _as_float_array(length_diffs, "length_diffs")
    if y.size != d.size:
        raise ValueError(f"need one length difference per outcome, got {d.size} for {y.size}")
    if y.size == 0:
        return metric(None, n=0, n_pairs=0, slope=None, length_scale=None, method=LC_METHOD)
    groups, n_prompts = _prompt_index(prompt_ids, y.size)
    y, x, base = _lc_fit_inputs(y, d, groups, n_prompts)
    b0, b1 = _fit_batched(y, x, base[None, :])
    value = _sigmoid(float(b0[0]))
    ci: tuple[float | None, float | None] = (None, None)
    if n_prompts >= 2 and n_resamples > 0:
        counts = _bootstrap_counts(n_prompts, int(n_resamples), np.random.default_rng(seed))
        bb0, _ = _fit_batched(y, x, counts[:, groups] * base[None, :])
        lcs = _expit(bb0)
        alpha = (1.0 - confidence) / 2.0
        lo, hi = np.quantile(lcs, [alpha, 1.0 - alpha])
        ci = (float(lo), float(hi))
    return metric(value, ci, n=n_prompts, ci_method=CI_BOOTSTRAP_PERCENTILE if ci[0] is not None else None,
                  n_pairs=int(y.size), slope=float(b1[0]), length_scale=_rms(d), method=LC_METHOD)


def _sum_or_none(values: Iterable[Any]) -> tuple[float, int]:
    total, unknown = 0.0, 0
    for v in values:
        if v is None:
            unknown += 1
        else:
            total += float(v)
    return total, unknown


def win_rate_from_verdicts(policy_first: Sequence[Optional[str]], reference_first: Sequence[Optional[str]],
                           policy_lengths: Sequence[float], reference_lengths: Sequence[float],
                           prompt_ids: Sequence[Any] | None = None, *, unparseable: str = "tie",
                           seed: int = BOOTSTRAP_SEED, n_resamples: int = 2000,
                           confidence: float = 0.95) -> dict[str, dict]:
    """``{"win_rate": metric, "lc_win_rate": metric}`` from per-pair verdict winners.

    ``policy_first[i]`` is the winner position (``"A"``/``"B"``/``"tie"``; anything else, e.g.
    None or ``""``, is unparseable) when the policy was shown first, ``reference_first[i]`` when
    the reference was; lengths are per pair, in characters. See the module docstring.
    """
    n = len(policy_first)
    if not (len(reference_first) == len(policy_lengths) == len(reference_lengths) == n):
        raise ValueError("policy_first, reference_first, policy_lengths and reference_lengths differ in length")
    outcomes: list[Optional[float]] = []
    statuses: list[str] = []
    unparseable_verdicts = 0
    for a, b in zip(policy_first, reference_first):
        pa = side_preference(a if a in ("A", "B", "tie") else None, POLICY_FIRST)
        pb = side_preference(b if b in ("A", "B", "tie") else None, REFERENCE_FIRST)
        unparseable_verdicts += (pa is None) + (pb is None)
        outcome, status = pair_outcome(pa, pb, unparseable=unparseable)
        outcomes.append(outcome)
        statuses.append(status)
    return _report(outcomes, statuses, unparseable_verdicts, list(policy_lengths), list(reference_lengths),
                   list(prompt_ids) if prompt_ids is not None else list(range(n)), unparseable=unparseable,
                   seed=seed, n_resamples=n_resamples, confidence=confidence, extra={})


def _report(outcomes: list[Optional[float]], statuses: list[str], unparseable_verdicts: int,
            policy_lengths: list[float], reference_lengths: list[float], prompt_ids: list[Any], *,
            unparseable: str, seed: int, n_resamples: int, confidence: float, extra: dict) -> dict[str, dict]:
    from ..metrics.generation import per_prompt_means

    keep = [i for i, o in enumerate(outcomes) if o is not None]
    y = np.asarray([outcomes[i] for i in keep], dtype=float)
    ids = [prompt_ids[i] for i in keep]
    pl = _as_float_array(policy_lengths, "policy_lengths")
    rl = _as_float_array(reference_lengths, "reference_lengths")
    both_parsed = sum(1 for s in statuses if s != UNPARSEABLE)
    counts = {s: statuses.count(s) for s in STATUSES}
    wins = int(np.count_nonzero(y == 1.0))
    losses = int(np.count_nonzero(y == 0.0))
    ties = int(y.size - wins - losses)
    wilson = wilson_interval(float(y.sum()), int(y.size), confidence=confidence) if y.size else (None, None)
    common = dict(
        n_pairs=len(outcomes), wins=wins, ties=ties, losses=losses,
        inconsistent=counts[INCONSISTENT],
        inconsistency_rate=(counts[INCONSISTENT] / both_parsed) if both_parsed else None,
        unparseable=int(unparseable_verdicts), unparseable_pairs=counts[UNPARSEABLE],
        unparseable_policy=unparseable, excluded=len(outcomes) - len(keep),
        mean_length_policy=float(pl.mean()) if pl.size else None,
        mean_length_reference=float(rl.mean()) if rl.size else None,
        length_unit="characters",
        wilson_low=wilson[0], wilson_high=wilson[1],
    )
    if y.size:
        _, means = per_prompt_means(y, ids)
        wr = mean_metric(means, seed=seed, n_resamples=n_resamples, confidence=confidence, **common, **extra)
    else:
        wr = metric(None, n=0, **common, **extra)
    diffs = [pl[i] - rl[i] for i in keep]
    lc = length_controlled_win_rate(y, diffs, ids, seed=seed, n_resamples=n_resamples, confidence=confidence)
    return {"win_rate": wr, "lc_win_rate": lc}


def judgement_outcome(row: Mapping[str, Any], *, unparseable: str = "tie") -> tuple[Optional[float], str, int]:
    """``(outcome, status, unparseable verdicts)`` of a judgement row, recomputed from its verdicts."""
    pa = side_preference(row[POLICY_FIRST].get("winner"), POLICY_FIRST)
    pb = side_preference(row[REFERENCE_FIRST].get("winner"), REFERENCE_FIRST)
    outcome, status = pair_outcome(pa, pb, unparseable=unparseable)
    return outcome, status, int(pa is None) + int(pb is None)


def win_rate_report(rows: Sequence[Mapping[str, Any]], *, unparseable: str = "tie", seed: int = BOOTSTRAP_SEED,
                    n_resamples: int = 2000, confidence: float = 0.95) -> dict[str, dict]:
    """``{"win_rate": metric, "lc_win_rate": metric}`` of one domain from its judgement rows.

    Everything is recomputed from the rows' verdicts (what ``oodpl validate`` needs); the rows'
    stored ``outcome`` is not trusted. The win-rate dict also carries ``price_usd`` (sum over
    verdicts of known prices), ``price_unknown`` (verdicts without a price), ``judge_time_s``
    (summed call latencies) and ``cached`` (verdicts served from the cache when the rows were made).
    """
    outcomes, statuses, bad = [], [], 0
    verdicts = []
    for row in rows:
        o, s, u = judgement_outcome(row, unparseable=unparseable)
        outcomes.append(o)
        statuses.append(s)
        bad += u
        verdicts.extend((row[POLICY_FIRST], row[REFERENCE_FIRST]))
    price, unknown = _sum_or_none(v.get("price_usd") for v in verdicts)
    extra = {"price_usd": round(price, 8), "price_unknown": unknown,
             "judge_time_s": round(sum(float(v.get("latency_s") or 0.0) for v in verdicts), 4),
             "cached": sum(1 for v in verdicts if v.get("cached"))}
    return _report(outcomes, statuses, bad, [r["policy_length"] for r in rows],
                   [r["reference_length"] for r in rows], [r["prompt_id"] for r in rows],
                   unparseable=unparseable, seed=seed, n_resamples=n_resamples, confidence=confidence,
                   extra=extra)


def macro_win_rate(per_domain_rows: Mapping[str, Sequence[Mapping[str, Any]]], *, unparseable: str = "tie",
                   seed: int = BOOTSTRAP_SEED, n_resamples: int = 2000,
                   confidence: float = 0.95) -> dict[str, dict]:
    """Macro win rate and LC win rate over domains (each domain counts once).

    The win rate's CI is the stratified bootstrap over domains of per-prompt outcome means
    (:func:`ood_pl_bench.metrics.stats.macro_bootstrap_ci`, as for the other macro metrics); the LC
    win rate's CI resamples prompts within every domain and refits every domain on each resample.
    ``n`` is the number of domains.
    """
    from ..metrics.generation import per_prompt_means

    if not per_domain_rows:
        return {"win_rate": metric(None, n=0), "lc_win_rate": metric(None, n=0)}
    names = sorted(per_domain_rows)
    reports = {d: win_rate_report(per_domain_rows[d], unparseable=unparseable, seed=seed, n_resamples=0,
                                  confidence=confidence) for d in names}
    wr_values = {d: reports[d]["win_rate"]["value"] for d in names}
    lc_values = {d: reports[d]["lc_win_rate"]["value"] for d in names}
    if any(v is None for v in wr_values.values()):
        empty = sorted(d for d, v in wr_values.items() if v is None)
        return {"win_rate": metric(None, n=0, missing_domains=empty), "lc_win_rate": metric(None, n=0, missing_domains=empty)}
    samples, fits = {}, {}
    for d in names:
        kept = [(r, judgement_outcome(r, unparseable=unparseable)[0]) for r in per_domain_rows[d]]
        kept = [(r, o) for r, o in kept if o is not None]
        ids = [r["prompt_id"] for r, _ in kept]
        _, samples[d] = per_prompt_means([o for _, o in kept], ids)
        groups, n_prompts = _prompt_index(ids, len(ids))
        y = np.asarray([o for _, o in kept], dtype=float)
        diffs = np.asarray([float(r["policy_length"]) - float(r["reference_length"]) for r, _ in kept])
        fits[d] = (_lc_fit_inputs(y, diffs, groups, n_prompts), groups, n_prompts)
    wr_value = macro_average(wr_values)
    if n_resamples > 0:
        wr_ci = macro_bootstrap_ci(samples, seed=seed, n_resamples=n_resamples, confidence=confidence)
        wr = metric(wr_value, wr_ci, n=len(names), ci_method=CI_BOOTSTRAP_PERCENTILE)
    else:
        wr = metric(wr_value, n=len(names))
    lc_value = macro_average(lc_values)
    ci: tuple[float | None, float | None] = (None, None)
    if n_resamples > 0:
        rng = np.random.default_rng(seed)
        total = np.zeros(int(n_resamples))
        for d in names:
            (y, x, base), groups, n_prompts = fits[d]
            counts = _bootstrap_counts(n_prompts, int(n_resamples), rng)
            bb0, _ = _fit_batched(y, x, counts[:, groups] * base[None, :])
            total += _expit(bb0)
        alpha = (1.0 - confidence) / 2.0
        q_lo, q_hi = np.quantile(total / len(names), [alpha, 1.0 - alpha])
        ci = (float(q_lo), float(q_hi))
    lc = metric(lc_value, ci, n=len(names), ci_method=CI_BOOTSTRAP_PERCENTILE if ci[0] is not None else None,
                method=LC_METHOD)
    return {"win_rate": wr, "lc_win_rate": lc}


def pair_generations(policy_rows: Sequence[Mapping[str, Any]],
                     reference_rows: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """Pair each policy generation with the reference generation of the same prompt.

    Policy sample ``s`` meets reference sample ``s`` (``s mod k_ref`` when the reference has fewer).

    Raises:
        ValueError: a prompt of the policy rows has no reference generation.
    """
    by_prompt: dict[Any, list[Mapping[str, Any]]] = {}
    for r in reference_rows:
        by_prompt.setdefault(r["prompt_id"], []).append(r)
    for rows in by_prompt.values():
        rows.sort(key=lambda r: int(r.get("sample", 0)))
    pairs = []
    missing = []
    for row in policy_rows:
        refs = by_prompt.get(row["prompt_id"])
        if not refs:
            missing.append(row["prompt_id"])
            continue
        pairs.append((row, refs[int(row.get("sample", 0)) % len(refs)]))
    if missing:
        shown = ", ".join(map(str, sorted(set(missing))[:5]))
        raise ValueError(f"no reference generation for {len(set(missing))} prompt(s): {shown}")
    return pairs


def judge_domain(judge: Judge, prompts: Sequence[Mapping[str, Any]], policy_rows: Sequence[Mapping[str, Any]],
                 reference_rows: Sequence[Mapping[str, Any]], *, seed: int = 0, unparseable: str = "tie",
                 n_resamples: int = 2000) -> tuple[list[dict], dict[str, dict]]:
    """Judge one held-out domain: policy generations against reference generations, both orders.

    Args:
        judge: any :class:`~ood_pl_bench.judges.base.Judge`.
        prompts: the domain's evaluation prompts, rows with ``prompt_id`` and ``prompt``.
        policy_rows: the method's generation rows (``prompt_id``, ``sample``, ``text``; the
            runner's ``samples/held_out/<domain>.generations.jsonl``).
        reference_rows: the reference policy's generation rows, same shape
            (``<domain>.reference_generations.jsonl``).
        seed: sent with every judge request and part of every cache key.
        unparseable: ``"tie"`` or ``"exclude"`` (see the module docstring).
        n_resamples: bootstrap resamples of the CIs (0: no intervals).

    Returns:
        ``(rows, metrics)``: one judgement row per pair (ids, hashes, lengths, both verdicts,
        preferences, status and outcome; no prompt or response text), and
        ``{win_rate_key(id): ..., lc_win_rate_key(id): ...}`` for the judge's id.

    Raises:
        ValueError: a generation's prompt is missing from ``prompts`` or has no reference generation.
        JudgeError: the judge failed after its retries.
    """
    prompt_text = {p["prompt_id"]: p["prompt"] for p in prompts}
    unknown = sorted({str(r["prompt_id"]) for r in policy_rows if r["prompt_id"] not in prompt_text})
    if unknown:
        raise ValueError(f"generations refer to prompts not in the prompt list: {', '.join(unknown[:5])}")
    pairs = pair_generations(policy_rows, reference_rows)
    items: list[JudgeItem] = []
    for pol, ref in pairs:
        x = prompt_text[pol["prompt_id"]]
        tag = f"{pol['prompt_id']}#{pol.get('sample', 0)}"
        items.append(JudgeItem(x, pol["text"], ref["text"], POLICY_FIRST, seed, f"{tag}/{POLICY_FIRST}"))
        items.append(JudgeItem(x, ref["text"], pol["text"], REFERENCE_FIRST, seed, f"{tag}/{REFERENCE_FIRST}"))
    verdicts: list[Verdict] = judge.compare(items) if items else []
    if len(verdicts) != len(items):
        raise ValueError(f"judge {judge.judge_id} returned {len(verdicts)} verdicts for {len(items)} items")
    judge_id = judge.judge_id
    rows = []
    for i, (pol, ref) in enumerate(pairs):
        v_pf, v_rf = verdicts[2 * i], verdicts[2 * i + 1]
        pa, pb = side_preference(v_pf.winner, POLICY_FIRST), side_preference(v_rf.winner, REFERENCE_FIRST)
        outcome, status = pair_outcome(pa, pb, unparseable=unparseable)
        rows.append({
            "prompt_id": pol["prompt_id"], "sample": int(pol.get("sample", 0)),
            "reference_sample": int(ref.get("sample", 0)),
            "prompt_hash": sha256_text(prompt_text[pol["prompt_id"]])[:16],
            "policy_hash": sha256_text(pol["text"])[:16], "reference_hash": sha256_text(ref["text"])[:16],
            "policy_length": len(pol["text"]), "reference_length": len(ref["text"]),
            POLICY_FIRST: v_pf.to_row(), REFERENCE_FIRST: v_rf.to_row(),
            "preference_policy_first": pa, "preference_reference_first": pb,
            "status": status, "outcome": outcome, "judge": judge_id,
        })
    return rows, judgement_metrics(judge_id, rows, unparseable=unparseable, n_resamples=n_resamples)


def judgement_metrics(judge_id: str, rows: Sequence[Mapping[str, Any]], *, unparseable: str = "tie",
                      n_resamples: int = 2000) -> dict[str, dict]:
    """A domain's judge metrics exactly as :func:`judge_domain` stores them, from its judgement rows.

    ``{win_rate_key(judge_id): ..., lc_win_rate_key(judge_id): ...}``, each tagged with ``judge``.
    ``oodpl validate`` recomputes a stored column with this (the stored ``unparseable_policy`` gives
    ``unparseable``; the CIs use the fixed seed :data:`BOOTSTRAP_SEED` and 2000 resamples).
    """
    report = win_rate_report(rows, unparseable=unparseable, n_resamples=n_resamples)
    return {win_rate_key(judge_id): {**report["win_rate"], "judge": judge_id},
            lc_win_rate_key(judge_id): {**report["lc_win_rate"], "judge": judge_id}}


JUDGEMENTS_KIND_PREFIX = "judgements["


def judgements_sample_key(judge_id: str) -> str:
    """The key of a judgement file among a domain's ``samples``: ``judgements[<judge id>]``."""
    return f"{JUDGEMENTS_KIND_PREFIX}{judge_id}]"


def judge_ids_of(samples: Mapping[str, Any]) -> list[str]:
    """The judge ids whose judgement files a domain's ``samples`` (or loaded rows) list, sorted."""
    return sorted(k[len(JUDGEMENTS_KIND_PREFIX):-1] for k in samples
                  if k.startswith(JUDGEMENTS_KIND_PREFIX) and k.endswith("]"))


def aggregate_judgements(rows_by_domain: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]], *,
                         unparseable: str = "tie", n_resamples: int = 2000) -> dict[str, dict]:
    """Held-out macro ``win_rate[<id>]`` / ``lc_win_rate[<id>]`` for every judge found in the rows.

    ``rows_by_domain`` maps each held-out domain to its loaded per-sample rows by kind (what
    :func:`ood_pl_bench.runner.load_rows` returns: ``{"pairs": [...], "generations": [...],
    "judgements[<id>]": [...]}``). A judge that judged every domain gets :func:`macro_win_rate`; one
    missing from some domain gets not-applicable metrics that say which domains it lacks.
    """
    from ..metrics.schema import not_applicable

    domains = sorted(rows_by_domain)
    ids = sorted({j for d in domains for j in judge_ids_of(rows_by_domain[d])})
    out: dict[str, dict] = {}
    for jid in ids:
        key = judgements_sample_key(jid)
        missing = [d for d in domains if key not in rows_by_domain[d]]
        if missing:
            reason = f"judge {jid} did not judge {len(missing)} of {len(domains)} domains: {', '.join(missing)}"
            out[win_rate_key(jid)] = not_applicable(reason, judge=jid)
            out[lc_win_rate_key(jid)] = not_applicable(reason, judge=jid)
            continue
        macro = macro_win_rate({d: rows_by_domain[d][key] for d in domains}, unparseable=unparseable,
                               n_resamples=n_resamples)
        out[win_rate_key(jid)] = {**macro["win_rate"], "judge": jid}
        out[lc_win_rate_key(jid)] = {**macro["lc_win_rate"], "judge": jid}
    return out
