"""Reward model: order-invariant scoring, truncation, Bradley-Terry and classifier training,
determinism and save/load (tiny-bert)."""

from __future__ import annotations

import random

import pytest
import torch

from ood_pl_bench.errors import DataError, ModelError
from ood_pl_bench.models.resolve import resolve_reward_backbone
from ood_pl_bench.models.reward import RewardModel, RMTrainConfig, train_bradley_terry, train_classifier

WORDS = ["apple", "river", "stone", "cloud", "green", "table", "music", "light", "paper", "glass"]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("reward-cache")


@pytest.fixture(autouse=True)
def _cache_env(model_cache, monkeypatch):
    monkeypatch.setenv("OODPL_CACHE", str(model_cache))


@pytest.fixture
def backbone():
    return resolve_reward_backbone("tiny-bert")


def synthetic_pairs(n: int, seed: int = 0) -> list[dict]:
    """Pairs whose chosen answer starts with praise and rejected with blame (separable)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(5))
        a = " ".join(rng.choice(WORDS) for _ in range(6))
        pairs.append({"prompt": q, "chosen": "excellent great " + a, "rejected": "awful bad " + a})
    return pairs


def accuracy(rm: RewardModel, pairs: list[dict]) -> float:
    prompts = [p["prompt"] for p in pairs]
    c = rm.score(prompts, [p["chosen"] for p in pairs])
    r = rm.score(prompts, [p["rejected"] for p in pairs])
    return float(((c > r).float() + 0.5 * (c == r).float()).mean())


def test_score_is_order_invariant_and_matches_forward(backbone):
    rm = RewardModel.from_pretrained(backbone)
    prompts = [f"question {i} " + "word " * (i * 7) for i in range(9)]
    responses = [f"answer {i} " + "text " * (20 - 2 * i) for i in range(9)]
    scores = rm.score(prompts, responses, batch_size=4)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(0)).tolist()
    shuffled = rm.score([prompts[i] for i in perm], [responses[i] for i in perm], batch_size=3)
    torch.testing.assert_close(shuffled, scores[perm], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        alone = torch.stack([rm(rm.encode([p], [r]))[0] for p, r in zip(prompts, responses)])
    torch.testing.assert_close(scores, alone, rtol=1e-5, atol=1e-6)
    assert scores.dtype == torch.float32 and scores.shape == (9,)


def test_truncation_keeps_prompt_end_and_response_start(backbone):
    rm = RewardModel.from_pretrained(backbone)
    tok = rm.tokenizer
    prompt = " ".join(f"p{i}" for i in range(400))
    response = " ".join(f"r{i}" for i in range(400))
    batch = rm.encode([prompt, "short question"], [response, "short answer"])
    assert batch["input_ids"].shape == (2, 256)
    ids = batch["input_ids"][0].tolist()
    sep = ids.index(tok.sep_token_id)
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert sep - 1 == (256 - 3) // 2  # each side gets half of the budget when both are long
    full_p = tok(prompt, add_special_tokens=False)["input_ids"]
    full_r = tok(response, add_special_tokens=False)["input_ids"]
    assert ids[1:sep] == full_p[-(sep - 1):]
    assert ids[sep + 1:-1] == full_r[:256 - 3 - (sep - 1)]
    assert batch["token_type_ids"][0, sep + 1:].eq(1).all() and batch["token_type_ids"][0, :sep + 1].eq(0).all()
    # A short response leaves its unused budget to the prompt.
    ids = rm.encode([prompt], ["ok"])["input_ids"][0].tolist()
    assert len(ids) == 256 and ids.index(tok.sep_token_id) == 256 - 3 - 1 + 1


def test_bradley_terry_training_learns_and_is_deterministic(backbone):
    train, test = synthetic_pairs(64, seed=0), synthetic_pairs(32, seed=1)
    config = RMTrainConfig(lr=1e-3, epochs=2, batch_size=16, seed=0)
    rm = RewardModel.from_pretrained(backbone)
    before = accuracy(rm, test)
    stats = train_bradley_terry(rm, train, config)
    assert stats["steps"] == 8 and stats["examples"] == 64 and len(stats["losses"]) == 8
    assert sum(stats["losses"][-2:]) < sum(stats["losses"][:2])
    after = accuracy(rm, test)
    assert after >= 0.9 and after > before
    assert not rm.training  # left in eval mode

    twin = RewardModel.from_pretrained(backbone)
    train_bradley_terry(twin, train, config)
    torch.testing.assert_close(twin.score(["q"], ["excellent a"]), rm.score(["q"], ["excellent a"]), rtol=0, atol=0)

    capped = train_bradley_terry(RewardModel.from_pretrained(backbone), train,
                                 RMTrainConfig(lr=1e-3, epochs=1, batch_size=16, max_examples=20))
    assert capped["examples"] == 20 and capped["steps"] == 2


def test_classifier_training(backbone):
    rng = random.Random(0)
    rows = []
    for i in range(64):
        body = " ".join(rng.choice(WORDS) for _ in range(6))
        label = i % 2
        rows.append({"prompt": "Review of a blender:", "text": ("love it " if label else "hate it ") + body,
                     "label": label})
    rm = RewardModel.from_pretrained(backbone)
    # A random tiny backbone needs a large rate to separate labels in absolute terms.
    stats = train_classifier(rm, rows, RMTrainConfig(lr=1e-2, epochs=6, batch_size=16))
    assert stats["steps"] == 24
    scores = rm.score([r["prompt"] for r in rows], [r["text"] for r in rows])
    labels = torch.tensor([r["label"] for r in rows])
    assert float(((scores > 0).long() == labels).float().mean()) >= 0.9
    with pytest.raises(DataError, match="0 or 1"):
        train_classifier(rm, [dict(rows[0], label=5)], RMTrainConfig())
    with pytest.raises(DataError, match="chosen"):
        train_bradley_terry(rm, [{"prompt": "x"}], RMTrainConfig())


def test_save_load_round_trip(backbone, tmp_path):
    rm = RewardModel.from_pretrained(backbone)
    train_bradley_terry(rm, synthetic_pairs(16), RMTrainConfig(lr=1e-3, epochs=1, batch_size=8))
    rm.info = {"note": "kept"}
    rm.save(tmp_path / "rm")
    loaded = RewardModel.load(tmp_path / "rm")
    prompts, responses = ["q1", "q2 longer question"], ["excellent answer", "awful"]
    torch.testing.assert_close(loaded.score(prompts, responses), rm.score(prompts, responses), rtol=0, atol=0)
    assert loaded.info == {"note": "kept"} and loaded.backbone_info["revision"] == backbone.revision
    assert sorted(p.name for p in (tmp_path / "rm").iterdir() if not p.name.startswith(".")) == [
        "config.json", "model.safetensors", "reward_model.json", "tokenizer.json", "tokenizer_config.json"]
    rm.save(tmp_path / "rm")  # overwriting a saved model is atomic too
    assert RewardModel.load(tmp_path / "rm").info == {"note": "kept"}
    with pytest.raises(ModelError, match="not a saved reward model"):
        RewardModel.load(tmp_path)


def test_fresh_heads_are_seeded(backbone):
    a = RewardModel.from_pretrained(backbone, seed=0)
    b = RewardModel.from_pretrained(backbone, seed=0)
    c = RewardModel.from_pretrained(backbone, seed=1)
    assert torch.equal(a.head.weight, b.head.weight) and not torch.equal(a.head.weight, c.head.weight)
