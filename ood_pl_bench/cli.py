"""The ``oodpl`` command line (typer + rich).

User mistakes (bad flags, unknown names, missing data, malformed files) print one line starting
with ``error:`` and exit with the code of their ``OodplError`` class; never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import OodplError, UsageError

app = typer.Typer(
    name="oodpl",
    help="ood-pl-bench: out-of-distribution preference learning benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build and inspect data editions.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Piped output (logs, CI) gets a wide console so result tables do not wrap.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False)


def _read_config_file(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise UsageError(f"Config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"Config file {path} is not valid YAML/JSON: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise UsageError(f"Config file {path} must hold a mapping (keys: method, task, profile, seed, options)")
    allowed = {"method", "task", "edition", "profile", "seed", "options", "domains"}
    unknown = set(data) - allowed
    if unknown:
        raise UsageError(f"Unknown keys in {path}: {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
    return data


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err_console, transient=True,
                    disable=not err_console.is_terminal)


def _fmt(m: dict | None, digits: int = 3) -> str:
    if not m:
        return "-"
    if not m.get("applicable", True):
        return "n/a"
    v = m.get("value")
    if v is None:
        return "-"
    lo, hi = m.get("ci_low"), m.get("ci_high")
    ci = f" [{lo:.{digits}f},{hi:.{digits}f}]" if lo is not None and hi is not None else ""
    return f"{v:.{digits}f}{ci}"


def print_results(results: dict) -> None:
    """Print a results dict as rich tables (held-out domains, aggregates)."""
    cols = ["pl_accuracy", "rm_accuracy", "gold_reward", "kl"]
    # One win-rate column per judge: results never mix judges.
    cols += sorted(k for k in results["aggregates"]["held_out"] if k.startswith("win_rate["))
    table = Table(title=f"{results['method']} on {results['task']} ({results['edition']}, profile {results['profile']})")
    table.add_column("domain", no_wrap=True)
    table.add_column("fold", no_wrap=True)
    for c in cols:
        table.add_column(c.split("@")[0] + ("]" if "@" in c else ""), justify="right", no_wrap=True)
    for d in results["domains"]:
        if d["role"] == "held_out":
            table.add_row(d["domain"], d["fold"], *(_fmt(d["metrics"].get(c)) for c in cols))
    agg = results["aggregates"]
    table.add_row("[bold]macro held-out[/bold]", "", *(_fmt(agg["held_out"].get(c)) for c in cols))
    if agg.get("in_distribution"):
        table.add_row("in-distribution", "", *(_fmt(agg["in_distribution"].get(c)) for c in cols))
        table.add_row("gap (in - held)", "", *(
            f"{agg['gap'][c]:+.3f}" if agg["gap"].get(c) is not None else "-" for c in cols))
    console.print(table)
    if results.get("judge"):
        console.print(f"win rate judged by {results['judge']}")
    if results.get("reduced"):
        console.print("[yellow]reduced run (subset profile or domains): not rankable beside full runs[/yellow]")


@app.command()
def run(
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Solver to run (oodpl ls methods)."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Task: qa or sentiment."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON file: method, task, profile, seed, options."),
    set_: list[str] = typer.Option([], "--set", help="Method option override key=value (repeatable)."),
    profile: Optional[str] = typer.Option(None, "--profile", help="default (SmolLM2 + MiniLM) or smoke (tiny models, few items)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for training, sampling and evaluation."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<edition>/<task>/<method>-<profile>-seed<N>)."),
    edition: Optional[str] = typer.Option(None, "--edition", help="Data edition (se-amazon)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Raw data folder (else OODPL_DATA, else ../shared/data)."),
    domains: Optional[str] = typer.Option(None, "--domains", help="Comma-separated held-out domains (reduced run)."),
    in_distribution: bool = typer.Option(True, "--in-distribution/--no-in-distribution", help="Also score source test pairs."),
    judge: str = typer.Option("proxy", "--judge", help="Win-rate judge: proxy (gold RM, offline), openai:MODEL, or a config name (oodpl ls judges)."),
) -> None:
    """Train a method once per fold and evaluate it on every held-out domain of a task."""
    from .profiles import get_profile
    from .runner import RunConfig, default_run_dir, resolve_solver, run as run_task
    from .sweep import parse_sets
    from .tasks import get_task

    file_cfg = _read_config_file(config) if config else {}
    options = dict(file_cfg.get("options") or {})
    options.update(parse_sets(set_))
    method = method or file_cfg.get("method")
    task = task or file_cfg.get("task")
    if not method or not task:
        raise UsageError("oodpl run needs --method and --task (or a --config file naming them)")
    dom = domains or file_cfg.get("domains")
    if isinstance(dom, str):
        dom = [d.strip() for d in dom.split(",") if d.strip()]
    cfg = RunConfig(method=method, task=task, edition=edition or file_cfg.get("edition", "se-amazon"),
                    profile=profile or file_cfg.get("profile", "default"),
                    seed=seed if seed is not None else int(file_cfg.get("seed", 0)),
                    method_options=options, domains=tuple(dom) if dom else None,
                    in_distribution=in_distribution, judge=judge)
    # Check names and options before anything is created or loaded.
    resolve_solver(cfg.method, cfg.method_options)
    get_profile(cfg.profile)
    get_task(cfg.task, cfg.edition)
    run_dir = out or default_run_dir(cfg)
    # Under `accelerate launch`, only the main process shows progress and prints results.
    from .distributed import launched_as_main_process

    main_process = launched_as_main_process()
    if main_process:
        err_console.print(f"run directory: {run_dir}", soft_wrap=True)
    results = run_task(cfg, out=run_dir, data_dir=str(data_dir) if data_dir else None,
                       console=err_console if main_process else None,
                       progress_factory=_progress if main_process else None)
    if results is None:
        return
    print_results(results)
    console.print(f"results: {Path(run_dir) / 'results.json'}")


@app.command("eval")
def eval_(
    policy: str = typer.Option(..., "--policy", help="Aligned model: a local folder (full model or PEFT adapter) or a hub id."),
    task: str = typer.Option(..., "--task", "-t", help="Task: qa or sentiment."),
    profile: str = typer.Option("default", "--profile", help="Profile giving the reference model, sizes and gold RM."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory."),
    edition: str = typer.Option("se-amazon", "--edition", help="Data edition."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Raw data folder."),
    judge: str = typer.Option("proxy", "--judge", help="Win-rate judge: proxy (gold RM, offline), openai:MODEL, or a config name."),
) -> None:
    """Evaluate an already aligned checkpoint on every held-out domain (no training)."""
    from .external import ExternalPolicy
    from .runner import RunConfig, default_run_dir, run as run_task

    cfg = RunConfig(method="external", task=task, edition=edition, profile=profile, seed=seed,
                    method_options={"policy": policy}, in_distribution=False, judge=judge)
    run_dir = out or default_run_dir(cfg)
    err_console.print(f"run directory: {run_dir}", soft_wrap=True)
    results = run_task(cfg, out=run_dir, data_dir=str(data_dir) if data_dir else None, console=err_console,
                       progress_factory=_progress, solver_cls=ExternalPolicy)
    print_results(results)
    console.print(f"results: {Path(run_dir) / 'results.json'}")


@data_app.command("build")
def data_build(
    edition: str = typer.Option("se-amazon", "--edition", help="Edition to build."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Raw data folder (else OODPL_DATA, else ../shared/data)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the edition is cached."),
) -> None:
    """Build a data edition from raw dumps into the cache (versioned, with a manifest)."""
    from .data.build import build_edition

    path = build_edition(edition, data_dir=str(data_dir) if data_dir else None, force=force)
    console.print(f"built {edition} at {path}")


@data_app.command("show")
def data_show(
    edition: str = typer.Option("se-amazon", "--edition", help="Edition."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Only this task."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Raw data folder."),
) -> None:
    """Show an edition: version, data hash, and per-domain counts per split."""
    from .data.edition import load_edition
    from .tasks import list_tasks

    ed = load_edition(edition, data_dir=str(data_dir) if data_dir else None)
    console.print(f"edition {ed.name} v{ed.version}  data hash {ed.data_hash}  at {ed.root}")
    counts = ed.counts()
    for spec in list_tasks(edition):
        if task and spec.name != task:
            continue
        table = Table(title=f"{spec.name}: {spec.description}")
        for col in ("domain", "role", "train pairs", "oracle pairs", "test pairs", "train prompts", "eval prompts"):
            table.add_column(col, justify="left" if col in ("domain", "role") else "right")
        for fold in spec.folds:
            for d in fold.held_out:
                c = counts.get(spec.name, {}).get(d, {})
                roles = [f"held-out ({fold.name})"] + [f"source ({f.name})" for f in spec.folds if d in f.source]
                table.add_row(d, ", ".join(roles), *(str(c.get(k, 0)) for k in (
                    "pairs/train", "pairs/oracle", "pairs/test", "prompts/train", "prompts/prompts")))
        console.print(table)


@data_app.command("card")
def data_card(
    task: str = typer.Option(..., "--task", "-t", help="Task."),
    edition: str = typer.Option("se-amazon", "--edition", help="Edition."),
    profile: str = typer.Option("default", "--profile", help="Profile whose gold RM is evaluated."),
    out_dir: Path = typer.Option(Path("data_cards"), "--out-dir", help="Folder for the card."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Raw data folder."),
) -> None:
    """Write the data card of a task edition, with gold-RM and length-rule accuracy per domain."""
    from .data.card import render_data_card
    from .data.edition import load_edition
    from .io import write_text
    from .models.gold import gold_accuracy, gold_reward_model
    from .profiles import get_profile
    from .tasks import get_task

    prof = get_profile(profile)
    spec = prof.apply(get_task(task, edition))
    ed = load_edition(edition, data_dir=str(data_dir) if data_dir else None)
    gold = gold_reward_model(spec, ed, prof)
    acc = gold_accuracy(gold, ed, spec)
    path = out_dir / f"{edition}-{task}.md"
    write_text(path, render_data_card(ed, task, gold_accuracy=acc))
    console.print(f"wrote {path}")


def _judge_command_loader():
    from .judges.command import judge_command

    return judge_command


app.command("judge")(_judge_command_loader())


def _new_solver_command_loader():
    from .scaffold import new_solver_command

    return new_solver_command


app.command("new-solver")(_new_solver_command_loader())

from .leaderboard.commands import compare_command, leaderboard_command, submit_command, validate_command  # noqa: E402

app.command("submit")(submit_command)
app.command("validate")(validate_command)
app.command("leaderboard")(leaderboard_command)
app.command("compare")(compare_command)

from .sweep import sweep_command  # noqa: E402

app.command("sweep")(sweep_command)


@app.command("ls")
def ls(
    what: str = typer.Argument(..., help="methods | tasks | domains | metrics | judges"),
    edition: str = typer.Option("se-amazon", "--edition", help="Edition (tasks, domains)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show method options with help text."),
) -> None:
    """List registered methods, tasks, domains, metrics or judges."""
    from .registry import solvers
    from .solver import config_help
    from .tasks import list_tasks

    if what == "methods":
        table = Table("method", "description")
        for name in solvers.names():
            cls = solvers.get(name)
            table.add_row(name, getattr(cls, "description", ""))
            if verbose:
                for opt, default, help_text in config_help(getattr(cls, "Config", object)):
                    table.add_row(f"  --set {opt}=", f"{help_text} (default {default})")
        console.print(table)
        for name, reason in solvers.failed().items():
            err_console.print(f"warning: method plug-in {name!r} failed to import: {reason}")
    elif what == "tasks":
        table = Table("task", "edition", "folds", "held-out domains", "description")
        for spec in list_tasks(edition):
            table.add_row(spec.name, spec.edition, str(len(spec.folds)), str(len(spec.held_out_domains)), spec.description)
        console.print(table)
    elif what == "domains":
        table = Table("task", "domain", "held out in fold", "source in folds")
        for spec in list_tasks(edition):
            for d in spec.domains:
                held = [f.name for f in spec.folds if d in f.held_out]
                src = [f.name for f in spec.folds if d in f.source]
                table.add_row(spec.name, d, ",".join(held) or "-", ",".join(src) or "-")
        console.print(table)
    elif what == "metrics":
        from .metrics.catalog import METRICS

        table = Table("metric", "definition")
        for name, desc in METRICS.items():
            table.add_row(name, desc)
        console.print(table)
    elif what == "judges":
        from .judges import available_judges

        table = Table("judge", "description")
        for name, desc in available_judges():
            table.add_row(name, desc)
        console.print(table)
    else:
        raise UsageError(f"Unknown listing {what!r}; choose one of: methods, tasks, domains, metrics, judges")


@app.command("env")
def env() -> None:
    """Print versions, device, and where data and caches live."""
    from .envinfo import device_name, git_commit, package_versions
    from .paths import cache_dir, find_data_dir, runs_dir

    table = Table("item", "value")
    table.add_row("oodpl", __version__)
    for k, v in package_versions().items():
        table.add_row(k, v)
    table.add_row("device", device_name())
    table.add_row("git commit", git_commit() or "-")
    try:
        table.add_row("raw data", str(find_data_dir()))
    except OodplError as exc:
        table.add_row("raw data", f"not found ({exc.message})")
    table.add_row("cache (OODPL_CACHE)", str(cache_dir()))
    table.add_row("runs (OODPL_RUNS)", str(runs_dir()))
    table.add_row("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "unset"))
    console.print(table)


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        console.print(f"oodpl {__version__}")
        raise typer.Exit(0)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app, turning OodplError into one line and an exit code."""
    # Offline by default: nothing is fetched unless a hub id or API judge is asked for.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(args=argv, standalone_mode=False)
    except OodplError as exc:
        err_console.print(f"error: {exc.message}", markup=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted: finished units are kept; rerun the same command to resume.")
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except Exception as exc:  # click usage errors come through here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show(file=sys.stderr)
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            return 1
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
