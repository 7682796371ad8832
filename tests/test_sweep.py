"""oodpl sweep: grid expansion, deterministic run folders, 1-based shards, skip/resume, collect, plot."""

from __future__ import annotations

import csv
import functools
import json

import pytest

from ood_pl_bench import runner, sweep
from ood_pl_bench.cli import main
from ood_pl_bench.errors import UsageError
from ood_pl_bench.sweep import SweepSpec, expand, parse_seeds, parse_shard, select_shard


def _spec(**kw) -> SweepSpec:
    base = dict(methods=["metarm", "dpo"], tasks=["qa"], seeds=[0, 1], grid={"beta": ["0.1", "0.5", "1", "2"]},
                profile="smoke", domains=["coffee"])
    base.update(kw)
    return SweepSpec(**base)


def test_parse_shard_is_one_based_with_clear_errors():
    assert parse_shard(None) is None
    assert parse_shard("1/4") == (1, 4)
    assert parse_shard(" 4 / 4 ") == (4, 4)
    with pytest.raises(UsageError, match="numbered from 1, so use 1/4 .. 4/4"):
        parse_shard("0/4")
    for bad in ("5/4", "1/0", "x", "1-4", "-1/2"):
        with pytest.raises(UsageError, match="--shard"):
            parse_shard(bad)


def test_parse_seeds_lists_and_ranges():
    assert parse_seeds("0,1") == [0, 1]
    assert parse_seeds("3, 0-2, 1") == [3, 0, 1, 2]
    with pytest.raises(UsageError):
        parse_seeds("a")
    with pytest.raises(UsageError):
        parse_seeds("")


def test_expand_order_ids_and_canonical_values():
    runs = expand(_spec())
    assert len(runs) == 2 * 4 * 2
    assert [r.index for r in runs] == list(range(16))
    # tasks, then methods, then grid values, then seeds
    assert [(r.method, r.grid["beta"], r.seed) for r in runs[:4]] == [
        ("metarm", 0.1, 0), ("metarm", 0.1, 1), ("metarm", 0.5, 0), ("metarm", 0.5, 1)]
    assert runs[0].run_id.startswith("qa-metarm-beta=0.1-seed0-")
    assert len({r.run_id for r in runs}) == 16
    # deterministic, and the spelling of a value does not change the run
    again = expand(_spec(grid={"beta": ["0.10", "0.5", "1.0", "2"]}))
    assert [r.run_id for r in again] == [r.run_id for r in runs]
    assert runs[0].config.method_options == {"beta": 0.1}
    assert runs[0].config.domains == ("coffee",)
    # a shared --set option changes every run's folder
    other = expand(_spec(sets={"meta_steps": "2"}, methods=["metarm"]))
    assert other[0].config.method_options == {"meta_steps": 2, "beta": 0.1}
    assert other[0].run_id != runs[0].run_id


def test_shards_partition_the_grid_evenly():
    runs = expand(_spec())
    parts = [select_shard(runs, (i, 3)) for i in (1, 2, 3)]
    ids = [r.run_id for p in parts for r in p]
    assert sorted(ids) == sorted(r.run_id for r in runs)
    assert len(set(ids)) == len(ids)
    assert sorted(len(p) for p in parts) == [5, 5, 6]
    assert [r.index for r in parts[1]] == [1, 4, 7, 10, 13]


def test_expand_rejects_user_mistakes():
    with pytest.raises(UsageError, match="both with --set and --grid"):
        expand(_spec(sets={"beta": "1"}))
    with pytest.raises(UsageError, match="method 'reference'.*no options"):
        expand(_spec(methods=["reference"]))
    with pytest.raises(UsageError, match="Unknown option 'bta'"):
        expand(_spec(grid={"bta": ["1"]}))
    with pytest.raises(UsageError, match="Bad value"):
        expand(_spec(grid={"beta": ["x"]}))
    with pytest.raises(UsageError, match="no held-out domain of task 'sentiment'"):
        expand(_spec(tasks=["qa", "sentiment"]))
    with pytest.raises(UsageError, match="Not held-out domains"):
        expand(_spec(domains=["nowhere"]))
    with pytest.raises(UsageError, match="Unknown profile"):
        expand(_spec(profile="huge"))


def test_cli_errors_are_one_line(capsys):
    assert main(["sweep", "--methods", "reference", "--tasks", "qa", "--shard", "0/2", "--dry-run"]) == 2
    assert "numbered from 1" in capsys.readouterr().err
    assert main(["sweep", "--tasks", "qa"]) == 2
    assert "needs --methods" in capsys.readouterr().err
    assert main(["sweep", "--methods", "reference", "--tasks", "qa", "--plot", "beta"]) == 2


def _fake_results(cfg, base: float) -> dict:
    """A minimal results.json for collect/plot tests (no models run)."""
    beta = float(cfg.method_options.get("beta", 1.0))
    acc = base + 0.1 * beta + 0.01 * cfg.seed

    def metric(v):
        return {"applicable": True, "value": v, "ci_low": v - 0.05, "ci_high": v + 0.05, "n": 6}

    held = {"pl_accuracy": metric(acc), "gold_reward": metric(-beta),
            "rm_accuracy": {"applicable": False, "value": None}}
    return {"reduced": True, "judge": "proxy:x", "wall_time_s": 1.0, "phase_times_s": {"training": 0.5},
            "data_hash": "h", "aggregates": {"held_out": held, "in_distribution": {"pl_accuracy": metric(0.7)},
                                             "gap": {"pl_accuracy": 0.1}},
            "domains": [{"domain": "coffee", "role": "held_out", "fold": "A", "metrics": held},
                        {"domain": "stackoverflow", "role": "source", "fold": "A",
                         "metrics": {"pl_accuracy": metric(0.7)}}]}


def _fake_run(calls, fail_on=None):
    def run_fn(cfg, *, out, **_):
        calls.append(out.name)
        if fail_on and fail_on in out.name:
            raise RuntimeError("boom")
        (out / "manifest.json").write_text("{}")
        (out / "results.json").write_text(json.dumps(_fake_results(cfg, 0.5)))
        return {}
    return run_fn


def test_crash_is_recorded_and_others_finish_then_collect_and_plot(tmp_path):
    spec = _spec(methods=["metarm"])
    calls: list[str] = []
    with pytest.raises(sweep.SweepFailed, match="1 run\\(s\\) failed: qa-metarm-beta=0.5-seed1"):
        sweep.run_sweep(spec, tmp_path, run_fn=_fake_run(calls, fail_on="beta=0.5-seed1"), log=lambda m: None)
    assert len(calls) == 8
    failed = next(tmp_path.glob("qa-metarm-beta=0.5-seed1-*"))
    assert "RuntimeError: boom" in (failed / "sweep_error.txt").read_text()
    # rerun: finished runs are skipped, the failed one is retried
    calls.clear()
    report = sweep.run_sweep(spec, tmp_path, run_fn=_fake_run(calls), log=lambda m: None)
    assert calls == [failed.name] and len(report.skipped) == 7 and report.finished == [failed.name]
    assert not (failed / "sweep_error.txt").exists()

    merged = sweep.collect(tmp_path)
    assert merged["axes"] == ["beta"] and len(merged["runs"]) == 8
    assert not merged["unfinished"] and not merged["pending"]
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["runs"][0]["grid"] == {"beta": 0.1}
    assert "rm_accuracy" not in saved["runs"][0]["aggregates"]["held_out"]  # not applicable: left out
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert len(rows) == 8 * 4  # 2 domains + macro held-out + macro in-distribution per run
    coffee = [r for r in rows if r["domain"] == "coffee" and r["beta"] == "2.0" and r["seed"] == "1"]
    assert float(coffee[0]["pl_accuracy"]) == pytest.approx(0.5 + 0.2 + 0.01)
    png = sweep.plot(merged, "beta", tmp_path / "sweep-beta.png", domains=["coffee", "stackoverflow"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UsageError, match="not a grid axis"):
        sweep.plot(merged, "alpha", tmp_path / "x.png")


def test_collect_lists_unfinished_and_pending(tmp_path):
    spec = _spec(methods=["metarm"], seeds=[0], grid={"beta": ["1", "2"]})
    sweep.run_sweep(spec, tmp_path, shard=(1, 2), run_fn=_fake_run([]), log=lambda m: None)
    merged = sweep.collect(tmp_path)
    assert len(merged["runs"]) == 1 and [p["grid"] for p in merged["pending"]] == [{"beta": 2.0}]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="no sweep runs"):
        sweep.collect(empty)


def test_smoke_sweep_shards_skip_resume_and_collect(smoke_env, capsys):
    """A tiny real grid: reference, 2 seeds, one held-out domain, split over 2 shards."""
    out = smoke_env / "sweep"
    args = ["sweep", "--methods", "reference", "--tasks", "qa", "--seeds", "0,1", "--profile", "smoke",
            "--domains", "coffee", "--no-in-distribution", "--out", str(out)]
    # shard 1/2 is killed after its first unit, then resumed by the same command
    spec = SweepSpec(methods=["reference"], tasks=["qa"], seeds=[0, 1], profile="smoke", domains=["coffee"],
                     in_distribution=False)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(spec, out, shard=(1, 2), log=lambda m: None,
                        run_fn=functools.partial(runner.run, stop_after_units=1))
    first = expand(spec)[0]
    assert sweep.run_state(first.directory(out)) == "unfinished"
    assert main(args + ["--shard", "1/2"]) == 0
    assert "resuming" in capsys.readouterr().err
    assert main(args + ["--shard", "2/2"]) == 0
    assert all(sweep.run_state(r.directory(out)) == "finished" for r in expand(spec))
    # everything finished: a rerun of the whole grid runs nothing
    assert main(args) == 0
    assert capsys.readouterr().err.count("finished, skipped") == 2
    assert main(["sweep", "--collect", "--out", str(out)]) == 0
    merged = json.loads((out / "sweep.json").read_text())
    assert [r["seed"] for r in merged["runs"]] == [0, 1]
    for r in merged["runs"]:
        assert r["aggregates"]["held_out"]["pl_accuracy"]["value"] == 0.5
        assert [d["domain"] for d in r["domains"]] == ["coffee"]
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert {(r["domain"], r["role"]) for r in rows} == {("coffee", "held_out"), ("macro", "held_out")}
