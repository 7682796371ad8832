"""The OpenAI-compatible judge against a real HTTP server on 127.0.0.1, through the real openai client.

Verdict parsing, order swapping, cache hits, concurrency, and faults: 429 with Retry-After, 5xx,
timeouts, malformed bodies, dropped connections, a server killed mid-run and restarted.
"""

from __future__ import annotations

import json
import logging

import pytest

from ood_pl_bench.errors import JudgeError, UsageError
from ood_pl_bench.judges import JudgeItem, resolve_judge
from ood_pl_bench.judges.cache import VerdictCache
from ood_pl_bench.judges.win_rate import judge_domain, win_rate_key

from .judge_fixtures import API_KEY, FAST, ServerProcess, free_port, generation_rows, make_prompts, scan_for
from .judge_fixtures import judge_env, server  # noqa: F401  (fixtures)

ITEMS = [
    JudgeItem("Say something nice.", "a good good answer", "a bad answer", "policy_first", 0, "p0/pf"),
    JudgeItem("Say something nice.", "a bad answer", "a good good answer", "reference_first", 0, "p0/rf"),
]


def _judge(judge_id="openai:gpt-4o", **kw):
    return resolve_judge(judge_id, **{**FAST, **kw})


def test_verdicts_through_the_real_client(judge_env):
    judge = _judge(concurrency=2)
    verdicts = judge.compare(ITEMS)
    assert [v.winner for v in verdicts] == ["A", "B"]
    assert all(v.parse_ok and not v.cached and v.attempts == 1 for v in verdicts)
    assert verdicts[0].raw == "Output (a)" and verdicts[0].output_tokens == 3
    tin = verdicts[0].input_tokens
    assert tin > 0 and verdicts[0].price == pytest.approx((tin * 2.5 + 3 * 10.0) / 1e6)
    assert verdicts[0].latency > 0
    body = judge_env.state.bodies[0]
    assert body["model"] == "gpt-4o-2024-08-06" and body["temperature"] == 0.0
    assert body["max_tokens"] == 16 and body["seed"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "a good good answer" in body["messages"][1]["content"]
    u = judge.usage
    assert (u.verdicts, u.calls, u.cached, u.retries, u.unparseable) == (2, 2, 0, 0, 0)
    assert u.price_usd == pytest.approx(sum(v.price for v in verdicts)) and u.latency_s > 0
    judge.close()


@pytest.mark.parametrize("fmt,parser", [("json", "json_winner"), ("token", "token_12")])
def test_other_parsers_end_to_end(judge_env, tmp_path, monkeypatch, fmt, parser):
    import yaml

    folder = tmp_path / "configs" / f"fake-{fmt}"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "model": "fake-model", "parser": parser, "version": "v1", "api_key_required": True,
        "decoding": {"temperature": 0.0, "max_tokens": 8, "send_seed": False},
        "prompt": {"user": "{instruction}\n\n## Output (a)\n\n{output_1}\n\n## Output (b)\n\n{output_2}\n\n## End"}}))
    monkeypatch.setenv("OODPL_JUDGE_CONFIGS", str(tmp_path / "configs"))
    judge_env.state.fmt = fmt
    judge = _judge(f"fake-{fmt}")
    assert [v.winner for v in judge.compare(ITEMS)] == ["A", "B"]
    body = judge_env.state.bodies[0]
    assert "seed" not in body and [m["role"] for m in body["messages"]] == ["user"]
    assert judge.usage.price_unknown == 2 and judge.usage.price_usd == 0.0  # no price in this config
    judge.close()


def test_unparseable_verdicts_are_recorded_counted_and_cached(judge_env):
    items = [JudgeItem("q", "[[confuse]] x", "y", "policy_first"), JudgeItem("q", "y", "[[confuse]] x", "reference_first")]
    judge = _judge()
    verdicts = judge.compare(items)
    assert [(v.winner, v.parse_ok) for v in verdicts] == [(None, False), (None, False)]
    assert "cannot decide" in verdicts[0].raw and judge.usage.unparseable == 2
    before = judge_env.state.requests
    again = _judge().compare(items)
    assert judge_env.state.requests == before and all(v.cached and v.winner is None for v in again)


def _domain(n=6):
    prompts = make_prompts(n)
    policy = generation_rows(prompts, [f"good answer {i}" if i % 3 else f"bad answer {i}" for i in range(n)])
    reference = generation_rows(prompts, [f"plain answer {i}" for i in range(n)])
    return prompts, policy, reference


def test_order_swapping_and_position_bias(judge_env):
    prompts, policy, reference = _domain()
    rows, metrics = judge_domain(_judge(concurrency=4), prompts, policy, reference, n_resamples=100)
    judge_id = rows[0]["judge"]
    wr = metrics[win_rate_key(judge_id)]
    # 4 good policy answers win in both orders; 2 bad ones lose in both orders
    assert (wr["wins"], wr["ties"], wr["losses"], wr["inconsistent"]) == (4, 0, 2, 0)
    assert wr["value"] == pytest.approx(4 / 6) and judge_env.state.requests == 12
    # the same judge model made position-biased: every pair disagrees with itself -> all ties
    judge_env.state.position_bias = True
    rows_b, metrics_b = judge_domain(_judge(cache=False), prompts, policy, reference, n_resamples=100)
    wr_b = metrics_b[win_rate_key(judge_id)]
    assert wr_b["value"] == 0.5 and wr_b["ties"] == 6 and wr_b["inconsistency_rate"] == 1.0
    assert {r["status"] for r in rows_b} == {"inconsistent"}


def test_rerun_makes_zero_api_calls(judge_env):
    prompts, policy, reference = _domain()
    rows1, m1 = judge_domain(_judge(), prompts, policy, reference, n_resamples=100)
    calls = judge_env.state.requests
    assert calls == 12
    judge2 = _judge()
    rows2, m2 = judge_domain(judge2, prompts, policy, reference, n_resamples=100)
    assert judge_env.state.requests == calls  # zero calls on rerun
    assert judge2.usage.calls == 0 and judge2.usage.cached == 12 and judge2.usage.price_usd == 0.0
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("policy_first", "reference_first")} for r in rows]
    assert strip(rows1) == strip(rows2)
    key = next(iter(m1))
    assert m1[key]["value"] == m2[key]["value"] and m1[key]["price_usd"] == m2[key]["price_usd"]
    # anything that changes a verdict misses the cache: the seed here
    judge_domain(_judge(), prompts, policy, reference, seed=1, n_resamples=0)
    assert judge_env.state.requests == calls + 12


def test_duplicate_items_in_one_batch_cost_one_call(judge_env):
    judge = _judge()
    verdicts = judge.compare([ITEMS[0], ITEMS[0], ITEMS[1]])
    assert judge_env.state.requests == 2
    assert [v.cached for v in verdicts] == [False, True, False] and judge.usage.calls == 2


def test_concurrency_is_limited(judge_env):
    judge_env.state.latency = 0.05
    items = [JudgeItem(f"q{i}", "good", "bad") for i in range(12)]
    judge = _judge(concurrency=3)
    judge.compare(items)
    assert 2 <= judge_env.state.max_in_flight <= 3
    assert judge.usage.wall_s < 12 * 0.05 + 2


def test_429_waits_for_retry_after(judge_env):
    judge_env.state.faults = ["429"]
    judge_env.state.retry_after = "0.4"
    verdicts = _judge().compare(ITEMS[:1])
    assert verdicts[0].winner == "A" and verdicts[0].attempts == 2
    (t0, f0), (t1, f1) = judge_env.state.times
    assert (f0, f1) == ("429", "ok") and t1 - t0 >= 0.38  # backoff alone would be ~5 ms


@pytest.mark.parametrize("fault", ["500", "503", "malformed", "html", "empty", "drop"])
def test_transient_faults_are_retried(judge_env, fault):
    judge_env.state.faults = [fault, fault]
    judge = _judge()
    verdicts = judge.compare(ITEMS)
    assert [v.winner for v in verdicts] == ["A", "B"]
    assert sum(v.attempts for v in verdicts) == 4 and judge.usage.retries == 2


def test_timeouts_are_retried(judge_env):
    judge_env.state.faults = ["timeout"]
    judge_env.state.timeout_sleep = 1.5
    judge = _judge(timeout=0.4)
    verdicts = judge.compare(ITEMS[:1])
    assert verdicts[0].winner == "A" and verdicts[0].attempts >= 2
    assert judge_env.state.times[0][1] == "timeout"


def test_persistent_failure_raises_and_keeps_finished_verdicts(judge_env, tmp_path):
    cache = tmp_path / "v.sqlite"
    _judge(cache=cache).compare(ITEMS[:1])
    judge_env.state.faults = ["500"] * 50
    with pytest.raises(JudgeError, match="failed after 3 attempts; last error: HTTP 500") as info:
        _judge(cache=cache, max_attempts=3).compare(ITEMS)
    assert info.value.exit_code == 6
    assert judge_env.state.requests == 1 + 3  # the cached item was not asked again
    with VerdictCache(cache) as c:
        assert len(c) == 1


def test_client_errors_are_not_retried_and_secrets_are_redacted(judge_env, monkeypatch):
    judge_env.state.faults = ["400"]
    with pytest.raises(JudgeError, match="HTTP 400 .not retried.*context length"):
        _judge().compare(ITEMS[:1])
    assert judge_env.state.requests == 1
    wrong = "sk-wrong-key-9876543210zyxwv"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    with pytest.raises(JudgeError, match="HTTP 401") as info:
        _judge().compare(ITEMS[:1])
    assert wrong not in info.value.message and "9876543210" not in info.value.message
    assert judge_env.state.unauthorized == 1  # a bad key is not retried


def test_unreachable_server_message_has_no_secrets(judge_env, monkeypatch):
    base = f"http://127.0.0.1:{free_port()}/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", base)
    with pytest.raises(JudgeError, match="connection failed") as info:
        _judge(max_attempts=2).compare(ITEMS[:1])
    assert base not in info.value.message and API_KEY not in info.value.message


def test_api_key_needed_only_for_new_calls(judge_env, monkeypatch):
    _judge().compare(ITEMS)
    monkeypatch.delenv("OPENAI_API_KEY")
    assert [v.winner for v in _judge().compare(ITEMS)] == ["A", "B"]  # all cached: no key needed
    with pytest.raises(UsageError, match="OPENAI_API_KEY"):
        _judge().compare([JudgeItem("new", "a", "b")])


def test_local_server_without_key(judge_env, monkeypatch):
    judge_env.state.api_key = None  # a local vLLM/llama.cpp server that takes no key
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("OODPL_JUDGE_MODEL", "served-llama")
    judge = _judge("local-openai-compatible")
    assert [v.winner for v in judge.compare(ITEMS)] == ["A", "B"]
    assert judge_env.state.bodies[0]["model"] == "served-llama" and judge.usage.price_usd == 0.0
    assert judge.judge_id.startswith("openai:served-llama@v1-")


def test_server_killed_mid_run_then_restarted(judge_env, tmp_path, monkeypatch):
    prompts, policy, reference = _domain(10)
    # the fault-free run (thread server, its own cache)
    rows_ref, metrics_ref = judge_domain(_judge(cache=tmp_path / "ref.sqlite"), prompts, policy, reference,
                                         n_resamples=0)
    cache = tmp_path / "run.sqlite"
    port = free_port()
    proc = ServerProcess(port, "--die-after", "7", "--latency", "0.02")
    try:
        monkeypatch.setenv("OPENAI_BASE_URL", proc.base_url)
        with pytest.raises(JudgeError, match="connection failed"):
            judge_domain(_judge(cache=cache, concurrency=2, max_attempts=3), prompts, policy, reference)
        assert proc.wait_exit() == 0  # it crashed (os._exit) while requests were in flight
    finally:
        proc.stop()
    with VerdictCache(cache) as c:
        finished = len(c)
    assert 1 <= finished <= 7  # every verdict finished before the crash was committed
    proc = ServerProcess(port, "--latency", "0.0")  # restarted on the same address
    try:
        judge = _judge(cache=cache, concurrency=2)
        rows, metrics = judge_domain(judge, prompts, policy, reference, n_resamples=0)
        assert proc.stats()["requests"] == 20 - finished  # only the missing verdicts were asked
        assert judge.usage.cached == finished
    finally:
        proc.stop()
    verdicts = lambda rs: [(r["policy_first"]["winner"], r["policy_first"]["raw"], r["reference_first"]["winner"],
                            r["reference_first"]["raw"], r["outcome"]) for r in rs]
    assert verdicts(rows) == verdicts(rows_ref)
    assert {k: m["value"] for k, m in metrics.items()} == {k: m["value"] for k, m in metrics_ref.items()}


def test_no_output_file_or_log_contains_the_api_key(judge_env, tmp_path):
    log_file = tmp_path / "out" / "debug.log"
    log_file.parent.mkdir()
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        judge_env.state.faults = ["429", "500", "malformed", "drop"]
        prompts, policy, reference = _domain(4)
        rows, metrics = judge_domain(_judge(cache=tmp_path / "out" / "v.sqlite"), prompts, policy, reference,
                                     n_resamples=0)
        (tmp_path / "out" / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
        (tmp_path / "out" / "metrics.json").write_text(json.dumps(metrics))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    assert log_file.stat().st_size > 0  # the client did log at debug level
    assert list((tmp_path / "out").glob("v.sqlite*"))
    assert scan_for(tmp_path / "out", API_KEY) == []
    assert scan_for(tmp_path / "out", judge_env.base_url) == []
