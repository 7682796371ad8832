"""Typer commands of the leaderboard: ``oodpl submit``, ``validate``, ``leaderboard`` and ``compare``.

They are registered on the main app in :mod:`ood_pl_bench.cli`. Refusals raise
:class:`~ood_pl_bench.errors.SubmissionError` (exit code 5), whose message has one line per problem;
bad options raise :class:`~ood_pl_bench.errors.UsageError` (exit code 2).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError

DEFAULT_ROOT = Path("leaderboards")


def _console():
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 320)


def submit_command(
    run_dir: Path = typer.Argument(..., help="A finished run directory (results.json, config.json, samples/)."),
    name: Optional[str] = typer.Option(None, "--name", help="Submission name (default <method>-<profile>-seed<N>)."),
    root: Path = typer.Option(DEFAULT_ROOT, "--root", help="Leaderboard folder."),
    replace: bool = typer.Option(False, "--replace", help="Replace an existing submission of the same name."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Raw data folder, if the edition must be built."),
) -> None:
    """Validate a run and add it to the leaderboard (summary, gzip per-sample files, config, manifest)."""
    from .submission import submit

    dest = submit(run_dir, name=name, root=root, replace=replace, data_dir=str(data_dir) if data_dir else None)
    console = _console()
    console.print(f"submitted {dest.name} to {dest}", soft_wrap=True)
    console.print(f"regenerated {root / 'README.md'} and {root / 'index.html'}", soft_wrap=True)


def validate_command(
    path: Path = typer.Argument(..., help="A run directory, a submission folder, or its results.json / summary.json."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Raw data folder, if the edition must be built."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (the exit code still says valid or not)."),
) -> None:
    """Recompute every metric, CI and aggregate from the per-sample files and check hashes, edition and protocol."""
    import json

    from .validate import validate

    report = validate(path, data_dir=str(data_dir) if data_dir else None)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    report.raise_if_invalid()
    if not as_json:
        _console().print(report.summary_line(), soft_wrap=True, markup=False)


def leaderboard_command(
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Only this task."),
    edition: Optional[str] = typer.Option(None, "--edition", help="Only this edition."),
    fmt: str = typer.Option("rich", "--format", help="rich (terminal), md, html or json."),
    rank_by: str = typer.Option("pl_accuracy", "--rank-by", help="Rank metric: pl_accuracy, pl_likelihood_accuracy, rm_accuracy, gold_reward or win_rate[JUDGE]."),
    root: Path = typer.Option(DEFAULT_ROOT, "--root", help="Leaderboard folder."),
    render: bool = typer.Option(False, "--render", help="Also regenerate README.md and index.html in the leaderboard folder."),
) -> None:
    """Show the leaderboard: macro held-out scores with CIs, in-distribution score and gap, tied groups."""
    from .table import FORMATS, format_boards, leaderboard, load_submissions, rich_tables

    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if rank_by not in ("pl_accuracy", "pl_likelihood_accuracy", "rm_accuracy", "gold_reward") \
            and not (rank_by.startswith("win_rate[") and rank_by.endswith("]")):
        raise UsageError(f"cannot rank by {rank_by!r}; choose pl_accuracy, pl_likelihood_accuracy, rm_accuracy, "
                         "gold_reward or win_rate[JUDGE] (higher is better for each)")
    from rich.console import Console

    err = Console(stderr=True, highlight=False)
    for warning in load_submissions(root)[1]:
        err.print(f"warning: {warning}", markup=False, soft_wrap=True)
    boards = leaderboard(root, task=task, edition=edition, rank_metric=rank_by)
    if fmt == "rich":
        console = _console()
        for table in rich_tables(boards):
            console.print(table)
    else:
        sys.stdout.write(format_boards(boards, fmt))
    if render:
        from .render import render_leaderboard

        paths = render_leaderboard(root)
        err.print(f"regenerated {', '.join(str(p) for p in paths)}", soft_wrap=True)


def compare_command(
    run_a: Path = typer.Argument(..., help="Run directory or submission folder A."),
    run_b: Path = typer.Argument(..., help="Run directory or submission folder B (same task, edition and profile)."),
    metric: list[str] = typer.Option([], "--metric", help="Compare only this metric (repeatable)."),
    fmt: str = typer.Option("rich", "--format", help="rich (terminal), md or json."),
) -> None:
    """Per-domain and macro differences (A - B) with paired bootstrap CIs, McNemar p-values and Holm correction."""
    from .compare import FORMATS, compare, rich_tables, to_json, to_markdown

    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    result = compare(run_a, run_b, metrics=metric or None)
    if fmt == "json":
        sys.stdout.write(to_json(result))
    elif fmt == "md":
        sys.stdout.write(to_markdown(result))
    else:
        console = _console()
        for table in rich_tables(result):
            console.print(table)
