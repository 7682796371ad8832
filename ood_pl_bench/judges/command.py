"""``oodpl judge RUN_DIR --judge ID``: (re)judge the saved generations of a finished run.

For every held-out domain of the run it reads

* ``samples/held_out/<domain>.generations.jsonl`` (the method's generations: ``prompt_id``,
  ``sample``, ``prompt_hash``, ``text``, ...),
* ``samples/held_out/<domain>.reference_generations.jsonl`` (the reference policy's generations on
  the same prompts, same row shape),
* the prompt texts from the run's data edition (``edition.prompts(task, domain, "prompts")``),
  checked against the rows' ``prompt_hash``,

judges every pair in both orders (:func:`ood_pl_bench.judges.win_rate.judge_domain`) and writes

* ``samples/held_out/<domain>.judgements.<judge slug>.jsonl`` (one row per pair: ids, hashes,
  lengths, both verdicts, outcome),
* the metrics ``win_rate[<judge id>]`` and ``lc_win_rate[<judge id>]`` into the domain's payload
  (``domains/held_out/<domain>.json``) and into ``results.json`` (domains and held-out aggregates),
  with the judgement file listed in the domain's ``samples`` as ``judgements[<judge id>]``.

Each judge gets its own columns, so results never mix judges; rejudging with the same judge
replaces its columns. With an API judge a rerun is served from the verdict cache (no API call).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import typer

from ..errors import DataError, UsageError
from ..io import read_json, read_jsonl, sha256_file, sha256_text, write_json, write_jsonl
from . import resolve_judge
from .base import Judge
from .win_rate import aggregate_judgements, judge_domain, judgements_sample_key, lc_win_rate_key, win_rate_key

GENERATIONS = "samples/held_out/{domain}.generations.jsonl"
REFERENCE_GENERATIONS = "samples/held_out/{domain}.reference_generations.jsonl"
JUDGEMENTS = "samples/held_out/{domain}.judgements.{slug}.jsonl"


def judge_slug(judge_id: str) -> str:
    """A file-name-safe, collision-free form of a judge id (readable part + 8 hex of its hash)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", judge_id).strip("_")[:80]
    return f"{readable}-{sha256_text(judge_id)[:8]}"


def write_judgements(run_dir: Path, domain: str, judge_id: str, rows: Sequence[Mapping[str, Any]]) -> dict:
    """Write a domain's judgement rows atomically; return its ``samples`` entry (path, sha256, rows)."""
    rel = JUDGEMENTS.format(domain=domain, slug=judge_slug(judge_id))
    write_jsonl(run_dir / rel, rows)
    return {"path": rel, "sha256": sha256_file(run_dir / rel), "rows": len(rows)}


def record_domain_judgement(run_dir: Path, domain: str, judge: Judge, prompts: Sequence[Mapping[str, Any]],
                            policy_rows: Sequence[Mapping[str, Any]], reference_rows: Sequence[Mapping[str, Any]],
                            *, seed: int = 0, unparseable: str = "tie",
                            n_resamples: int = 2000) -> tuple[dict[str, dict], dict[str, dict], list[dict]]:
    """Judge one held-out domain and write its judgement file: what the runner calls per domain.

    Returns ``(metrics, samples, rows)``: the ``win_rate[<id>]`` / ``lc_win_rate[<id>]`` metrics to
    merge into the domain's metrics, ``{"judgements[<id>]": {path, sha256, rows}}`` to merge into
    the domain's ``samples``, and the judgement rows.

    Raises:
        ValueError: generations refer to unknown prompts or lack a reference generation.
        JudgeError: the judge failed after its retries (finished verdicts stay cached).
    """
    rows, metrics = judge_domain(judge, prompts, policy_rows, reference_rows, seed=seed, unparseable=unparseable,
                                 n_resamples=n_resamples)
    sample = write_judgements(run_dir, domain, judge.judge_id, rows)
    return metrics, {judgements_sample_key(judge.judge_id): sample}, rows


def _read_rows(run_dir: Path, pattern: str, domain: str, what: str, hint: str) -> list[dict]:
    path = run_dir / pattern.format(domain=domain)
    if not path.is_file():
        raise DataError(f"{run_dir}: no {what} for held-out domain {domain!r} ({path.name} is missing). {hint}")
    return read_jsonl(path)


def _edition_prompts(results: dict, domains: Sequence[str], data_dir: str | None) -> dict[str, list[dict]]:
    from ..data.edition import load_edition

    edition = load_edition(results["edition"], data_dir=data_dir)
    expected = results.get("data_hash")
    actual = getattr(edition, "data_hash", None)
    if expected and actual and expected != actual:
        raise DataError(f"the run was made on edition data {expected} but the built edition is {actual}; "
                        "rebuild the run's edition (oodpl data build) to judge it")
    return {d: edition.prompts(results["task"], d, "prompts") for d in domains}


def _gold_loader(results: dict, data_dir: str | None) -> Callable[[], Any]:
    def load() -> Any:
        """Load (or train once and cache) the run's gold reward model."""
        from ..data.edition import load_edition
        from ..models.gold import gold_reward_model
        from ..profiles import get_profile
        from ..tasks import get_task

        profile = get_profile(results["profile"])
        task = profile.apply(get_task(results["task"], results["edition"]))
        edition = load_edition(results["edition"], data_dir=data_dir)
        return gold_reward_model(task, edition, profile)

    return load


def _check_prompts(domain: str, rows: Sequence[dict], prompts: Sequence[Mapping[str, Any]], what: str) -> None:
    text = {p["prompt_id"]: p["prompt"] for p in prompts}
    for row in rows:
        pid = row["prompt_id"]
        if pid not in text:
            raise DataError(f"{what} of {domain!r} refer to prompt {pid!r}, which the edition does not hold")
        if row.get("prompt_hash") and row["prompt_hash"] != sha256_text(text[pid])[:16]:
            raise DataError(f"prompt {pid!r} of {domain!r} differs from the one the run generated on "
                            "(the edition changed since the run)")


def judge_run(run_dir: Path, judge_id: str, concurrency: int = 8, *, data_dir: str | None = None,
              judge_options: Optional[dict[str, Any]] = None, prompts: Optional[Mapping[str, list[dict]]] = None,
              gold: Any = None, judge: Optional[Judge] = None, unparseable: str = "tie",
              n_resamples: int = 2000, on_domain: Optional[Callable[[str, dict], None]] = None) -> dict:
    """(Re)judge a finished run's held-out generations and add the judge's columns to its results.

    Args:
        run_dir: a finished run directory (``results.json`` present).
        judge_id: ``proxy``, ``openai:MODEL``, a judge config name, or ``PLUGIN:SPEC``.
        concurrency: requests in flight at most (API judges).
        data_dir: raw-data folder for loading the edition's prompts (else ``OODPL_DATA`` ...).
        judge_options: more options for the judge (``timeout``, ``max_attempts``, ``backoff_base``,
            ``cache``, ...).
        prompts: domain -> prompt rows (``prompt_id``, ``prompt``) instead of loading the edition.
        gold: the gold reward model (or a loader) for the proxy judge; default: load the run's.
        judge: an already built judge to use instead of resolving ``judge_id``.
        unparseable: ``"tie"`` or ``"exclude"`` (see :mod:`ood_pl_bench.judges.win_rate`).
        n_resamples: bootstrap resamples of the CIs.
        on_domain: called as ``on_domain(domain, metrics)`` after each domain is written.

    Returns:
        ``{"judge": id, "info": judge provenance, "domains": {domain: metrics}, "aggregate":
        {metric name: metric}, "usage": calls/price/time spent now, "results": path}``.

    Raises:
        UsageError: not a finished run, or an unknown judge.
        DataError: missing generation files or prompts that do not match the run.
        JudgeError: the judge failed after its retries (finished verdicts stay cached).
    """
    from ..results import RunResults

    run_dir = Path(run_dir)
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise UsageError(f"{run_dir} is not a finished run: it has no results.json (run `oodpl run` first)")
    results = read_json(results_path)
    held = [d for d in results.get("domains", []) if d.get("role") == "held_out"]
    if not held:
        raise DataError(f"{run_dir}: results.json lists no held-out domain to judge")
    names = [d["domain"] for d in held]
    hint = "Rerun the run with a version of oodpl that saves reference generations."
    generations = {d: _read_rows(run_dir, GENERATIONS, d, "generations", hint) for d in names}
    references = {d: _read_rows(run_dir, REFERENCE_GENERATIONS, d, "reference generations", hint) for d in names}
    if prompts is None:
        prompts = _edition_prompts(results, names, data_dir)
    for d in names:
        if d not in prompts:
            raise DataError(f"no prompts given for held-out domain {d!r}")
        _check_prompts(d, generations[d], prompts[d], "generations")
        _check_prompts(d, references[d], prompts[d], "reference generations")
    owns_judge = judge is None
    if judge is None:
        judge = resolve_judge(judge_id, gold=gold if gold is not None else _gold_loader(results, data_dir),
                              concurrency=concurrency, **(judge_options or {}))
    try:
        jid = judge.judge_id
        per_domain_rows: dict[str, list[dict]] = {}
        per_domain_metrics: dict[str, dict] = {}
        for entry in held:
            d = entry["domain"]
            try:
                metrics, samples, rows = record_domain_judgement(
                    run_dir, d, judge, prompts[d], generations[d], references[d], seed=int(results.get("seed", 0)),
                    unparseable=unparseable, n_resamples=n_resamples)
            except ValueError as exc:
                raise DataError(f"{run_dir}, domain {d!r}: {exc}") from None
            entry.setdefault("metrics", {}).update(metrics)
            entry.setdefault("samples", {}).update(samples)
            payload_path = run_dir / "domains" / "held_out" / f"{d}.json"
            if payload_path.is_file():
                payload = read_json(payload_path)
                payload.setdefault("metrics", {}).update(metrics)
                payload.setdefault("samples", {}).update(samples)
                write_json(payload_path, payload)
            per_domain_rows[d] = rows
            per_domain_metrics[d] = metrics
            if on_domain is not None:
                on_domain(d, metrics)
        aggregate = aggregate_judgements({d: {judgements_sample_key(jid): rows} for d, rows in per_domain_rows.items()},
                                         unparseable=unparseable, n_resamples=n_resamples)
        results.setdefault("aggregates", {}).setdefault("held_out", {}).update(aggregate)
        if not results.get("judge"):
            results["judge"] = jid
        phases = results.setdefault("phase_times_s", {})
        phases["judging"] = round(float(phases.get("judging", 0.0)) + judge.usage.wall_s, 3)
        RunResults.model_validate(results)
        write_json(results_path, results)
        return {"judge": jid, "info": judge.info(), "domains": per_domain_metrics, "aggregate": aggregate,
                "usage": judge.usage.as_dict(), "results": str(results_path)}
    finally:
        if owns_judge:
            judge.close()


def _fmt(m: Mapping[str, Any] | None) -> str:
    if not m or m.get("value") is None:
        return "-"
    lo, hi = m.get("ci_low"), m.get("ci_high")
    ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
    return f"{m['value']:.3f}{ci}"


def judge_command(
    run_dir: Path = typer.Argument(..., help="A finished run directory (it holds results.json)."),
    judge: str = typer.Option(..., "--judge", help="proxy, openai:MODEL, or a judge config name (oodpl ls judges)."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="API requests in flight at most."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds per API attempt."),
    max_attempts: int = typer.Option(6, "--max-attempts", min=1, help="Attempts per verdict (429, 5xx, timeouts, dropped connections)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Verdict cache file (default <cache>/judges/verdicts.sqlite)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Raw data folder (else OODPL_DATA, else ../shared/data)."),
) -> None:
    """(Re)judge the saved generations of a finished run; adds the judge's win-rate columns to results.json."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    options: dict[str, Any] = {"timeout": timeout, "max_attempts": max_attempts}
    if cache is not None:
        options["cache"] = cache
    summary = judge_run(run_dir, judge, concurrency, data_dir=str(data_dir) if data_dir else None,
                        judge_options=options,
                        on_domain=lambda d, m: err.print(f"judged {d}", markup=False))
    jid = summary["judge"]
    table = Table(title=f"win rate against the reference policy, judge {jid}")
    for col in ("domain", "win rate", "LC win rate", "W/T/L", "inconsistent", "unparseable"):
        table.add_column(col, justify="left" if col == "domain" else "right")
    for d, metrics in summary["domains"].items():
        wr, lc = metrics[win_rate_key(jid)], metrics[lc_win_rate_key(jid)]
        table.add_row(d, _fmt(wr), _fmt(lc), f"{wr['wins']}/{wr['ties']}/{wr['losses']}",
                      str(wr["inconsistent"]), str(wr["unparseable"]))
    agg = summary["aggregate"]
    table.add_row("[bold]macro held-out[/bold]", _fmt(agg[win_rate_key(jid)]), _fmt(agg[lc_win_rate_key(jid)]),
                  "", "", "")
    console.print(table)
    u = summary["usage"]
    price = f"${u['price_usd']:.4f}" + (f" (+{u['price_unknown']} calls of unknown price)" if u["price_unknown"] else "")
    console.print(f"{u['verdicts']} verdicts: {u['calls']} API calls ({u['retries']} retries), {u['cached']} cached, "
                  f"{u['unparseable']} unparseable; spent {price}, {u['latency_s']:.1f} s of calls")
    console.print(f"results: {summary['results']}")
