"""metarm hypergradients: the analytic path (one JVP + one RM backward) against backpropagation
through the unrolled inner loop, on a tiny float64 LlamaForCausalLM with LoRA and a tiny BERT
reward model; plus the same check through the real ``Policy`` / ``RewardModel`` in fp32."""

from __future__ import annotations

import pytest
import torch

from baselines.metarm import hypergrad as hg


def _rel_err(a: dict, b: dict) -> float:
    num = sum(float((a[k] - b[k]).pow(2).sum()) for k in a) ** 0.5
    den = sum(float(b[k].pow(2).sum()) for k in b) ** 0.5
    return num / den


def _cosine(a: dict, b: dict) -> float:
    dot = sum(float((a[k] * b[k]).sum()) for k in a)
    na = sum(float(a[k].pow(2).sum()) for k in a) ** 0.5
    nb = sum(float(b[k].pow(2).sum()) for k in b) ** 0.5
    return dot / (na * nb)


@pytest.fixture
def float64_problem(monkeypatch):
    """A tiny float64 LoRA Llama policy, a tiny float64 BERT reward model, inner and outer batches."""
    from peft import LoraConfig, get_peft_model
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM
    from transformers.models.llama import modeling_llama

    from ood_pl_bench.models.resolve import build_tiny_bpe_tokenizer
    from ood_pl_bench.models.reward import RewardModel

    def rmsnorm_f64(self, hidden_states):  # the stock norm rounds through float32
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))

    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", rmsnorm_f64)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=48, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    base = LlamaForCausalLM(cfg).to(torch.float64)
    base.requires_grad_(False)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            lora_dropout=0.0))
    model.eval()
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    # Non-zero B so that every adapter matrix has a gradient (θ₀ need not be the reference here).
    theta0 = {n: (t + 0.05 * torch.randn_like(t)) for n, t in theta0.items()}

    def loglik(theta, batch):
        with sdpa_kernel([SDPBackend.MATH]):
            out = torch.func.functional_call(model, dict(theta), (batch["input_ids"],),
                                             {"attention_mask": batch["attention_mask"]}, strict=False)
        logp = out.logits[:, :-1].log_softmax(-1)
        tok = logp.gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
        return (tok * batch["response_mask"][:, 1:]).sum(-1)

    tok = build_tiny_bpe_tokenizer()
    bert = BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=32, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0), add_pooling_layer=False)
    rm = RewardModel(bert, tok, seed=1).to(torch.float64).eval()
    with torch.no_grad():
        rm.head.weight.normal_(0, 0.5)
    rm_params = dict(rm.named_parameters())

    gen = torch.Generator().manual_seed(1)

    def policy_batch(n, length=9, prompt=4):
        ids = torch.randint(3, 48, (n, length), generator=gen)
        att = torch.ones_like(ids)
        att[0, -2:] = 0  # one padded row
        resp = torch.zeros(n, length, dtype=torch.float64)
        resp[:, prompt:] = 1
        resp[0, -2:] = 0
        return {"input_ids": ids, "attention_mask": att, "response_mask": resp}

    def rm_batch(n, length=7):
        ids = torch.randint(5, len(tok), (n, length), generator=gen)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def inner(n_prompts=3, k=2):
        return hg.InnerBatch(policy_batch(n_prompts * k), rm_batch(n_prompts * k),
                             hg.group_index([k] * n_prompts))

    return {"loglik": loglik, "reward_fn": rm, "rm_params": rm_params, "theta0": theta0,
            "inner": inner, "outer": policy_batch(6)}


@pytest.mark.parametrize("offset", [False, True], ids=["likelihood-margin", "implicit-margin"])
@pytest.mark.parametrize("weights", ["softmax", "exp"])
def test_analytic_equals_exact_for_one_inner_step(float64_problem, weights, offset):
    p = float64_problem
    batches = [p["inner"]()]
    # The implicit outer margin subtracts a constant per pair (A at θ₀); both paths must take it.
    margin_offset = hg.pair_margins(p["loglik"], p["theta0"], p["outer"]).detach() + 0.3 if offset else None
    kw = dict(alpha=0.5, beta=0.7, weights=weights, max_log_weight=5.0, margin_offset=margin_offset)
    a = hg.analytic_hypergradient(p["loglik"], p["reward_fn"], p["rm_params"], p["theta0"], batches,
                                  p["outer"], **kw)
    e = hg.exact_hypergradient(p["loglik"], p["reward_fn"], p["rm_params"], p["theta0"], batches,
                               p["outer"], **kw)
    assert sum(float(g.abs().sum()) for g in e.grads.values()) > 0
    assert _rel_err(a.grads, e.grads) < 1e-6
    assert torch.allclose(a.loss, e.loss, rtol=1e-12, atol=0)
    assert torch.allclose(a.margins, e.margins, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("weights", ["softmax", "exp"])
def test_analytic_close_to_exact_for_two_inner_steps(float64_problem, weights):
    p = float64_problem
    batches = [p["inner"](), p["inner"]()]
    kw = dict(alpha=0.01, beta=0.7, weights=weights, max_log_weight=5.0)
    a = hg.analytic_hypergradient(p["loglik"], p["reward_fn"], p["rm_params"], p["theta0"], batches,
                                  p["outer"], **kw)
    e = hg.exact_hypergradient(p["loglik"], p["reward_fn"], p["rm_params"], p["theta0"], batches,
                               p["outer"], **kw)
    assert _cosine(a.grads, e.grads) > 0.99
    # the two inner loops are the same SGD steps, so θ_D agrees exactly
    for k in a.theta:
        assert torch.allclose(a.theta[k], e.theta[k], rtol=1e-10, atol=1e-12)


def test_jvp_scores_match_per_sample_gradients(float64_problem):
    p = float64_problem
    ib = p["inner"]()
    theta = p["theta0"]
    v = {k: torch.randn_like(t) for k, t in theta.items()}
    s = hg.jvp_scores(p["loglik"], theta, ib.policy_batch, v)
    leaves = {k: t.clone().requires_grad_(True) for k, t in theta.items()}
    logp = p["loglik"](leaves, ib.policy_batch)
    for b in range(logp.shape[0]):
        grads = torch.autograd.grad(logp[b], list(leaves.values()), retain_graph=True)
        ref = sum(float((g * v[k]).sum()) for g, k in zip(grads, leaves))
        assert s[b].item() == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_softmax_weights_and_coefficients():
    r = torch.tensor([0.0, 1.0, 2.0, -1.0, 3.0], dtype=torch.float64, requires_grad=True)
    groups = hg.group_index([2, 3])
    w = hg.inner_weights(r, groups, beta=0.5)
    assert torch.allclose(w[:2].sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(w[2:].sum(), torch.tensor(1.0, dtype=torch.float64))
    # c_b matches the autograd derivative of Σ_b α s_b w_b(r) with respect to r
    s = torch.tensor([0.3, -0.2, 1.0, 0.5, -2.0], dtype=torch.float64)
    (grad_r,) = torch.autograd.grad((0.1 * s * w).sum(), r)
    c = hg.hypergrad_coefficients(w, s, groups, alpha=0.1, beta=0.5)
    assert torch.allclose(c, grad_r, rtol=1e-12, atol=1e-15)
    # exp weights: clipped entries pass no gradient
    we = hg.inner_weights(r, groups, beta=0.5, mode="exp", max_log_weight=3.0)
    assert we.max().item() == pytest.approx(float(torch.tensor(3.0).exp()))
    (grad_e,) = torch.autograd.grad((0.1 * s * we).sum(), r)
    ce = hg.hypergrad_coefficients(we, s, groups, alpha=0.1, beta=0.5, mode="exp", rewards=r,
                                   max_log_weight=3.0)
    assert torch.allclose(ce, grad_e, rtol=1e-12, atol=1e-15)
    assert ce[4] == 0


def test_real_policy_and_reward_model_paths_agree(tmp_path, monkeypatch):
    """The solver's loglik (Policy.response_logprobs with params) and RewardModel in fp32."""
    monkeypatch.setenv("OODPL_CACHE", str(tmp_path / "cache"))
    from ood_pl_bench.models.policy import Policy
    from ood_pl_bench.models.resolve import resolve_policy, resolve_reward_backbone
    from ood_pl_bench.models.reward import RewardModel
    from ood_pl_bench.profiles import get_profile
    from ood_pl_bench.tasks import get_task

    task = get_profile("smoke").apply(get_task("qa"))
    policy = Policy(resolve_policy("tiny-llama"), task, dtype="fp32", seed=0)
    rm = RewardModel.from_pretrained(resolve_reward_backbone("tiny-bert"), seed=0)
    with torch.no_grad():
        rm.head.weight.normal_(0, 1.0)
    prompts = ["How do I brew coffee?", "What is a qubit?"]
    samples = ["Use fresh beans.", "Grind them.", "A quantum bit.", "I do not know."]
    rows_p = [prompts[0], prompts[0], prompts[1], prompts[1]]
    ib = hg.InnerBatch(policy.encode(rows_p, samples), rm.encode(rows_p, samples), hg.group_index([2, 2]))
    outer = policy.encode(prompts + prompts, ["Fresh beans.", "A bit.", "No.", "Maybe."])

    def loglik(theta, batch):
        return policy.response_logprobs(batch, params=theta)

    theta0 = {k: v.detach().clone() for k, v in policy.named_trainable_parameters().items()}
    kw = dict(alpha=0.1, beta=1.0)
    a = hg.analytic_hypergradient(loglik, rm, dict(rm.named_parameters()), theta0, [ib], outer, **kw)
    e = hg.exact_hypergradient(loglik, rm, dict(rm.named_parameters()), theta0, [ib], outer, **kw)
    assert _rel_err(a.grads, e.grads) < 1e-3
    assert any(float(g.abs().sum()) > 0 for g in a.grads.values())
