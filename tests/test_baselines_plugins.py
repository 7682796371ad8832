"""Adding a baseline: ``new-solver`` writes a package that installs and runs; broken plug-ins are skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import warnings
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from ood_pl_bench import registry
from ood_pl_bench.errors import UsageError
from ood_pl_bench.registry import PluginImportWarning, Registry
from ood_pl_bench.scaffold import new_solver, solver_names

BIN = Path(sys.executable).parent


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def installed_skeleton(tmp_path):
    """A fresh ``new-solver`` package, pip-installed (editable) into this venv; uninstalled after."""
    name = f"skel-{uuid.uuid4().hex[:8]}"
    root = new_solver(name, tmp_path / "pkgs")
    done = _pip("install", "--no-deps", "--no-build-isolation", "-e", str(root))
    assert done.returncode == 0, done.stderr
    try:
        yield name, root
    finally:
        _pip("uninstall", "-y", solver_names(name)["dist"])


def test_new_solver_package_installs_and_runs_with_oodpl_run(smoke_env, installed_skeleton):
    name, root = installed_skeleton
    env = dict(os.environ, OMP_NUM_THREADS="1")  # smoke_env set OODPL_CACHE / OODPL_DATA / OODPL_RUNS
    listed = subprocess.run([str(BIN / "oodpl"), "ls", "methods"], capture_output=True, text=True, env=env,
                            timeout=300)
    assert listed.returncode == 0 and name in listed.stdout
    out = smoke_env / "run"
    done = subprocess.run(
        [str(BIN / "oodpl"), "run", "--method", name, "--task", "qa", "--profile", "smoke",
         "--domains", "coffee", "--no-in-distribution", "--set", "steps=2", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == name and results["method_config"]["steps"] == 2
    (held,) = [d for d in results["domains"] if d["role"] == "held_out"]
    assert held["metrics"]["pl_accuracy"]["value"] is not None
    # the skeleton's own tests pass too
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
                           capture_output=True, text=True, env=env, timeout=900, cwd=root)
    assert tests.returncode == 0, tests.stdout[-3000:]


def test_new_solver_refuses_bad_names_and_existing_folders(tmp_path):
    with pytest.raises(UsageError, match="Invalid method name"):
        new_solver("My Method", tmp_path)
    with pytest.raises(UsageError, match="already installed"):
        new_solver("dpo", tmp_path)
    root = new_solver("fresh-idea", tmp_path, check_registry=False)
    assert (root / "fresh_idea").exists() is False and (root / "oodpl_fresh_idea" / "solver.py").is_file()
    with pytest.raises(UsageError, match="not empty"):
        new_solver("fresh-idea", tmp_path, check_registry=False)
    assert solver_names("fresh-idea") == {"name": "fresh-idea", "dist": "oodpl-fresh-idea",
                                          "module": "oodpl_fresh_idea", "cls": "FreshIdeaSolver",
                                          "config_cls": "FreshIdeaConfig"}


def test_generated_config_is_typed_and_documented(tmp_path, monkeypatch):
    from ood_pl_bench.solver import build_config, config_help

    root = new_solver("typed-idea", tmp_path, check_registry=False)
    monkeypatch.syspath_prepend(str(root))
    from oodpl_typed_idea import TypedIdeaConfig, TypedIdeaSolver

    assert TypedIdeaSolver.name == "typed-idea" and TypedIdeaSolver.Config is TypedIdeaConfig
    assert all(help_text for _, _, help_text in config_help(TypedIdeaConfig))
    assert build_config(TypedIdeaConfig, {"steps": "3", "lr": "0.01"}).steps == 3
    with pytest.raises(UsageError, match="Invalid options"):
        build_config(TypedIdeaConfig, {"steps": "-1"})


def test_a_broken_plugin_warns_by_name_and_the_others_keep_working(monkeypatch):
    real = registry.entry_points

    def with_broken(group):
        eps = list(real(group=group))
        if group == registry.SOLVER_GROUP:
            eps.append(EntryPoint(name="broken-method", value="no_such_module_xyz:Solver", group=group))
        return eps

    monkeypatch.setattr(registry, "entry_points", with_broken)
    reg = Registry(registry.SOLVER_GROUP, "method")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = reg.names()
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginImportWarning)]
    assert len(messages) == 1 and "broken-method" in messages[0] and "no_such_module_xyz" in messages[0]
    assert {"reference", "dpo", "ppo", "rwr", "bon"} <= set(names) and "broken-method" not in names
    assert "broken-method" in reg.failed()
    with pytest.raises(UsageError, match="failed to import"):
        reg.get("broken-method")
    assert reg.get("dpo").name == "dpo"


def test_new_solver_command_function(tmp_path):
    """The typer command the CLI mounts as ``oodpl new-solver NAME [--dir DIR]``."""
    import typer
    from typer.testing import CliRunner

    from ood_pl_bench.scaffold import new_solver_command

    app = typer.Typer()
    app.command("new-solver")(new_solver_command)
    app.callback()(lambda: None)  # keep "new-solver" a sub-command
    result = CliRunner().invoke(app, ["new-solver", "cli-idea", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "pip install -e" in result.output and "--profile smoke" in result.output
    assert (tmp_path / "oodpl-cli-idea" / "oodpl_cli_idea" / "solver.py").is_file()


def test_set_none_resets_optional_fields():
    from ood_pl_bench.errors import UsageError
    from ood_pl_bench.solver import build_config

    from baselines.metarm.config import MetaRMConfig

    cfg = build_config(MetaRMConfig, {"meta_test_lr": "0.01", "seed": "None"})
    assert cfg.meta_test_lr == 0.01 and cfg.seed is None
    assert build_config(MetaRMConfig, {"meta_test_lr": "null"}).meta_test_lr is None
    with pytest.raises(UsageError, match="meta_steps"):
        build_config(MetaRMConfig, {"meta_steps": "None"})  # not optional: an int is required
