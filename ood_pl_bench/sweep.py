"""``oodpl sweep``: a grid of runs, sharded across machines, resumable, merged by ``--collect``.

A sweep is the product ``tasks × methods × grid × seeds`` (``--grid key=v1,v2`` adds one option
axis; several ``--grid`` flags multiply), with ``--set`` options shared by every run. Expansion
order is fixed (tasks, then methods, then grid values in the order given, then seeds), so every
machine that expands the same command sees the same numbered list of runs.

Every run gets a deterministic directory ``<out>/<run_id>``::

    <task>-<method>[-<axis>=<value>...]-seed<N>-<hash>

where ``hash`` is 8 hex digits of the run's full configuration (profile, edition, options after
type coercion, domains, judge ...): the same run always lands in the same folder (``beta=1`` and
``beta=1.0`` too), and a changed ``--set`` never collides with an older run. The folder is an
ordinary ``oodpl run`` directory plus ``sweep_run.json`` (what the sweep asked of it).

* A run whose ``results.json`` exists is *finished* and skipped; one with a ``manifest.json`` but no
  results is *unfinished* and resumed (the runner skips its finished units); the rest are *pending*.
* ``--shard i/n`` runs only the runs with ``index % n == i - 1`` (**shards are numbered from 1**,
  like ``--shard 1/4`` in pytest-shard style tools: ``1/n`` .. ``n/n``). Round-robin over the fixed
  expansion order gives every shard the same number of runs (±1) and the same mix of methods.
  Run each shard once at a time; shards never share a run folder, so their ``--out`` folders can be
  one shared file system or be copied together afterwards.
* ``--collect`` scans ``<out>/*/sweep_run.json`` and merges every finished run into ``sweep.json``
  (runs with their per-domain and aggregate metrics, plus unfinished and pending ones) and
  ``sweep.csv`` (one row per run × domain, and the macro rows); ``--plot AXIS`` draws the chosen
  metrics against a grid axis (mean over seeds, error bars: std over seeds, or the 95% CI of a
  single seed) into ``sweep-<AXIS>.png``.

A run that crashes (a bug, out of memory) is recorded in ``sweep_error.txt`` in its folder and the
sweep goes on; the sweep then exits with an error naming the failed runs. Mistakes the user can fix
(unknown method, bad option value, missing data) stop the sweep before or at the first run.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import math
import re
import statistics
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import typer

from .errors import OodplError, UsageError
from .io import read_json, write_json, write_text

SWEEP_SCHEMA = "oodpl-sweep/1"
RUN_FILE = "sweep_run.json"
ERROR_FILE = "sweep_error.txt"
PLAN_FILE = "plan.json"
DEFAULT_PLOT_METRICS = ("pl_accuracy", "gold_reward")


class SweepFailed(OodplError):
    """Some runs of a sweep crashed (exit code 1); the others finished."""

    exit_code = 1


# --- parsing -------------------------------------------------------------------------------------


def parse_names(text: str | None, what: str) -> list[str]:
    """A comma-separated list of names (duplicates dropped, order kept); UsageError when empty."""
    names = list(dict.fromkeys(x.strip() for x in (text or "").split(",") if x.strip()))
    if not names:
        raise UsageError(f"oodpl sweep needs {what} (comma-separated)")
    return names


def parse_seeds(text: str | None) -> list[int]:
    """Seeds from ``"0,1,2"`` or ranges ``"0-4"`` (inclusive), in the order given, without repeats."""
    seeds: list[int] = []
    for part in parse_names(text, "--seeds"):
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        try:
            values = list(range(int(m.group(1)), int(m.group(2)) + 1)) if m else [int(part)]
        except ValueError:
            raise UsageError(f"--seeds expects integers or ranges like 0-4, got {part!r}") from None
        if m and not values:
            raise UsageError(f"--seeds range {part!r} is empty")
        seeds.extend(v for v in values if v not in seeds)
    return seeds


def parse_sets(items: Iterable[str], flag: str = "--set") -> dict[str, str]:
    """``key=value`` items into a dict (the value kept as text for the solver's typed config)."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"{flag} expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def parse_grid(items: Iterable[str]) -> dict[str, list[str]]:
    """``--grid key=v1,v2,...`` items into ``{key: [v1, v2, ...]}`` (one axis per flag)."""
    grid: dict[str, list[str]] = {}
    for key, value in parse_sets(items, "--grid").items():
        values = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
        if not values:
            raise UsageError(f"--grid {key}= needs at least one value (comma-separated)")
        grid[key] = values
    return grid


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` into ``(i, n)`` with 1 <= i <= n (shards are numbered from 1); None for no shard."""
    if text is None or not str(text).strip():
        return None
    m = re.fullmatch(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*", str(text))
    if not m:
        raise UsageError(f"--shard expects i/n (e.g. 1/4), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1:
        raise UsageError(f"--shard {text}: the number of shards n must be >= 1")
    if not 1 <= i <= n:
        hint = f"; shards are numbered from 1, so use 1/{n} .. {n}/{n}" if i == 0 else ""
        raise UsageError(f"--shard {text}: i must be between 1 and {n}{hint}")
    return i, n


# --- the grid --------------------------------------------------------------------------------------


@dataclass
class SweepSpec:
    """What ``oodpl sweep`` was asked to run (before expansion)."""

    methods: list[str] = field(metadata={"help": "registered solver names"})
    tasks: list[str] = field(metadata={"help": "task names"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "run seeds"})
    sets: dict[str, str] = field(default_factory=dict, metadata={"help": "options shared by every run"})
    grid: dict[str, list[str]] = field(default_factory=dict, metadata={"help": "option axes: key -> values"})
    profile: str = field(default="default", metadata={"help": "run profile"})
    edition: str = field(default="se-amazon", metadata={"help": "data edition"})
    domains: list[str] | None = field(default=None, metadata={"help": "held-out domains (reduced runs)"})
    in_distribution: bool = field(default=True, metadata={"help": "also score source test pairs"})
    judge: str = field(default="proxy", metadata={"help": "win-rate judge"})


@dataclass
class SweepRun:
    """One run of the grid: its place in the expansion, its grid values and its RunConfig."""

    index: int
    run_id: str
    task: str
    method: str
    seed: int
    grid: dict[str, Any]
    config: Any  # runner.RunConfig

    def directory(self, out: Path) -> Path:
        """The run's folder under the sweep folder ``out``."""
        return Path(out) / self.run_id

    def describe(self) -> dict:
        """The ``sweep_run.json`` payload: identity, grid values and the full run configuration."""
        return {"schema": SWEEP_SCHEMA, "index": self.index, "run_id": self.run_id, "task": self.task,
                "method": self.method, "seed": self.seed, "grid": dict(self.grid),
                "config_key": self.config.key(), "run": dataclasses.asdict(self.config)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        text = "+".join(_fmt_value(v) for v in value)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+\-]", "_", text)


def _domains_per_task(spec: SweepSpec) -> dict[str, tuple[str, ...] | None]:
    from .tasks import get_task

    if not spec.domains:
        return {t: None for t in spec.tasks}
    held = {t: get_task(t, spec.edition).held_out_domains for t in spec.tasks}
    unknown = [d for d in spec.domains if not any(d in h for h in held.values())]
    if unknown:
        listing = "; ".join(f"{t}: {', '.join(h)}" for t, h in held.items())
        raise UsageError(f"Not held-out domains of the sweep's tasks: {', '.join(unknown)}. Held out: {listing}")
    out: dict[str, tuple[str, ...] | None] = {}
    for t, h in held.items():
        mine = tuple(d for d in spec.domains if d in h)
        if not mine:
            raise UsageError(f"--domains names no held-out domain of task {t!r} (held out: {', '.join(h)})")
        out[t] = mine
    return out


def expand(spec: SweepSpec) -> list[SweepRun]:
    """Every run of the grid, in the fixed order (tasks, methods, grid values, seeds).

    Validates before anything runs: method, task, profile and edition names, every option value
    (coerced through the solver's typed config, so ``beta=1`` and ``beta=1.0`` are one run),
    ``--domains``, and that no key is both in ``--set`` and ``--grid``.
    """
    from .profiles import get_profile
    from .runner import RunConfig, resolve_solver
    from .tasks import get_task

    get_profile(spec.profile)
    for task in spec.tasks:
        get_task(task, spec.edition)
    both = sorted(set(spec.sets) & set(spec.grid))
    if both:
        raise UsageError(f"option {both[0]!r} is given both with --set and --grid; keep one")
    if not spec.seeds:
        raise UsageError("oodpl sweep needs at least one seed")
    domains = _domains_per_task(spec)
    axes = list(spec.grid)
    combos = list(itertools.product(*(spec.grid[a] for a in axes))) if axes else [()]
    runs: list[SweepRun] = []
    for task in spec.tasks:
        for method in spec.methods:
            for combo in combos:
                raw = dict(spec.sets)
                raw.update(zip(axes, combo))
                try:
                    _, method_config = resolve_solver(method, raw)
                except UsageError as exc:
                    raise UsageError(f"method {method!r}: {exc.message}") from None
                # Canonical (typed) values: the run's identity does not depend on how a value was spelt.
                options = {k: _jsonable(getattr(method_config, k)) for k in raw} if method_config is not None else {}
                grid_values = {a: options[a] for a in axes}
                for seed in spec.seeds:
                    cfg = RunConfig(method=method, task=task, edition=spec.edition, profile=spec.profile,
                                    seed=seed, method_options=dict(options), domains=domains[task],
                                    in_distribution=spec.in_distribution, judge=spec.judge)
                    tag = "".join(f"-{a}={_fmt_value(v)}" for a, v in grid_values.items())
                    run_id = f"{task}-{method}{tag}-seed{seed}-{cfg.key()[:8]}"
                    runs.append(SweepRun(index=len(runs), run_id=run_id, task=task, method=method,
                                         seed=seed, grid=grid_values, config=cfg))
    return runs


def select_shard(runs: list[SweepRun], shard: tuple[int, int] | None) -> list[SweepRun]:
    """The runs of shard ``(i, n)`` (1-based): those with ``index % n == i - 1``; all when None."""
    if shard is None:
        return list(runs)
    i, n = shard
    return [r for r in runs if r.index % n == i - 1]


def run_state(run_dir: Path) -> str:
    """``finished`` (results.json), ``unfinished`` (started: a manifest), or ``pending``."""
    run_dir = Path(run_dir)
    if (run_dir / "results.json").is_file():
        return "finished"
    if (run_dir / "manifest.json").is_file():
        return "unfinished"
    return "pending"


# --- running ---------------------------------------------------------------------------------------


@dataclass
class SweepReport:
    """What one ``oodpl sweep`` invocation did, by run id."""

    planned: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def summary_line(self) -> str:
        """One line: how many runs were run, skipped and failed."""
        return (f"{len(self.planned)} runs in this shard: {len(self.finished)} run now, "
                f"{len(self.skipped)} already finished, {len(self.failed)} failed")


def write_plan(out: Path, spec: SweepSpec, runs: list[SweepRun]) -> None:
    """Write ``<out>/plan.json``: the whole grid (every shard's runs), identical on every machine."""
    write_json(Path(out) / PLAN_FILE, {
        "schema": SWEEP_SCHEMA, "spec": dataclasses.asdict(spec), "axes": list(spec.grid),
        "runs": [{"index": r.index, "run_id": r.run_id, "task": r.task, "method": r.method,
                  "seed": r.seed, "grid": r.grid} for r in runs]})


def run_sweep(spec: SweepSpec, out: Path, *, shard: tuple[int, int] | None = None,
              data_dir: str | None = None, dry_run: bool = False, fail_fast: bool = False,
              log: Callable[[str], None] = print, console: Any = None,
              progress_factory: Callable[[], Any] | None = None,
              run_fn: Callable[..., dict] | None = None) -> SweepReport:
    """Run this shard's runs of ``spec`` into ``out``: skip finished ones, resume unfinished ones.

    ``run_fn`` defaults to :func:`ood_pl_bench.runner.run` (tests may pass a stand-in). A run that
    raises an :class:`OodplError` stops the sweep (a user mistake affects every run); any other
    exception is written to the run's ``sweep_error.txt`` and the sweep goes on (unless
    ``fail_fast``), ending with :class:`SweepFailed`. KeyboardInterrupt stops at once: rerun the
    same command to resume.
    """
    from .runner import run as runner_run

    run_fn = run_fn or runner_run
    runs = expand(spec)
    mine = select_shard(runs, shard)
    out = Path(out)
    report = SweepReport(planned=[r.run_id for r in mine])
    shard_text = f"shard {shard[0]}/{shard[1]}: " if shard else ""
    log(f"{shard_text}{len(mine)} of {len(runs)} runs -> {out}")
    if dry_run:
        for r in mine:
            log(f"  [{r.index + 1}/{len(runs)}] {run_state(r.directory(out)):10s} {r.run_id}")
        return report
    out.mkdir(parents=True, exist_ok=True)
    write_plan(out, spec, runs)
    for r in mine:
        run_dir = r.directory(out)
        state = run_state(run_dir)
        head = f"[{r.index + 1}/{len(runs)}] {r.run_id}"
        if state == "finished":
            report.skipped.append(r.run_id)
            log(f"{head}: finished, skipped")
            continue
        log(f"{head}: {'resuming' if state == 'unfinished' else 'running'}")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / RUN_FILE, r.describe())
        (run_dir / ERROR_FILE).unlink(missing_ok=True)
        try:
            run_fn(r.config, out=run_dir, data_dir=data_dir, console=console,
                   progress_factory=progress_factory)
        except (OodplError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - one crashed run must not lose the others
            write_text(run_dir / ERROR_FILE, traceback.format_exc())
            report.failed[r.run_id] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            log(f"{head}: FAILED ({report.failed[r.run_id]}); traceback in {run_dir / ERROR_FILE}")
            if fail_fast:
                break
            continue
        report.finished.append(r.run_id)
    log(report.summary_line())
    if report.failed:
        raise SweepFailed(f"{len(report.failed)} run(s) failed: {', '.join(report.failed)} "
                          f"(tracebacks in their {ERROR_FILE}); rerun the same command to retry them")
    return report


# --- collecting ------------------------------------------------------------------------------------


def _metric_entry(m: dict | None) -> dict | None:
    if not isinstance(m, dict) or not m.get("applicable", True) or m.get("value") is None:
        return None
    return {"value": m["value"], "ci_low": m.get("ci_low"), "ci_high": m.get("ci_high"), "n": m.get("n")}


def _metrics(block: dict) -> dict[str, dict]:
    return {k: e for k, v in sorted(block.items()) if (e := _metric_entry(v)) is not None}


def collect(out: Path) -> dict:
    """Merge every run folder under ``out`` into ``sweep.json`` and ``sweep.csv``; return the dict.

    ``runs`` holds the finished runs (identity, grid values, per-domain and aggregate metrics, wall
    and phase times); ``unfinished`` the started ones; ``pending`` the runs of ``plan.json`` not
    started anywhere yet (a shard that has not run, or folders not copied in yet).
    """
    out = Path(out)
    if not out.is_dir():
        raise UsageError(f"No sweep folder {out}")
    runs, unfinished, seen, axes = [], [], set(), []
    for desc_path in sorted(out.glob(f"*/{RUN_FILE}")):
        desc = read_json(desc_path)
        run_dir = desc_path.parent
        seen.add(desc["run_id"])
        for a in desc.get("grid", {}):
            if a not in axes:
                axes.append(a)
        ident = {k: desc[k] for k in ("run_id", "index", "task", "method", "seed", "grid")}
        ident["profile"] = desc.get("run", {}).get("profile")
        state = run_state(run_dir)
        if state != "finished":
            ident["state"] = "failed" if (run_dir / ERROR_FILE).is_file() else state
            unfinished.append(ident)
            continue
        res = read_json(run_dir / "results.json")
        agg = res.get("aggregates", {})
        runs.append(dict(ident, state="finished", reduced=res.get("reduced"), judge=res.get("judge"),
                         wall_time_s=res.get("wall_time_s"), phase_times_s=res.get("phase_times_s", {}),
                         data_hash=res.get("data_hash"),
                         aggregates={"held_out": _metrics(agg.get("held_out", {})),
                                     "in_distribution": _metrics(agg.get("in_distribution") or {}),
                                     "gap": {k: v for k, v in (agg.get("gap") or {}).items() if v is not None}},
                         domains=[{"domain": d["domain"], "role": d["role"], "fold": d.get("fold"),
                                   "metrics": _metrics(d.get("metrics", {}))} for d in res.get("domains", [])]))
    pending = []
    if (out / PLAN_FILE).is_file():
        plan = read_json(out / PLAN_FILE)
        for a in plan.get("axes", []):
            if a not in axes:
                axes.append(a)
        pending = [dict(r, state="pending") for r in plan.get("runs", []) if r["run_id"] not in seen]
    if not runs and not unfinished and not pending:
        raise UsageError(f"{out} holds no sweep runs (no */{RUN_FILE} and no {PLAN_FILE})")
    runs.sort(key=lambda r: (r["task"], r["method"], [str(r["grid"].get(a)) for a in axes], r["seed"]))
    merged = {"schema": SWEEP_SCHEMA, "folder": str(out), "axes": axes, "runs": runs,
              "unfinished": unfinished, "pending": pending}
    write_json(out / "sweep.json", merged)
    write_text(out / "sweep.csv", to_csv(merged))
    return merged


def long_rows(merged: dict) -> list[dict]:
    """One row per finished run × domain (role ``held_out`` / ``source``) plus its macro rows
    (domain ``macro``, role ``held_out`` / ``in_distribution``): run identity, grid values, metrics."""
    rows = []
    for r in merged["runs"]:
        base = {"run_id": r["run_id"], "task": r["task"], "method": r["method"], "seed": r["seed"],
                **{a: r["grid"].get(a) for a in merged["axes"]}, "profile": r.get("profile"),
                "reduced": r.get("reduced")}
        for d in r["domains"]:
            rows.append(dict(base, domain=d["domain"], role=d["role"], fold=d.get("fold"), metrics=d["metrics"]))
        for role in ("held_out", "in_distribution"):
            if r["aggregates"].get(role):
                rows.append(dict(base, domain="macro", role=role, fold=None, metrics=r["aggregates"][role]))
    return rows


def to_csv(merged: dict) -> str:
    """``sweep.csv`` text: :func:`long_rows` with ``<metric>``, ``<metric>_ci_low``,
    ``<metric>_ci_high`` columns for every metric any row has."""
    rows = long_rows(merged)
    names = sorted({m for row in rows for m in row["metrics"]})
    head = ["run_id", "task", "method", "seed", *merged["axes"], "profile", "reduced", "domain", "role", "fold"]
    cols = head + [c for m in names for c in (m, f"{m}_ci_low", f"{m}_ci_high")]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for row in rows:
        vals = [row.get(c) for c in head]
        for m in names:
            e = row["metrics"].get(m) or {}
            vals += [e.get("value"), e.get("ci_low"), e.get("ci_high")]
        writer.writerow(["" if v is None else v for v in vals])
    return buf.getvalue()


def plot(merged: dict, axis: str, path: Path, *, metrics: Iterable[str] = DEFAULT_PLOT_METRICS,
         domains: Iterable[str] | None = None) -> Path:
    """Plot ``metrics`` against grid axis ``axis`` (one panel per metric) into a PNG at ``path``.

    One line per (task, method, domain and role) that has the metric, plus the macro held-out
    average when runs have several held-out domains; points are the mean over seeds with error bars of the std over seeds (the 95% CI when
    there is one seed). ``domains`` restricts the per-domain lines (not the macro line).
    The x axis is logarithmic when every value is positive and they span a factor of 10 or more.
    """
    if axis not in merged["axes"]:
        raise UsageError(f"--plot {axis}: not a grid axis of this sweep (axes: {', '.join(merged['axes']) or 'none'})")
    metrics = list(metrics)
    wanted = set(domains) if domains else None
    series: dict[tuple, dict[float, list[dict]]] = {}
    rows = long_rows(merged)
    held_counts: dict[str, int] = {}
    for row in rows:
        if row["role"] == "held_out" and row["domain"] != "macro":
            held_counts[row["run_id"]] = held_counts.get(row["run_id"], 0) + 1
    for row in rows:
        x = row.get(axis)
        if not isinstance(x, (int, float)) or isinstance(x, bool):
            raise UsageError(f"--plot {axis}: values must be numbers, got {x!r}")
        if row["domain"] != "macro" and wanted is not None and row["domain"] not in wanted:
            continue
        if row["domain"] == "macro" and (row["role"] != "held_out" or held_counts.get(row["run_id"], 0) < 2):
            continue  # the macro line only when it averages several held-out domains
        others = tuple((a, row.get(a)) for a in merged["axes"] if a != axis)
        label_domain = "macro held-out" if row["domain"] == "macro" else f"{row['domain']} ({row['role'].replace('_', '-')})"
        key = (row["task"], row["method"], others, label_domain)
        series.setdefault(key, {}).setdefault(float(x), []).append(row["metrics"])
    if not series:
        raise UsageError("nothing to plot: no finished runs (run the sweep, then --collect)")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    xs_all = sorted({x for s in series.values() for x in s})
    log_x = all(x > 0 for x in xs_all) and max(xs_all) / min(xs_all) >= 10
    fig, axes_ = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.0), squeeze=False)
    for ax, metric in zip(axes_[0], metrics):
        drawn = 0
        for (task, method, others, label_domain), points in sorted(series.items(), key=lambda kv: str(kv[0])):
            xs, ys, lo, hi = [], [], [], []
            for x in sorted(points):
                entries = [m[metric] for m in points[x] if metric in m]
                if not entries:
                    continue
                values = [e["value"] for e in entries]
                mean = statistics.fmean(values)
                if len(values) > 1:
                    err_lo = err_hi = statistics.stdev(values)
                else:
                    e = entries[0]
                    err_lo = mean - e["ci_low"] if e.get("ci_low") is not None else 0.0
                    err_hi = e["ci_high"] - mean if e.get("ci_high") is not None else 0.0
                xs.append(x)
                ys.append(mean)
                lo.append(max(err_lo, 0.0))
                hi.append(max(err_hi, 0.0))
            if not xs:
                continue
            extra = "".join(f", {a}={v}" for a, v in others)
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3,
                        linestyle="--" if label_domain.startswith("macro") else "-",
                        label=f"{task}/{method}: {label_domain}{extra}")
            drawn += 1
        ax.set_title(metric)
        ax.set_xlabel(axis)
        if log_x:
            ax.set_xscale("log")
        ax.set_xticks(xs_all)
        ax.set_xticklabels([f"{x:g}" for x in xs_all])
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, f"no {metric} in these runs", ha="center", va="center", transform=ax.transAxes)
    n_seeds = len({r["seed"] for r in merged["runs"]})
    fig.suptitle(f"{', '.join(metrics)} against {axis} ({len(merged['runs'])} runs, {n_seeds} seed(s); "
                 "error bars: std over seeds, or the 95% CI of one seed)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_table(merged: dict, judge_columns: bool = True) -> list[dict]:
    """One row per finished run: identity, grid values and the macro held-out / in-distribution
    values of the main metrics (for printing)."""
    out = []
    for r in merged["runs"]:
        held = r["aggregates"]["held_out"]
        row = {"run": r["run_id"], "seed": r["seed"], **{a: r["grid"].get(a) for a in merged["axes"]}}
        for m in ("pl_accuracy", "rm_accuracy", "gold_reward", "kl"):
            row[m] = held.get(m, {}).get("value")
        if judge_columns:
            for m in sorted(k for k in held if k.startswith("win_rate[")):
                row[m.split("@")[0] + ("]" if "@" in m else "")] = held[m]["value"]
        row["in-dist pl_accuracy"] = r["aggregates"]["in_distribution"].get("pl_accuracy", {}).get("value")
        row["wall s"] = r.get("wall_time_s")
        out.append(row)
    return out


# --- the command -----------------------------------------------------------------------------------


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if math.isfinite(v) else str(v)
    return str(v)


def sweep_command(
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated solvers (oodpl ls methods)."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma-separated tasks: qa, sentiment."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds or ranges, e.g. 0,1 or 0-4."),
    set_: list[str] = typer.Option([], "--set", help="Method option for every run, key=value (repeatable)."),
    grid: list[str] = typer.Option([], "--grid", help="Option axis key=v1,v2,... (repeatable: axes multiply)."),
    profile: str = typer.Option("default", "--profile", help="Run profile: default or smoke."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Run only shard i/n of the grid (1-based: 1/4 .. 4/4)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Sweep folder (default runs/sweep)."),
    domains: Optional[str] = typer.Option(None, "--domains", help="Comma-separated held-out domains (reduced runs)."),
    in_distribution: bool = typer.Option(True, "--in-distribution/--no-in-distribution", help="Also score source test pairs."),
    edition: str = typer.Option("se-amazon", "--edition", help="Data edition."),
    judge: str = typer.Option("proxy", "--judge", help="Win-rate judge (as oodpl run)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Raw data folder (else OODPL_DATA, else ../shared/data)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List this shard's runs and their state; run nothing."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first crashed run."),
    collect_: bool = typer.Option(False, "--collect", help="Merge the finished runs of --out into sweep.json and sweep.csv."),
    plot_axis: Optional[str] = typer.Option(None, "--plot", help="With --collect: plot metrics against this grid axis (PNG)."),
    plot_metrics: str = typer.Option(",".join(DEFAULT_PLOT_METRICS), "--plot-metrics", help="Metrics to plot."),
    plot_domains: Optional[str] = typer.Option(None, "--plot-domains", help="Domains drawn in the plot (default all)."),
) -> None:
    """Run a grid of runs (methods x tasks x grid x seeds), sharded and resumable; or --collect them."""
    from rich.markup import escape
    from rich.table import Table

    from .cli import _progress, console, err_console
    from .paths import runs_dir

    folder = Path(out) if out else runs_dir() / "sweep"
    if collect_:
        merged = collect(folder)
        rows = summary_table(merged)
        if rows:
            table = Table(title=f"sweep {folder}: {len(merged['runs'])} finished runs")
            for c in rows[0]:
                table.add_column(escape(c), justify="left" if c == "run" else "right", no_wrap=True)
            for row in rows:
                table.add_row(*(_cell(row.get(c)) for c in rows[0]))
            console.print(table)
        if merged["unfinished"] or merged["pending"]:
            err_console.print(f"not finished: {len(merged['unfinished'])} started, {len(merged['pending'])} "
                              "pending (run their shards, then collect again)")
        console.print(f"wrote {folder / 'sweep.json'} and {folder / 'sweep.csv'}", soft_wrap=True)
        if plot_axis:
            path = plot(merged, plot_axis, folder / f"sweep-{plot_axis}.png",
                        metrics=parse_names(plot_metrics, "--plot-metrics"),
                        domains=parse_names(plot_domains, "--plot-domains") if plot_domains else None)
            console.print(f"wrote {path}", soft_wrap=True)
        return
    if plot_axis:
        raise UsageError("--plot goes with --collect (collect the finished runs, then plot)")
    spec = SweepSpec(methods=parse_names(methods, "--methods"), tasks=parse_names(tasks, "--tasks"),
                     seeds=parse_seeds(seeds), sets=parse_sets(set_), grid=parse_grid(grid), profile=profile,
                     edition=edition, domains=parse_names(domains, "--domains") if domains else None,
                     in_distribution=in_distribution, judge=judge)
    run_sweep(spec, folder, shard=parse_shard(shard), data_dir=str(data_dir) if data_dir else None,
              dry_run=dry_run, fail_fast=fail_fast,
              log=lambda msg: err_console.print(msg, soft_wrap=True, markup=False),
              console=err_console, progress_factory=_progress)
    if not dry_run:
        console.print(f"collect with: oodpl sweep --collect --out {folder}", soft_wrap=True)
