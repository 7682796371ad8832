"""CLI behaviour: every user error gives one clear line on stderr and its exit code."""

from __future__ import annotations

import pytest

from ood_pl_bench.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_commands(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for cmd in ("run", "eval", "data", "ls", "env"):
        assert cmd in out


def test_unknown_method_did_you_mean(capsys, smoke_env):
    code, _, err = run_cli(capsys, "run", "--method", "referense", "--task", "qa", "--profile", "smoke")
    assert code == 2
    assert "Unknown method 'referense'" in err and "Did you mean 'reference'" in err
    assert "Traceback" not in err


def test_unknown_task(capsys, smoke_env):
    code, _, err = run_cli(capsys, "run", "--method", "reference", "--task", "qaa", "--profile", "smoke")
    assert code == 2 and "Unknown task 'qaa'" in err


def test_unknown_profile(capsys, smoke_env):
    code, _, err = run_cli(capsys, "run", "--method", "reference", "--task", "qa", "--profile", "fast")
    assert code == 2 and "Unknown profile 'fast'" in err


def test_bad_set_syntax_and_unknown_option(capsys, smoke_env):
    code, _, err = run_cli(capsys, "run", "--method", "reference", "--task", "qa", "--set", "novalue")
    assert code == 2 and "--set expects key=value" in err
    code, _, err = run_cli(capsys, "run", "--method", "reference", "--task", "qa", "--set", "lr=1")
    assert code == 2 and "takes no options" in err


def test_unknown_held_out_domain(capsys, smoke_env):
    code, _, err = run_cli(capsys, "run", "--method", "reference", "--task", "qa", "--profile", "smoke",
                           "--domains", "beer,notasite")
    assert code == 2 and "notasite" in err


def test_missing_config_file_and_bad_yaml(capsys, tmp_path, smoke_env):
    code, _, err = run_cli(capsys, "run", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2 and "Config file not found" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: [unclosed\n")
    code, _, err = run_cli(capsys, "run", "--config", str(bad))
    assert code == 2 and "not valid YAML" in err
    odd = tmp_path / "odd.yaml"
    odd.write_text("method: reference\ntask: qa\nlearning_rate: 3\n")
    code, _, err = run_cli(capsys, "run", "--config", str(odd))
    assert code == 2 and "Unknown keys" in err and "learning_rate" in err


def test_missing_method_and_task(capsys):
    code, _, err = run_cli(capsys, "run")
    assert code == 2 and "needs --method and --task" in err


def test_missing_data_dir_message(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("OODPL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODPL_DATA", str(tmp_path / "does-not-exist"))
    code, _, err = run_cli(capsys, "data", "build")
    assert code == 3 and "OODPL_DATA" in err and "does-not-exist" in err
    code, _, err = run_cli(capsys, "data", "build", "--data-dir", str(tmp_path / "also-missing"))
    assert code == 3 and "--data-dir" in err


def test_ls_listings(capsys):
    code, out, _ = run_cli(capsys, "ls", "methods")
    assert code == 0 and "reference" in out
    code, out, _ = run_cli(capsys, "ls", "tasks")
    assert code == 0 and "qa" in out and "sentiment" in out
    code, out, _ = run_cli(capsys, "ls", "domains")
    assert code == 0 and "matheducators" in out and "camera_photo" in out
    code, out, _ = run_cli(capsys, "ls", "metrics")
    assert code == 0 and "pl_accuracy" in out
    code, _, err = run_cli(capsys, "ls", "bogus")
    assert code == 2 and "Unknown listing" in err


def test_env_prints_locations(capsys, smoke_env):
    code, out, _ = run_cli(capsys, "env")
    assert code == 0 and "torch" in out and "cache" in out


def test_smoke_run_from_cli_prints_table(capsys, smoke_env):
    code, out, err = run_cli(capsys, "run", "--method", "reference", "--task", "qa", "--profile", "smoke",
                             "--domains", "coffee", "--no-in-distribution", "--out", str(smoke_env / "cli"))
    assert code == 0, err
    assert "coffee" in out and "0.500" in out
    assert (smoke_env / "cli" / "results.json").exists()
