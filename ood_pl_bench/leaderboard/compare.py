"""``oodpl compare RUN_A RUN_B``: per-domain and macro differences of two runs, with paired statistics.

Both arguments are run directories or submission folders of the same task and data edition, scored on
the same items (same profile). For every metric both runs report on the held-out domains
(``pl_accuracy``, ``pl_likelihood_accuracy``, ``rm_accuracy``, ``gold_reward``, ``kl`` and
``win_rate[<judge>]`` for judges both have), the comparison gives, with differences always A − B:

* per domain: both scores, the difference with a paired-bootstrap 95% CI and p-value over the
  domain's units (:func:`ood_pl_bench.metrics.stats.paired_bootstrap`; pairs for PL metrics, prompts
  for generation metrics), and for outcome metrics (``pl_accuracy``, ``pl_likelihood_accuracy``,
  ``rm_accuracy``) the exact McNemar test on the per-pair outcomes
  (:func:`ood_pl_bench.metrics.stats.mcnemar`; ``b01`` pairs where B's outcome is higher, ``b10``
  where A's is);
* Holm-corrected p-values across the domains (:func:`ood_pl_bench.metrics.stats.holm`), for the
  McNemar and the bootstrap p-values separately;
* macro: the difference of the macro averages with the weighted paired bootstrap of
  :func:`.paired.paired_macro`.

A run compared with itself gives differences of 0, CIs [0, 0] and p-values of 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import SubmissionError, UsageError
from . import paired
from .store import LoadedRun, load_run

FORMATS = ("rich", "md", "json")


def _identity(run: LoadedRun) -> dict:
    r = run.results
    return {"name": run.label, "path": str(run.root), "method": r["method"], "seed": r["seed"],
            "profile": r["profile"], "judge": r.get("judge")}


def comparable_metrics(run_a: LoadedRun, run_b: LoadedRun) -> list[str]:
    """Metrics with per-sample values that both runs report on the held-out domains."""
    names = [m for m in paired.UNIT_METRICS
             if paired.macro_value(run_a, m) is not None and paired.macro_value(run_b, m) is not None]
    judges = sorted(k for k in run_a.results["aggregates"]["held_out"] if paired.judge_of(k)
                    and paired.macro_value(run_a, k) is not None and paired.macro_value(run_b, k) is not None)
    return names + judges


def compare(run_a: str | Path | LoadedRun, run_b: str | Path | LoadedRun, *, metrics: list[str] | None = None,
            n_resamples: int = paired.N_RESAMPLES, seed: int = paired.SEED) -> dict:
    """Compare two runs domain by domain and on the macro average (see the module docstring).

    Args:
        run_a, run_b: run directories, submission folders, or already loaded runs.
        metrics: restrict to these metrics (default: every metric both runs report).
        n_resamples, seed: bootstrap settings (fixed seed: the result is reproducible).

    Returns:
        ``{"a": identity, "b": identity, "task", "edition", "data_hash", "metrics": [per-metric dict]}``
        where each per-metric dict has ``metric``, ``unit``, ``mcnemar`` (bool), ``domains`` (list of
        ``{domain, fold, a, b, diff, ci_low, ci_high, p_bootstrap, p_bootstrap_holm, n, mcnemar,
        p_mcnemar_holm}``) and ``macro`` (``{a, b, diff, ci_low, ci_high, p_value, n, n_domains}``).

    Raises:
        SubmissionError: a path holds no valid results, sample files are damaged, or the runs are not
            comparable (other task, edition, data or items).
    """
    from ..metrics.stats import holm, mcnemar

    a = run_a if isinstance(run_a, LoadedRun) else load_run(run_a)
    b = run_b if isinstance(run_b, LoadedRun) else load_run(run_b)
    ra, rb = a.results, b.results
    for key in ("task", "edition", "data_hash"):
        if ra[key] != rb[key]:
            raise SubmissionError(f"runs are not comparable: {key} is {ra[key]!r} in {a.root} and {rb[key]!r} in {b.root}")
    available = comparable_metrics(a, b)
    if metrics:
        unknown = [m for m in metrics if m not in available]
        if unknown:
            raise UsageError(f"cannot compare {', '.join(unknown)}: both runs must report it; "
                             f"comparable here: {', '.join(available) or 'none'}")
        chosen = list(metrics)
    else:
        chosen = available
    domains = [d for d in a.domains("held_out") if d in b.domains("held_out")]
    missing = sorted(set(a.domains("held_out")) ^ set(b.domains("held_out")))
    if missing:
        raise SubmissionError(f"runs are not comparable: held-out domains {', '.join(missing)} are in only one of them")
    out_metrics = []
    for metric in chosen:
        rows = []
        for d in domains:
            _, va, vb = paired.aligned(a, b, d, metric)
            test = paired.paired_domain(va, vb, n_resamples=n_resamples, seed=seed)
            mc = mcnemar(va, vb) if metric in paired.OUTCOME_METRICS else None
            rows.append({"domain": d, "fold": a.domains("held_out")[d]["fold"],
                         "a": float(va.mean()) if va.size else None, "b": float(vb.mean()) if vb.size else None,
                         "diff": test["diff"], "ci_low": test["ci_low"], "ci_high": test["ci_high"],
                         "p_bootstrap": test["p_value"], "n": test["n"], "mcnemar": mc})
        for row, adj in zip(rows, holm([r["p_bootstrap"] for r in rows])):
            row["p_bootstrap_holm"] = adj
        mc_adj = holm([r["mcnemar"]["p_value"] if r["mcnemar"] else None for r in rows])
        for row, adj in zip(rows, mc_adj):
            row["p_mcnemar_holm"] = adj
        macro = paired.paired_macro(a, b, metric, domains, n_resamples=n_resamples, seed=seed)
        macro["a"] = paired.macro_value(a, metric)
        macro["b"] = paired.macro_value(b, metric)
        out_metrics.append({"metric": metric, "unit": paired.unit_name(metric),
                            "mcnemar": metric in paired.OUTCOME_METRICS, "domains": rows, "macro": macro})
    return {"a": _identity(a), "b": _identity(b), "task": ra["task"], "edition": ra["edition"],
            "data_hash": ra["data_hash"], "metrics": out_metrics}


def _f(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _ci(lo: Any, hi: Any) -> str:
    return "" if lo is None or hi is None else f" [{lo:+.3f}, {hi:+.3f}]"


def _p(x: Any) -> str:
    return "-" if x is None else f"{x:.3g}"


def comparison_rows(m: dict) -> tuple[list[str], list[list[str]]]:
    """Header and text rows of one metric's comparison (domains, then the macro row)."""
    header = ["domain", "A", "B", "A - B [95% CI]", "p bootstrap", "(Holm)"]
    if m["mcnemar"]:
        header += ["McNemar b10/b01", "p McNemar", "(Holm)"]
    rows = []
    for r in m["domains"]:
        cells = [r["domain"], _f(r["a"]), _f(r["b"]), f"{_f(r['diff'], '+.3f')}{_ci(r['ci_low'], r['ci_high'])}",
                 _p(r["p_bootstrap"]), _p(r["p_bootstrap_holm"])]
        if m["mcnemar"]:
            mc = r["mcnemar"] or {}
            cells += [f"{mc.get('b10', '-')}/{mc.get('b01', '-')}", _p(mc.get("p_value")), _p(r["p_mcnemar_holm"])]
        rows.append(cells)
    mac = m["macro"]
    cells = ["macro held-out", _f(mac["a"]), _f(mac["b"]),
             f"{_f(mac['diff'], '+.3f')}{_ci(mac['ci_low'], mac['ci_high'])}", _p(mac["p_value"]), ""]
    if m["mcnemar"]:
        cells += ["", "", ""]
    rows.append(cells)
    return header, rows


def to_markdown(result: dict) -> str:
    """The comparison as Markdown: one table per metric."""
    a, b = result["a"], result["b"]
    out = [f"A = {a['name']} ({a['method']}, seed {a['seed']}), B = {b['name']} ({b['method']}, seed {b['seed']}); "
           f"{result['task']} ({result['edition']}). Differences are A - B.", ""]
    for m in result["metrics"]:
        header, rows = comparison_rows(m)
        out += [f"### {m['metric']} (paired over {m['unit']}s)", "", "| " + " | ".join(header) + " |",
                "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        out.append("")
    return "\n".join(out) + "\n"


def rich_tables(result: dict) -> list[Any]:
    """The comparison as rich Tables, one per metric."""
    from rich.table import Table

    a, b = result["a"], result["b"]
    tables = []
    for m in result["metrics"]:
        header, rows = comparison_rows(m)
        t = Table(title=f"{m['metric']}: A = {a['name']} vs B = {b['name']} (paired over {m['unit']}s)")
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
        for row in rows:
            t.add_row(*row)
        tables.append(t)
    return tables


def to_json(result: dict) -> str:
    """The comparison as indented JSON."""
    return json.dumps(result, indent=2, sort_keys=True) + "\n"
