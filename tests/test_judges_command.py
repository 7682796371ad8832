"""``oodpl judge RUN_DIR --judge ID`` on a synthetic finished run (proxy and API judges)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from ood_pl_bench.errors import DataError, UsageError
from ood_pl_bench.io import read_json, sha256_file, write_json, write_jsonl
from ood_pl_bench.judges.command import judge_command, judge_run, judge_slug
from ood_pl_bench.judges.win_rate import (
    aggregate_judgements, judge_ids_of, judgement_metrics, lc_win_rate_key, win_rate_key, win_rate_report,
)
from ood_pl_bench.results import RunResults

from .judge_fixtures import API_KEY, FAST, FakeGold, generation_rows, make_prompts, scan_for
from .judge_fixtures import judge_env, server  # noqa: F401  (fixtures)

DOMAINS = ("alpha", "beta")


def _metric(value=0.5, n=4):
    return {"value": value, "ci_low": None, "ci_high": None, "n": n, "applicable": True, "ci_method": None}


def make_run(run_dir, n=4, with_reference=True):
    """A finished run directory as the runner writes it: results, domain payloads, generations."""
    prompts = {}
    domains = []
    for i, d in enumerate(DOMAINS):
        prompts[d] = make_prompts(n, d)
        policy = generation_rows(prompts[d], [("good " * (j % 3)) + f"answer {j}" for j in range(n)])
        reference = generation_rows(prompts[d], [f"plain reference {j}" for j in range(n)])
        write_jsonl(run_dir / f"samples/held_out/{d}.generations.jsonl", policy)
        if with_reference:
            write_jsonl(run_dir / f"samples/held_out/{d}.reference_generations.jsonl", reference)
        rel = f"samples/held_out/{d}.generations.jsonl"
        payload = {"domain": d, "task": "qa", "fold": "f0", "role": "held_out",
                   "metrics": {"gold_reward": _metric(0.1)}, "n_test_pairs": 0, "n_eval_prompts": n,
                   "samples": {"generations": {"path": rel, "sha256": sha256_file(run_dir / rel), "rows": n}},
                   "wall_time_s": 1.0}
        write_json(run_dir / "domains" / "held_out" / f"{d}.json", payload)
        domains.append(payload)
    domains.append({"domain": "gamma", "task": "qa", "fold": "f0", "role": "source",
                    "metrics": {"pl_accuracy": _metric()}, "n_test_pairs": 4})
    results = {
        "schema_version": "1.0", "suite_version": "0.1.0", "task": "qa", "edition": "se-amazon",
        "data_version": "1", "data_hash": "abc", "profile": "smoke", "reduced": True, "method": "reference",
        "method_config": {}, "seed": 0, "models": {}, "judge": None, "protocol": {}, "package_versions": {},
        "git_commit": None, "device": "cpu", "phase_times_s": {"training": 1.0}, "wall_time_s": 2.0,
        "created_at": "2025-01-01T00:00:00+00:00", "domains": domains,
        "aggregates": {"held_out": {"gold_reward": _metric(0.1, 2)}, "in_distribution": {}, "gap": {}},
    }
    RunResults.model_validate(results)
    write_json(run_dir / "results.json", results)
    return prompts


def test_proxy_judge_adds_its_own_columns(tmp_path):
    prompts = make_run(tmp_path)
    gold = FakeGold("g1")
    summary = judge_run(tmp_path, "proxy", prompts=prompts, gold=gold, n_resamples=100)
    jid = "proxy:gold-rm@g1"
    assert summary["judge"] == jid and summary["info"]["kind"] == "proxy"
    results = read_json(tmp_path / "results.json")
    RunResults.model_validate(results)
    assert results["judge"] == jid
    for entry in results["domains"]:
        if entry["role"] != "held_out":
            assert win_rate_key(jid) not in entry["metrics"]
            continue
        wr = entry["metrics"][win_rate_key(jid)]
        # answers 0 and 3 have no "good" (tie with the reference), 1 and 2 win
        assert wr["value"] == pytest.approx(0.75) and wr["judge"] == jid and wr["inconsistent"] == 0
        assert lc_win_rate_key(jid) in entry["metrics"] and "gold_reward" in entry["metrics"]
        sample = entry["samples"][f"judgements[{jid}]"]
        path = tmp_path / sample["path"]
        assert path.name == f"{entry['domain']}.judgements.{judge_slug(jid)}.jsonl"
        assert sha256_file(path) == sample["sha256"] and sample["rows"] == 4
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert win_rate_report(rows, n_resamples=100)["win_rate"] == {k: v for k, v in wr.items() if k != "judge"}
        payload = read_json(tmp_path / "domains" / "held_out" / f"{entry['domain']}.json")
        assert payload["metrics"][win_rate_key(jid)] == wr  # a resumed `oodpl run` keeps the column
    agg = results["aggregates"]["held_out"]
    assert agg[win_rate_key(jid)]["value"] == pytest.approx(0.75) and agg[win_rate_key(jid)]["n"] == 2
    assert "gold_reward" in agg and results["phase_times_s"]["training"] == 1.0
    # rejudging with the same judge replaces its columns with the same numbers (timings aside)
    def numbers(res):
        return {d["domain"]: {k: {f: v for f, v in m.items() if f != "judge_time_s"} for k, m in d["metrics"].items()}
                for d in res["domains"]}

    judge_run(tmp_path, "proxy", prompts=prompts, gold=FakeGold("g1"), n_resamples=100)
    assert numbers(read_json(tmp_path / "results.json")) == numbers(results)


def test_api_judge_gets_a_separate_column_and_reruns_from_cache(judge_env, tmp_path):
    run = tmp_path / "run"
    prompts = make_run(run)
    judge_run(run, "proxy", prompts=prompts, gold=FakeGold("g1"), n_resamples=50)
    summary = judge_run(run, "openai:gpt-4o", concurrency=4, prompts=prompts, judge_options=FAST, n_resamples=50)
    jid = summary["judge"]
    assert jid.startswith("openai:gpt-4o-2024-08-06@v1-") and judge_env.state.requests == 16
    assert summary["usage"]["calls"] == 16 and summary["usage"]["price_usd"] > 0
    results = read_json(run / "results.json")
    assert results["judge"] == "proxy:gold-rm@g1"  # the first judge stays the run's judge
    held = [d for d in results["domains"] if d["role"] == "held_out"]
    for entry in held:
        assert win_rate_key(jid) in entry["metrics"] and win_rate_key("proxy:gold-rm@g1") in entry["metrics"]
        assert entry["metrics"][win_rate_key(jid)]["value"] == pytest.approx(0.75)
        assert entry["metrics"][win_rate_key(jid)]["price_usd"] > 0
    again = judge_run(run, "openai:gpt-4o", concurrency=4, prompts=prompts, judge_options=FAST, n_resamples=50)
    assert judge_env.state.requests == 16 and again["usage"]["calls"] == 0 and again["usage"]["cached"] == 16
    assert again["aggregate"][win_rate_key(jid)]["value"] == summary["aggregate"][win_rate_key(jid)]["value"]
    assert scan_for(tmp_path, API_KEY) == []
    assert scan_for(tmp_path, judge_env.base_url) == []


def test_refuses_runs_it_cannot_judge(tmp_path):
    with pytest.raises(UsageError, match="not a finished run"):
        judge_run(tmp_path, "proxy", gold=FakeGold())
    prompts = make_run(tmp_path / "noref", with_reference=False)
    with pytest.raises(DataError, match="reference generations"):
        judge_run(tmp_path / "noref", "proxy", prompts=prompts, gold=FakeGold())
    prompts = make_run(tmp_path / "changed")
    prompts["alpha"][0] = {**prompts["alpha"][0], "prompt": "an edited prompt"}
    with pytest.raises(DataError, match="differs"):
        judge_run(tmp_path / "changed", "proxy", prompts=prompts, gold=FakeGold())
    with pytest.raises(UsageError, match="Did you mean 'proxy'"):
        judge_run(tmp_path / "changed", "proxx", prompts={d: make_prompts(4, d) for d in DOMAINS})


def test_typer_command(judge_env, tmp_path, monkeypatch):
    import ood_pl_bench.judges.command as command

    run = tmp_path / "run"
    prompts = make_run(run)
    monkeypatch.setattr(command, "_edition_prompts", lambda results, domains, data_dir: prompts)
    app = typer.Typer()
    app.command("judge")(judge_command)
    app.command("noop")(lambda: None)  # a second command keeps "judge" a subcommand
    result = CliRunner().invoke(app, ["judge", str(run), "--judge", "openai:gpt-4o", "--concurrency", "3",
                                      "--timeout", "5", "--max-attempts", "3", "--cache", str(tmp_path / "c.sqlite")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "macro held-out" in result.output and "16 API calls" in result.output
    assert (tmp_path / "c.sqlite").is_file()


def test_runner_side_recomputation_matches(judge_env, tmp_path):
    """What the runner's assemble_results and `oodpl validate` recompute from the per-sample files."""
    from ood_pl_bench.runner import load_domain_payloads, load_rows

    prompts = make_run(tmp_path)
    judge_run(tmp_path, "proxy", prompts=prompts, gold=FakeGold("g1"))
    judge_run(tmp_path, "openai:gpt-4o", prompts=prompts, judge_options=FAST)
    results = read_json(tmp_path / "results.json")
    payloads = load_domain_payloads(tmp_path, "held_out")
    rows = {d: load_rows(tmp_path, p) for d, p in payloads.items()}
    agg = aggregate_judgements(rows)
    assert len(agg) == 4  # win_rate and lc_win_rate for two judges
    for key, m in agg.items():
        assert m == results["aggregates"]["held_out"][key]
    for d, p in payloads.items():
        assert len(judge_ids_of(p["samples"])) == 2
        for jid in judge_ids_of(p["samples"]):
            for key, m in judgement_metrics(jid, rows[d][f"judgements[{jid}]"]).items():
                assert m == p["metrics"][key]
    # a judge that skipped a domain is not averaged over the others
    rows["alpha"].pop("judgements[proxy:gold-rm@g1]")
    partial = aggregate_judgements(rows)
    assert partial[win_rate_key("proxy:gold-rm@g1")]["applicable"] is False
    assert "alpha" in partial[win_rate_key("proxy:gold-rm@g1")]["reason"]
