"""Policy: padding invariance, reference = zero adapters, adapter round trip, truncation,
generation determinism, chat formatting, gradients and forward-mode AD (tiny-llama, fp32)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ood_pl_bench.errors import ModelError
from ood_pl_bench.models.policy import LoraSpec, Policy
from ood_pl_bench.models.resolve import resolve_policy
from ood_pl_bench.tasks import Decoding, get_task

PROMPTS = ["How do I brew coffee?", "Why does my code raise an error when I run it twice in a row?", "Hi"]
RESPONSES = ["Use fresh beans.", "Check the stack trace, read the message and print the values involved.", ""]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("policy-cache")


@pytest.fixture(scope="module")
def qa_task():
    return dataclasses.replace(get_task("qa"), max_prompt_tokens=48, max_response_tokens=24)


@pytest.fixture(scope="module")
def policy(model_cache, qa_task):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OODPL_CACHE", str(model_cache))
        return Policy(resolve_policy("tiny-llama"), qa_task, dtype="fp32", seed=0)


@pytest.fixture(autouse=True)
def _cache_env(model_cache, monkeypatch):
    monkeypatch.setenv("OODPL_CACHE", str(model_cache))


@pytest.fixture
def perturbed(policy):
    """A random non-zero adapter state (restored to θ₀ afterwards)."""
    gen = torch.Generator().manual_seed(1)
    state = {k: v + 0.5 * torch.randn(v.shape, generator=gen) for k, v in policy.adapter_state().items()}
    yield state
    policy.load_adapter_state(None)


def test_padding_invariance_alone_vs_batch(policy, perturbed):
    policy.load_adapter_state(perturbed)
    batch = policy.encode(PROMPTS, RESPONSES)
    assert batch["input_ids"].shape[0] == 3 and batch["attention_mask"][2].sum() < batch["input_ids"].shape[1]
    for reference in (False, True):
        together = policy.response_logprobs(batch, reference=reference)
        alone = torch.stack([policy.response_logprobs(policy.encode([p], [r]), reference=reference)[0]
                             for p, r in zip(PROMPTS, RESPONSES)])
        torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
        # Batched, length-sorted scoring gives the same values in input order, for any batch size.
        for bs in (1, 2, 8):
            scored = policy.sequence_logprobs(PROMPTS, RESPONSES, reference=reference, batch_size=bs)
            torch.testing.assert_close(scored, together.detach(), rtol=1e-5, atol=1e-5)


def test_packed_pair_scoring_equals_scoring_each_response_alone(policy, perturbed, qa_task, model_cache, monkeypatch):
    long_prompt = " ".join(f"word{i}" for i in range(200))       # truncated to its last tokens
    long_response = " ".join(f"answer{i}" for i in range(200))   # truncated, no EOS
    prompts = PROMPTS + [long_prompt, "Hi"]
    chosen = RESPONSES + [long_response, "Fine thanks"]
    rejected = ["No.", "", "Hello back, how can I help you today?", "Short.", long_response]
    eager = Policy(resolve_policy("tiny-llama"), qa_task, dtype="fp32", seed=0, attn_implementation="eager")
    for scorer in (policy, eager):
        scorer.load_adapter_state(perturbed)
        for reference in (False, True):
            alone = scorer.sequence_logprobs(prompts * 2, chosen + rejected, reference=reference, batch_size=1)
            for bs in (1, 3, 8):
                c, r = scorer.pair_logprobs(prompts, chosen, rejected, reference=reference, batch_size=bs)
                torch.testing.assert_close(torch.cat([c, r]), alone, rtol=1e-5, atol=1e-5)
    # The general logits path (models with soft-capped or scaled logits) packs the same way.
    monkeypatch.setattr(policy, "_fast_head", False)
    c, r = policy.pair_logprobs(prompts, chosen, rejected)
    torch.testing.assert_close(torch.cat([c, r]), policy.sequence_logprobs(prompts * 2, chosen + rejected),
                               rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(policy, "_fast_head", True)
    # Sliding-window layers would lose their window under a custom mask: one response per row.
    config = policy.model.get_base_model().config
    monkeypatch.setattr(config, "sliding_window", 4, raising=False)
    assert not policy._can_pack()
    monkeypatch.setattr(config, "sliding_window", None, raising=False)
    # Attention that cannot take a block mask falls back to one response per row.
    monkeypatch.setattr(policy, "_attention_kind", lambda: "flash_attention_2")
    c, r = policy.pair_logprobs(prompts, chosen, rejected)
    torch.testing.assert_close(torch.cat([c, r]), policy.sequence_logprobs(prompts * 2, chosen + rejected))
    assert torch.equal(policy.grouped_response_logprobs(prompts[:2], [chosen[:1], rejected[:2]]).detach(),
                       policy.response_logprobs(policy.encode([prompts[0], prompts[1], prompts[1]],
                                                              [chosen[0]] + rejected[:2])).detach())
    with pytest.raises(ValueError, match="2 rejected"):
        policy.pair_logprobs(prompts, chosen, rejected[:2])


def test_pair_scoring_scores_each_distinct_prompt_response_once(policy, perturbed, monkeypatch):
    """Pairs sharing prompts and responses: every distinct (prompt, response) is scored once, at most
    RESPONSES_PER_PACKED_ROW per row, and each pair still gets its own two values."""
    from ood_pl_bench.models import policy as policy_module

    policy.load_adapter_state(perturbed)
    prompts = ["How do I brew coffee?"] * 4 + ["Hi", "How do I brew coffee?", "Hi"]
    chosen = ["Use fresh beans.", "Grind them.", "Use fresh beans.", "Wait.", "Hello!", "Grind them.", "Hey."]
    rejected = ["No.", "No.", "Boil water first.", "Stir.", "Go away.", "Use fresh beans.", "Hello!"]
    monkeypatch.setattr(policy_module, "RESPONSES_PER_PACKED_ROW", 3)
    packed_rows = []
    real = policy._packed_logprobs
    monkeypatch.setattr(policy, "_packed_logprobs", lambda rows: packed_rows.extend(rows) or real(rows))
    c, r = policy.pair_logprobs(prompts, chosen, rejected, batch_size=2)
    alone = policy.sequence_logprobs(prompts * 2, chosen + rejected, batch_size=1)
    torch.testing.assert_close(torch.cat([c, r]), alone, rtol=1e-5, atol=1e-5)
    # coffee: 6 distinct responses -> rows of 3 + 3; Hi: 3 distinct -> one row.
    assert sorted(len(responses) for _, responses in packed_rows) == [3, 3, 3]
    assert sum(len(responses) for _, responses in packed_rows) == len(set(zip(prompts * 2, chosen + rejected)))
    assert c[0] == c[2] and r[0] == r[1] and c[4] == r[6]   # shared responses get one value


def test_grouped_scoring_matches_values_and_gradients_of_one_row_per_response(policy, perturbed):
    policy.load_adapter_state(perturbed)
    prompts = ["How do I brew coffee?", "Hi"]
    # "" unfinished has no tokens at all (log-prob 0), "" finished is just EOS.
    groups = [["Use fresh beans.", "Boil water first, then wait.", "", ""], ["Hello!"]]
    eos = [[True, False, True, False], [False]]
    params = policy.trainable_parameters()

    def grads_of(logp: torch.Tensor) -> list[torch.Tensor]:
        weights = torch.linspace(0.5, 2.0, logp.numel())
        return torch.autograd.grad((weights * logp).sum(), params)

    packed = policy.grouped_response_logprobs(prompts, groups, eos)
    flat_prompts = [p for p, g in zip(prompts, groups) for _ in g]
    alone = policy.response_logprobs(policy.encode(flat_prompts, [r for g in groups for r in g],
                                                   [e for f in eos for e in f]))
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads_of(packed), grads_of(alone)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert float(packed[3].detach()) == 0.0
    with pytest.raises(ValueError, match="one flag per response"):
        policy.grouped_response_logprobs(prompts, groups, [[True], [True]])


def test_fresh_policy_is_reference_and_adapter_round_trip(policy, perturbed):
    batch = policy.encode(PROMPTS, RESPONSES)
    ref = policy.response_logprobs(batch, reference=True).detach()
    torch.testing.assert_close(policy.response_logprobs(batch).detach(), ref, rtol=0, atol=0)
    initial = policy.adapter_state()
    assert initial and all("lora_" in k for k in initial)
    assert all(v.abs().sum() == 0 for k, v in initial.items() if "lora_B" in k)

    policy.load_adapter_state(perturbed)
    moved = policy.response_logprobs(batch).detach()
    assert (moved - ref).abs().max() > 1e-3
    torch.testing.assert_close(policy.response_logprobs(batch, reference=True).detach(), ref, rtol=0, atol=0)
    saved = policy.adapter_state()
    saved_copy = {k: v.clone() for k, v in saved.items()}

    policy.load_adapter_state(None)  # θ₀ again
    torch.testing.assert_close(policy.response_logprobs(batch).detach(), ref, rtol=0, atol=0)
    assert all(torch.equal(a, b) for a, b in zip(policy.adapter_state().values(), initial.values()))
    policy.load_adapter_state(saved)
    torch.testing.assert_close(policy.response_logprobs(batch).detach(), moved, rtol=0, atol=0)
    assert all(torch.equal(saved[k], saved_copy[k]) for k in saved)  # adapter_state returns clones

    with pytest.raises(ModelError, match="does not fit"):
        policy.load_adapter_state({"nope": torch.zeros(1)})
    bad = {k: torch.zeros(2, 2) for k in saved}
    with pytest.raises(ModelError, match="shape"):
        policy.load_adapter_state(bad)


def test_truncation_and_eos(policy, qa_task):
    tok = policy.tokenizer
    long_prompt = " ".join(f"word{i}" for i in range(200))
    long_response = " ".join(f"answer{i}" for i in range(200))
    batch = policy.encode([long_prompt, "Hi", "Hi"], [long_response, "Fine thanks", long_response],
                          eos=[True, True, False])
    resp = batch["response_mask"].sum(-1).tolist()
    prompt_len = (batch["attention_mask"] - batch["response_mask"]).sum(-1).tolist()
    n_short = len(tok("Fine thanks", add_special_tokens=False)["input_ids"])
    assert resp == [qa_task.max_response_tokens, n_short + 1, qa_task.max_response_tokens]
    assert prompt_len[0] == qa_task.max_prompt_tokens
    # The prompt keeps its end (the generation prompt of the chat template), the response its start.
    full_prompt = tok(policy.format_prompt(long_prompt), add_special_tokens=False)["input_ids"]
    assert batch["input_ids"][0, :prompt_len[0]].tolist() == full_prompt[-qa_task.max_prompt_tokens:]
    full_resp = tok(long_response, add_special_tokens=False)["input_ids"]
    row0 = batch["input_ids"][0][batch["response_mask"][0].bool()].tolist()
    assert row0 == full_resp[:qa_task.max_response_tokens] and row0[-1] != policy.eos_token_id
    row1 = batch["input_ids"][1][batch["response_mask"][1].bool()].tolist()
    assert row1[-1] == policy.eos_token_id  # a response that fits ends with EOS
    assert policy.response_ids("Fine thanks", eos=False) == row1[:-1]
    assert policy.response_ids("") == [policy.eos_token_id]


def test_chat_formatting(policy, model_cache):
    assert policy.prompt_format == "chat-template"
    assert policy.format_prompt("Why?") == "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n"
    sentiment = Policy(policy.resolved, get_task("sentiment"), dtype="fp32")
    assert sentiment.prompt_format == "raw" and sentiment.format_prompt("Great blender. It") == "Great blender. It"


def test_generation_is_deterministic_per_seed(policy):
    dec = Decoding(max_new_tokens=10, temperature=1.0, top_p=0.9, top_k=50)
    first = policy.generate(PROMPTS, dec, num_samples=2, seed=3, batch_size=8)
    assert len(first) == 3 and all(len(g) == 2 for g in first)
    for group in first:
        for s in group:
            assert set(s) == {"text", "num_tokens", "finished"}
            assert 1 <= s["num_tokens"] <= 10 and (s["finished"] or s["num_tokens"] == 10)
    assert policy.generate(PROMPTS, dec, num_samples=2, seed=3, batch_size=8) == first
    # Independent of batch size and of the other prompts of the call.
    assert policy.generate(PROMPTS, dec, num_samples=2, seed=3, batch_size=1) == first
    assert policy.generate(PROMPTS[1:], dec, num_samples=2, seed=3, batch_size=3) == first[1:]
    assert policy.generate(PROMPTS, dec, num_samples=2, seed=4) != first
    assert first[0][0] != first[0][1]  # samples of one prompt differ
    greedy = policy.generate(PROMPTS[:1], Decoding(max_new_tokens=6, temperature=0.0), num_samples=2, seed=0)
    assert greedy[0][0] == greedy[0][1]


def test_generation_respects_adapters_and_reference(policy, perturbed):
    dec = Decoding(max_new_tokens=8)
    ref = policy.generate(PROMPTS, dec, num_samples=1, seed=0)
    policy.load_adapter_state(perturbed)
    assert policy.generate(PROMPTS, dec, num_samples=1, seed=0, reference=True) == ref
    assert policy.generate(PROMPTS, dec, num_samples=1, seed=0) != ref


def test_gradients_reach_only_lora_and_jvp_matches_backward(policy, perturbed):
    policy.load_adapter_state({k: 0.2 * v for k, v in perturbed.items()})
    batch = policy.encode(PROMPTS, RESPONSES)
    named = policy.named_trainable_parameters()
    assert named and all("lora_" in n for n in named)
    assert len(policy.trainable_parameters()) == len(named)
    assert not any(p.requires_grad for n, p in policy.model.named_parameters() if "lora_" not in n)
    gen = torch.Generator().manual_seed(0)
    direction = {n: torch.randn(p.shape, generator=gen) for n, p in named.items()}
    weights = torch.tensor([0.3, -1.0, 2.0])

    policy.model.zero_grad(set_to_none=True)
    (policy.response_logprobs(batch) * weights).sum().backward()
    expected = sum((named[n].grad * direction[n]).sum() for n in named)
    policy.model.zero_grad(set_to_none=True)

    params = {n: p.detach() for n, p in named.items()}
    values, tangents = torch.func.jvp(lambda p: policy.response_logprobs(batch, params=p), (params,), (direction,))
    torch.testing.assert_close(values, policy.response_logprobs(batch).detach(), rtol=1e-5, atol=1e-5)
    # One forward-mode pass gives every row's directional derivative ⟨∇θ log π(y_b|x_b), v⟩
    # (the s_b of metarm's hypergradient); fp32 math vs fused attention kernels: loose tolerance.
    torch.testing.assert_close((tangents * weights).sum(), expected, rtol=2e-3, atol=1e-3)


def test_bf16_autocast_close_to_fp32(policy, qa_task):
    bf16 = Policy(policy.resolved, qa_task, dtype="bf16")
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # weights stay fp32
    exact = policy.sequence_logprobs(PROMPTS, RESPONSES)
    approx = bf16.sequence_logprobs(PROMPTS, RESPONSES)
    assert approx.dtype == torch.float32
    torch.testing.assert_close(approx, exact, rtol=0.02, atol=0.5)


def test_lora_spec_and_bad_dtype(policy, qa_task):
    custom = Policy(policy.resolved, qa_task, lora=LoraSpec(r=2, alpha=4, target_modules=("q_proj", "v_proj")),
                    dtype="fp32")
    assert custom.lora_targets == ("q_proj", "v_proj")
    assert all(v.shape[0] == 2 or v.shape[1] == 2 for v in custom.adapter_state().values())
    with pytest.raises(ModelError, match="dtype"):
        Policy(policy.resolved, qa_task, dtype="fp16")
    with pytest.raises(ValueError):
        LoraSpec(r=0).validate()
