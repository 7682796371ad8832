"""Reference caches: computed once, keyed by everything they depend on, resumable after a kill."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from ood_pl_bench.models import cache as C
from ood_pl_bench.models.policy import Policy
from ood_pl_bench.models.resolve import resolve_policy
from ood_pl_bench.tasks import Decoding, get_task

DEC = Decoding(max_new_tokens=6)
PROMPTS = [{"prompt_id": f"p{i}", "prompt": f"Question number {i}: how do I {w}?"}
           for i, w in enumerate(["brew coffee", "learn Italian", "fix my code", "grow hops", "sleep"])]
PAIRS = [{"pair_id": f"q{i}", "prompt": p["prompt"], "chosen": f"Good answer {i}.", "rejected": "Bad."}
         for i, p in enumerate(PROMPTS)]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache-models")


@pytest.fixture(scope="module")
def policy(model_cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OODPL_CACHE", str(model_cache))
        task = dataclasses.replace(get_task("qa"), max_prompt_tokens=32, max_response_tokens=16)
        return Policy(resolve_policy("tiny-llama"), task, dtype="fp32")


@pytest.fixture
def counted(policy, tmp_path, monkeypatch):
    """A fresh cache root per test; counts the policy's generate / scoring calls."""
    monkeypatch.setenv("OODPL_CACHE", str(tmp_path / "cache"))
    calls = {"generate": 0, "generated_prompts": 0, "score": 0}
    generate, score, score_pairs = policy.generate, policy.sequence_logprobs, policy.pair_logprobs

    def counting_generate(prompts, *args, **kwargs):
        calls["generate"] += 1
        calls["generated_prompts"] += len(prompts)
        return generate(prompts, *args, **kwargs)

    def counting_score(*args, **kwargs):
        calls["score"] += 1
        return score(*args, **kwargs)

    monkeypatch.setattr(policy, "generate", counting_generate)
    def counting_pair_score(*args, **kwargs):
        calls["score"] += 1
        return score_pairs(*args, **kwargs)

    monkeypatch.setattr(policy, "sequence_logprobs", counting_score)
    monkeypatch.setattr(policy, "pair_logprobs", counting_pair_score)
    return calls


def samples(policy, prompts=PROMPTS, **kw):
    args = dict(k=2, decoding=DEC, seed=0, data_hash="h1", domain="beer", split="train")
    args.update(kw)
    return C.reference_samples(policy, prompts, **args)


def test_reference_samples_cached_and_exact(policy, counted, tmp_path):
    rows = samples(policy)
    assert [r["prompt_id"] for r in rows] == [p["prompt_id"] for p in PROMPTS]
    assert all(len(r["samples"]) == 2 for r in rows)
    assert counted["generate"] == 1 and counted["score"] == 1
    # ref_logprob is log π_ref of the sample with the scoring truncation (no EOS if unfinished).
    flat = [(r["prompt"], s) for r in rows for s in r["samples"]]
    expected = policy.sequence_logprobs([p for p, _ in flat], [s["text"] for _, s in flat], reference=True,
                                        eos=[s["finished"] for _, s in flat])
    torch.testing.assert_close(torch.tensor([s["ref_logprob"] for _, s in flat]), expected, rtol=1e-5, atol=1e-5)
    counted.update(generate=0, score=0)

    assert samples(policy) == rows  # second call: read from disk, nothing computed
    assert counted["generate"] == 0 and counted["score"] == 0
    assert samples(policy, prompts=PROMPTS[::-1]) == rows[::-1]
    assert counted["generate"] == 0

    folders = list((tmp_path / "cache" / "reference").iterdir())
    assert len(folders) == 1 and (folders[0] / "key.json").is_file() and (folders[0] / "beer.train.jsonl").is_file()


def test_key_changes_with_decoding_seed_k_data_and_truncation(policy, counted):
    def key(p=policy, k=2, decoding=DEC, seed=0, data_hash="h1", batch_size=8):
        return C.samples_cache_key(p, k=k, decoding=decoding, seed=seed, data_hash=data_hash,
                                   batch_size=batch_size)[0]

    base_key = key()
    # batch size: bf16 padding can flip a sampled token, so it is part of what the values depend on
    variants = [key(decoding=dataclasses.replace(DEC, temperature=0.7)), key(seed=1), key(k=3),
                key(data_hash="h2"), key(batch_size=16)]
    assert len({base_key, *variants}) == 6
    truncated = SimpleNamespace(resolved=policy.resolved, dtype=policy.dtype, prompt_format=policy.prompt_format,
                                task=dataclasses.replace(policy.task, max_response_tokens=8))
    bf16 = SimpleNamespace(**dict(vars(truncated), task=policy.task, dtype="bf16"))
    assert key(p=bf16) != base_key and key(p=truncated) != base_key
    pairs_key = C.pairs_cache_key(policy, data_hash="h1", batch_size=8)[0]
    assert C.pairs_cache_key(truncated, data_hash="h1", batch_size=8)[0] != pairs_key
    assert C.pairs_cache_key(policy, data_hash="h1", batch_size=4)[0] != pairs_key

    first = samples(policy)
    assert samples(policy, seed=1) != first
    assert counted["generate"] == 2  # a new seed is a new cache entry
    samples(policy, decoding=dataclasses.replace(DEC, max_new_tokens=4))
    assert counted["generate"] == 3


def test_partial_progress_survives_a_kill(policy, counted, monkeypatch):
    monkeypatch.setattr(C, "SAMPLE_CHUNK", 2)
    generate = policy.generate

    def dies_on_second_chunk(prompts, *args, **kwargs):
        if counted["generate"] >= 1:
            raise KeyboardInterrupt("killed")
        return generate(prompts, *args, **kwargs)

    monkeypatch.setattr(policy, "generate", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        samples(policy)
    monkeypatch.setattr(policy, "generate", generate)  # the counting wrapper again
    done = counted["generated_prompts"]
    assert done == 2  # one chunk finished and was written before the kill
    rows = samples(policy)
    assert counted["generated_prompts"] - done == len(PROMPTS) - 2  # only the rest is computed
    # Samples do not depend on how the prompts were chunked.
    monkeypatch.setenv("OODPL_CACHE", str(C.cache_dir().parent / "fresh"))
    monkeypatch.setattr(C, "SAMPLE_CHUNK", 32)
    assert samples(policy) == rows


def test_pair_logprobs_cached_and_use_the_reference(policy, counted, perturbed_policy_state):
    out = C.reference_pair_logprobs(policy, PAIRS, data_hash="h1", domain="beer", split="test")
    assert list(out) == [p["pair_id"] for p in PAIRS] and counted["score"] == 1
    prompts = [p["prompt"] for p in PAIRS]
    chosen = policy.sequence_logprobs(prompts, [p["chosen"] for p in PAIRS], reference=True)
    torch.testing.assert_close(torch.tensor([out[p["pair_id"]][0] for p in PAIRS]), chosen, rtol=1e-5, atol=1e-5)
    counted["score"] = 0
    assert C.reference_pair_logprobs(policy, PAIRS[:3], data_hash="h1", domain="beer", split="test") == \
        {k: out[k] for k in ("q0", "q1", "q2")}
    assert counted["score"] == 0
    # An edited pair under the same id is recomputed; adapters never leak into reference values.
    policy.load_adapter_state(perturbed_policy_state)
    edited = [dict(PAIRS[0], rejected="Worse.")] + PAIRS[1:]
    again = C.reference_pair_logprobs(policy, edited, data_hash="h1", domain="beer", split="test")
    assert counted["score"] == 1 and again["q0"][0] == pytest.approx(out["q0"][0], abs=1e-5)
    assert again["q0"][1] != out["q0"][1] and again["q1"] == out["q1"]
    assert C.reference_pair_logprobs(policy, PAIRS, data_hash="h2", domain="beer", split="test") is not None
    assert counted["score"] == 2  # another data hash is another cache


@pytest.fixture
def perturbed_policy_state(policy):
    gen = torch.Generator().manual_seed(2)
    yield {k: v + 0.5 * torch.randn(v.shape, generator=gen) for k, v in policy.adapter_state().items()}
    policy.load_adapter_state(None)
