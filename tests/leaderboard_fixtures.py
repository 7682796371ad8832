"""Shared fixtures of the leaderboard tests: two real smoke runs built once per session.

``lb_runs`` runs the reference policy and the small SFT test solver (tests/sft_solver.py, registered
in-process) on the qa task with the smoke profile, in the session's shared smoke cache.
``lb_env`` points a test at that cache (validate checks runs against the built edition there).
``lb_base`` is a leaderboard folder holding both runs as submissions (read-only for tests: copy it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import SHARED_DATA
from .sft_solver import SFTSolver


def _env(mp: pytest.MonkeyPatch, cache: Path, runs: Path) -> None:
    mp.setenv("OODPL_CACHE", str(cache))
    mp.setenv("OODPL_DATA", str(SHARED_DATA))
    mp.setenv("OODPL_RUNS", str(runs))


@pytest.fixture(scope="session")
def lb_runs(smoke_cache, tmp_path_factory) -> dict[str, Path]:
    """``{"reference": run_dir, "sft": run_dir}``: real qa smoke runs (built once per session)."""
    from ood_pl_bench import runner
    from ood_pl_bench.registry import solvers

    base = tmp_path_factory.mktemp("lb-runs")
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, smoke_cache, base)
        runner.run(runner.RunConfig(method="reference", task="qa", profile="smoke"), out=base / "reference")
        solvers.register("sft-test", SFTSolver)
        try:
            runner.run(runner.RunConfig(method="sft-test", task="qa", profile="smoke"), out=base / "sft")
        finally:
            solvers._extra.pop("sft-test", None)
            solvers.reset()
    return {"reference": base / "reference", "sft": base / "sft"}


@pytest.fixture
def lb_env(smoke_cache, monkeypatch, tmp_path) -> Path:
    """Point OODPL_CACHE / OODPL_DATA at the session's smoke cache; returns the test's tmp_path."""
    _env(monkeypatch, smoke_cache, tmp_path / "runs")
    return tmp_path


@pytest.fixture(scope="session")
def lb_base(lb_runs, smoke_cache, tmp_path_factory) -> Path:
    """A leaderboard folder with both smoke runs submitted (do not modify: copy it)."""
    from ood_pl_bench.leaderboard.submission import submit

    root = tmp_path_factory.mktemp("lb-base") / "leaderboards"
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, smoke_cache, root.parent / "runs")
        submit(lb_runs["reference"], root=root)
        submit(lb_runs["sft"], root=root)
    return root
