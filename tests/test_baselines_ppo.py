"""PPO on a toy reward made here: the reward rises, KL stays bounded, and a seed fixes every number."""

from __future__ import annotations

import collections

import pytest
import torch

from baselines.ppo.ppo import (AdaptiveKLController, PPOHyper, collate, gae, masked_whiten, sample,
                               token_forward, train_ppo)
from ood_pl_bench.models.policy import Policy
from ood_pl_bench.models.resolve import resolve_policy
from ood_pl_bench.profiles import get_profile
from ood_pl_bench.tasks import Decoding, get_task

PROMPTS = [f"Question {i}: what do you think about {w}?"
           for i, w in enumerate("beer coffee tea wine water milk juice soda".split())] * 2
DECODING = Decoding(max_new_tokens=8)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run ~50x faster single-threaded on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _toy_policy() -> Policy:
    """The tiny random policy with its (tied) embeddings scaled up: the stock tiny model's logits
    are nearly uniform over 512 tokens, too flat for LoRA to move in a few dozen updates."""
    task = get_profile("smoke").apply(get_task("qa"))
    policy = Policy(resolve_policy("tiny-llama"), task, dtype="fp32", seed=0)
    with torch.no_grad():
        policy.model.get_input_embeddings().weight.mul_(6.0)
    return policy


def _target_token(policy: Policy) -> int:
    """A token the reference samples now and then, and that survives decode -> encode."""
    counts = collections.Counter(t for row in sample(policy, PROMPTS, DECODING, seed=0, batch_size=16) for t in row)
    for token, _ in counts.most_common():
        if policy.tokenizer(policy.tokenizer.decode([token]), add_special_tokens=False)["input_ids"] == [token]:
            return token
    raise AssertionError("no round-tripping token sampled")


def _run(seed: int, updates: int = 30):
    policy = _toy_policy()
    target = _target_token(policy)

    def reward(prompts, texts):  # the frequency of one token in the response
        out = []
        for text in texts:
            ids = policy.tokenizer(text, add_special_tokens=False)["input_ids"]
            out.append(sum(i == target for i in ids) / max(1, len(ids)))
        return torch.tensor(out)

    hp = PPOHyper(beta=0.05, lr=1e-2, updates=updates, rollout_prompts=16, ppo_epochs=2, minibatch_size=8)
    return train_ppo(policy, PROMPTS, reward, hp, DECODING, seed=seed), policy.adapter_state()


def test_ppo_raises_toy_reward_with_bounded_kl_and_is_deterministic():
    curves, adapter = _run(seed=0)
    score, kl = curves.data["score"], curves.data["kl"]
    assert len(score) == 30 and kl[0] == pytest.approx(0.0, abs=1e-5)  # iteration 1 samples π_ref itself
    first, last = sum(score[:5]) / 5, sum(score[-5:]) / 5
    assert last > first + 0.03, (first, last)
    assert max(kl) < 10.0  # nats per 8-token sample: bounded by the β·KL penalty
    assert all(v == v for v in curves.data["vf_loss"])  # finite
    again, adapter2 = _run(seed=0)
    assert again.data == curves.data
    assert all(torch.equal(adapter[k], adapter2[k]) for k in adapter)
    other, _ = _run(seed=1, updates=3)
    assert other.data["score"] != curves.data["score"][:3]


def test_gae_matches_a_hand_computation():
    rewards = torch.tensor([[0.0, 0.5, 1.0, 0.0]])
    values = torch.tensor([[0.0, 0.2, 0.4, 0.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    a2 = 1.0 - 0.4                                 # last token: no bootstrap
    a1 = 0.5 + 0.9 * 0.4 - 0.2 + 0.9 * 0.8 * a2
    assert adv[0, 1].item() == pytest.approx(a1) and adv[0, 2].item() == pytest.approx(a2)
    assert adv[0, 0].item() == 0.0 and adv[0, 3].item() == 0.0
    assert ret[0, 2].item() == pytest.approx(a2 + 0.4)
    w = masked_whiten(torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    assert w[0, :3].mean().item() == pytest.approx(0.0, abs=1e-6)


def test_adaptive_kl_controller_moves_beta_toward_target():
    ctl = AdaptiveKLController(0.1, target=1.0, horizon=100)
    ctl.update(kl=5.0, n_samples=10)
    assert ctl.value == pytest.approx(0.1 * 1.02)
    ctl.update(kl=0.0, n_samples=10)
    assert ctl.value < 0.1 * 1.02
    fixed = AdaptiveKLController(0.1, target=None, horizon=100)
    fixed.update(kl=5.0, n_samples=10)
    assert fixed.value == 0.1


def test_token_forward_matches_policy_response_logprobs():
    policy = _toy_policy()
    responses = sample(policy, PROMPTS[:4], DECODING, seed=3, batch_size=4)
    batch = collate(policy, PROMPTS[:4], responses)
    start = int(batch["response_mask"].float().argmax(-1).min()) - 1
    lp, _ = token_forward(policy, None, batch, start)
    mask = batch["response_mask"][:, start + 1:].float()
    assert torch.allclose((lp * mask).sum(-1), policy.response_logprobs(batch), atol=1e-4)
    ref, _ = token_forward(policy, None, batch, start, reference=True)
    assert torch.allclose((ref * mask).sum(-1), policy.response_logprobs(batch, reference=True), atol=1e-4)
