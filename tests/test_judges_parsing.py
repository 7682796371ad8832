"""Verdict parsers, judge configs, cache keys and judge id resolution (no server needed)."""

from __future__ import annotations

import pytest

from ood_pl_bench.errors import UsageError
from ood_pl_bench.judges import available_judges, resolve_judge
from ood_pl_bench.judges.cache import VerdictCache, verdict_key
from ood_pl_bench.judges.base import Verdict
from ood_pl_bench.judges.config import available_configs, load_config
from ood_pl_bench.judges.openai_judge import OpenAIJudge, RetryPolicy, parse_retry_after, redact
from ood_pl_bench.judges.parsing import get_parser, parse_json_winner, parse_output_ab, parse_token_12
from ood_pl_bench.registry import judges as judge_registry

from .judge_fixtures import FakeGold


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    monkeypatch.setenv("OODPL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OODPL_JUDGE_CONFIGS", raising=False)
    monkeypatch.delenv("OODPL_JUDGE_MODEL", raising=False)


@pytest.mark.parametrize("text,expected", [
    ("Output (a)", "A"), ("Output (b)", "B"), ("output (B)", "B"), ("## Output (a)", "A"),
    ("**Output (b)**", "B"), ("Output a", "A"), ("  Output (b).\n", "B"),
    ("Output (a) is better than Output (b)", "A"), ("I prefer Output (b) here.", "B"),
    ("Both Output (a) and Output (b) are fine", None), ("Neither", None), ("", None),
    ("Output (ab)", None), ("Outputs", None),
])
def test_output_ab_parser(text, expected):
    assert parse_output_ab(text) == expected


@pytest.mark.parametrize("text,expected", [
    ('{"winner": "a"}', "A"), ('{"winner": "B", "reason": "x"}', "B"), ('{"winner": 1}', "A"),
    ('{"winner": "2"}', "B"), ('{"winner": "tie"}', "tie"), ('```json\n{"Winner": "Output (b)"}\n```', "B"),
    ('Reasoning... {"preferred": "a"}', "A"), ('{"winner": "c"}', None), ('{"winner": null}', None),
    ('{"other": 1}', None), ("no json", None), ('{"winner": "a"', None),
])
def test_json_parser(text, expected):
    assert parse_json_winner(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("1", "A"), ("2", "B"), (" 2.", "B"), ('"1"', "A"), ("0", "tie"), ("tie", "tie"),
    ("12", None), ("1 because", None), ("3", None), ("", None),
])
def test_token_parser(text, expected):
    assert parse_token_12(text) == expected


def test_unknown_parser_has_did_you_mean():
    with pytest.raises(UsageError, match="Did you mean 'output_ab'"):
        get_parser("output_a")


def test_shipped_configs_load_and_render_safely():
    assert {"gpt-4o", "gpt-4o-mini", "local-openai-compatible"} <= set(available_configs())
    for name in ("gpt-4o", "gpt-4o-mini", "local-openai-compatible"):
        c = load_config(name)
        assert c.temperature == 0.0 and c.max_tokens >= 4 and c.parser == "output_ab"
        msgs = c.render("Why {output_2}?", "uses {instruction} literally", "plain")
        assert msgs[0]["role"] == "system" and msgs[-1]["role"] == "user"
        user = msgs[-1]["content"]
        assert "Why {output_2}?" in user and "uses {instruction} literally" in user
        assert user.index("uses {instruction}") < user.index("## Output (b)") < user.index("plain")
    assert load_config("gpt-4o").price(1_000_000, 1_000_000) == pytest.approx(12.5)
    assert load_config("gpt-4o-mini").price(1000, None) is None


def _write_config(folder, name, **over):
    import yaml

    data = {"model": "m", "parser": "json_winner", "version": "v7",
            "prompt": {"system": "s", "user": "## Output (a)\n{output_1}\n## Output (b)\n{output_2}\n{instruction}"},
            "decoding": {"temperature": 0.0, "max_tokens": 8}, "price": {"input_per_1m_tokens": 1.0,
                                                                          "output_per_1m_tokens": 2.0}}
    data.update(over)
    (folder / name).mkdir(parents=True)
    (folder / name / "config.yaml").write_text(yaml.safe_dump(data))


def test_user_configs_take_precedence_and_are_validated(tmp_path, monkeypatch):
    monkeypatch.setenv("OODPL_JUDGE_CONFIGS", str(tmp_path))
    _write_config(tmp_path, "gpt-4o", model="my-own")
    _write_config(tmp_path, "no-placeholder", prompt={"user": "{output_1} {output_2}"})
    _write_config(tmp_path, "typo-key", modle="x")
    assert load_config("gpt-4o").model == "my-own"
    with pytest.raises(UsageError, match=r"\{instruction\}"):
        load_config("no-placeholder")
    with pytest.raises(UsageError, match="unknown keys"):
        load_config("typo-key")
    with pytest.raises(UsageError, match="Did you mean 'gpt-4o'"):
        load_config("gpt-40")


def test_template_hash_and_fingerprint_follow_the_prompt(tmp_path, monkeypatch):
    monkeypatch.setenv("OODPL_JUDGE_CONFIGS", str(tmp_path))
    _write_config(tmp_path, "one")
    _write_config(tmp_path, "two", prompt={"system": "s", "user": "X {output_1} {output_2} {instruction}"})
    _write_config(tmp_path, "three", decoding={"temperature": 0.0, "max_tokens": 9})
    one, two, three = load_config("one"), load_config("two"), load_config("three")
    assert one.template_sha256 != two.template_sha256 and one.fingerprint != two.fingerprint
    assert one.template_sha256 == three.template_sha256 and one.fingerprint != three.fingerprint


def test_verdict_key_changes_with_every_input():
    base = dict(model="m", version="v1", template_sha256="t", parser="output_ab",
                decoding={"temperature": 0.0, "max_tokens": 16}, prompt="x", text_a="a", text_b="b",
                order="policy_first", seed=0)
    k = verdict_key(**base)
    assert k == verdict_key(**dict(base))
    for field, value in [("model", "m2"), ("version", "v2"), ("template_sha256", "t2"), ("parser", "json_winner"),
                         ("decoding", {"temperature": 0.5, "max_tokens": 16}), ("prompt", "y"), ("text_a", "b"),
                         ("text_b", "a"), ("order", "reference_first"), ("seed", 1)]:
        assert verdict_key(**{**base, field: value}) != k, field


def test_cache_commits_each_verdict_and_survives_reopen(tmp_path):
    path = tmp_path / "v.sqlite"
    c1 = VerdictCache(path)
    c1.put("k1", Verdict("A", "Output (a)", True, price=0.001, latency=0.2, attempts=2, input_tokens=5,
                         output_tokens=3), judge_id="j", model="m", version="v1", template_sha256="t",
           order="policy_first")
    c2 = VerdictCache(path)  # a second connection (another process) sees it at once
    got = c2.get("k1")
    assert got is not None and got.cached and got.winner == "A" and got.attempts == 2 and got.price == 0.001
    assert c2.get("missing") is None and len(c2) == 1 and c2.count("j") == 1 and c2.count("other") == 0
    mode = c2._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    c1.close()
    c2.close()


def test_retry_policy_backoff_and_retry_after():
    import random

    p = RetryPolicy(max_attempts=5, backoff_base=1.0, backoff_max=4.0, max_retry_after=10.0)
    rng = random.Random(0)
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0)]:
        for _ in range(20):
            assert cap / 2 <= p.delay(attempt, None, rng) <= cap
    assert p.delay(1, 7.0, rng) == 7.0
    assert p.delay(1, 100.0, rng) == 10.0
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


def test_redact_hides_key_and_base_url(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdef123456")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://secret-host:9999/v1/")
    text = redact("key sk-live-abcdef123456 at http://secret-host:9999/v1/chat and sk-other-zzzzzzzz")
    assert "abcdef123456" not in text and "secret-host" not in text and "zzzzzzzz" not in text
    assert "[OPENAI_API_KEY]" in text and "[OPENAI_BASE_URL]" in text


def test_judges_are_entry_point_plugins():
    assert {"openai", "proxy"} <= set(judge_registry.names())
    ids = [name for name, _ in available_judges()]
    assert {"openai", "proxy", "gpt-4o", "gpt-4o-mini", "local-openai-compatible"} <= set(ids)


def test_resolve_openai_ids_and_configs(monkeypatch):
    j = resolve_judge("openai:gpt-4o", cache=False)
    assert isinstance(j, OpenAIJudge) and j.config.name == "gpt-4o"
    assert j.judge_id.startswith("openai:gpt-4o-2024-08-06@v1-")
    assert resolve_judge("gpt-4o", cache=False).judge_id == j.judge_id
    back = resolve_judge(j.judge_id, cache=False)  # an id printed in results resolves to the same judge
    assert back.judge_id == j.judge_id and back.config.name == "gpt-4o"
    other = resolve_judge("openai:my-served-model", cache=False, concurrency=3, timeout=2.5)
    assert other.model == "my-served-model" and other.config.price_input_per_1m is None
    assert other.concurrency == 3 and other.timeout == 2.5
    assert other.judge_id.startswith("openai:my-served-model@")
    with pytest.raises(UsageError, match="names no model"):
        resolve_judge("local-openai-compatible", cache=False)
    monkeypatch.setenv("OODPL_JUDGE_MODEL", "llama-3-8b")
    local = resolve_judge("local-openai-compatible", cache=False)
    assert local.model == "llama-3-8b" and local.config.price(10, 10) == 0.0
    with pytest.raises(UsageError, match="does not match"):
        resolve_judge("openai:gpt-4o@v1-00000000", cache=False)
    with pytest.raises(UsageError, match="needs a model"):
        resolve_judge("openai:", cache=False)


@pytest.mark.parametrize("bad,hint", [("opnai:gpt-4o", "openai:gpt-4o"), ("gpt4o", "gpt-4o"), ("proxi", "proxy")])
def test_unknown_judge_ids_have_did_you_mean(bad, hint):
    with pytest.raises(UsageError, match=f"Did you mean '{hint}'"):
        resolve_judge(bad)


def test_resolve_proxy_needs_gold_and_names_its_revision():
    with pytest.raises(UsageError, match="gold reward model"):
        resolve_judge("proxy")
    gold = FakeGold("abc123")
    judge = resolve_judge("proxy", gold=gold, concurrency=4)  # API options are ignored
    assert judge.judge_id == "proxy:gold-rm@abc123"
    assert resolve_judge("proxy:gold-rm@abc123", gold=gold).judge_id == judge.judge_id
    with pytest.raises(UsageError, match="revision"):
        resolve_judge("proxy:gold-rm@zzz", gold=gold)
    lazy = resolve_judge("proxy", gold=lambda: FakeGold("lazy1"))  # a loader is called on first use
    assert lazy.judge_id == "proxy:gold-rm@lazy1"
