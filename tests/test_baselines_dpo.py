"""DPO: our loss, implicit rewards and reward accuracy agree with TRL's DPOTrainer on one batch."""

from __future__ import annotations

import pytest
import torch

from baselines.dpo.solver import DPOConfig, dpo_batch, dpo_loss, train_dpo
from ood_pl_bench.models.policy import Policy
from ood_pl_bench.models.resolve import resolve_policy
from ood_pl_bench.profiles import get_profile
from ood_pl_bench.tasks import get_task

PAIRS = [
    {"prompt": "How do I brew a stout?", "chosen": "Roast barley, a clean ale yeast, mash at 67 C.",
     "rejected": "Buy one."},
    {"prompt": "What is a qubit?", "chosen": "A two-level quantum system that can be in superposition.",
     "rejected": "A small cube."},
    {"prompt": "Is espresso stronger than drip?", "chosen": "Per millilitre yes; per cup usually not.",
     "rejected": "No."},
    {"prompt": "Why does my iot sensor drop off wifi?",
     "chosen": "Check power saving, RSSI and the DHCP lease time.", "rejected": "Bad luck, it happens."},
]


def _policy(seed: int = 0) -> Policy:
    task = get_profile("smoke").apply(get_task("qa"))
    return Policy(resolve_policy("tiny-llama"), task, dtype="fp32", seed=seed)


def _perturbed_adapter(policy: Policy) -> dict[str, torch.Tensor]:
    """Non-zero LoRA weights, so the policy differs from the reference and the loss is not log 2."""
    gen = torch.Generator().manual_seed(1)
    state = {k: v + 0.3 * torch.randn(v.shape, generator=gen) for k, v in policy.adapter_state().items()}
    policy.load_adapter_state(state)
    return state


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_matches_trl(tmp_path, beta):
    trl = pytest.importorskip("trl")
    from datasets import Dataset

    ours = _policy()
    state = _perturbed_adapter(ours)
    mine = dpo_batch(ours, PAIRS, beta)

    theirs = _policy()
    args = trl.DPOConfig(output_dir=str(tmp_path / "trl"), beta=beta, loss_type=["sigmoid"], report_to=[],
                         use_cpu=True, bf16=False, fp16=False, precompute_ref_log_probs=False,
                         per_device_train_batch_size=len(PAIRS), max_length=None)
    trainer = trl.DPOTrainer(model=theirs.model, args=args, processing_class=theirs.tokenizer,
                             train_dataset=Dataset.from_list(PAIRS))
    # TRL copies the adapter it is given into a frozen "ref" adapter: hand it θ₀ (B = 0, i.e. exactly
    # the base model, our reference), then move the trained "default" adapter to the perturbed θ.
    theirs.load_adapter_state(state)
    # The same token layout as ours: a [chosen; rejected] right-padded batch, completion = response tokens.
    prompts = [p["prompt"] for p in PAIRS]
    batch = theirs.encode(prompts + prompts, [p["chosen"] for p in PAIRS] + [p["rejected"] for p in PAIRS])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              "completion_mask": batch["response_mask"]}
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, inputs)
    mode = "train" if trainer.model.training else "eval"
    metrics = {k: v[-1] for k, v in trainer._metrics[mode].items()}

    assert abs(mine.loss.item() - trl_loss.item()) < 1e-5
    assert abs(mine.chosen_rewards.mean().item() - metrics["rewards/chosen"]) < 1e-5
    assert abs(mine.rejected_rewards.mean().item() - metrics["rewards/rejected"]) < 1e-5
    assert abs(mine.reward_accuracy.item() - metrics["rewards/accuracies"]) < 1e-5
    assert abs(mine.margins.mean().item() - metrics["rewards/margins"]) < 1e-5
    assert abs(mine.loss.item() - torch.log(torch.tensor(2.0)).item()) > 1e-3  # a non-trivial batch


def test_dpo_loss_formula_and_label_smoothing():
    pc, pr = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -4.0])
    rc, rr = torch.tensor([-3.5, -5.0]), torch.tensor([-3.5, -4.5])
    out = dpo_loss(pc, pr, rc, rr, beta=0.5)
    delta = (pc - rc) - (pr - rr)
    assert torch.allclose(out.loss, -torch.nn.functional.logsigmoid(0.5 * delta).mean())
    assert out.reward_accuracy.item() == 0.5
    smooth = dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=0.1)
    assert smooth.loss.item() > out.loss.item()


def test_dpo_training_raises_reward_accuracy_and_is_deterministic():
    def train():
        policy = _policy()
        curves = train_dpo(policy, PAIRS, DPOConfig(steps=12, batch_size=4, lr=5e-3), seed=7)
        return curves, policy.adapter_state()

    c1, a1 = train()
    c2, a2 = train()
    assert c1.data == c2.data
    assert all(torch.equal(a1[k], a2[k]) for k in a1)
    assert c1.data["loss"][-1] < c1.data["loss"][0]
    assert c1.data["reward_accuracy"][-1] == 1.0
