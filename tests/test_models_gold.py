"""Gold reward models on a fake edition: learnable rule, balanced oracle subset, cache, accuracy."""

from __future__ import annotations

import dataclasses
import random
import time

import pytest
import torch

from ood_pl_bench.models import gold as G
from ood_pl_bench.profiles import get_profile
from ood_pl_bench.tasks import get_task

WORDS = ["apple", "river", "stone", "cloud", "green", "table", "music", "light", "paper", "glass"]


class FakeEdition:
    """The Edition methods gold models use, on synthetic data whose rule is: praise wins."""

    def __init__(self, task_name: str, domains: tuple[str, ...], n: dict[str, int], data_hash: str = "fake-1"):
        self.data_hash = data_hash
        self.task_name = task_name
        self._pairs: dict[tuple[str, str], list[dict]] = {}
        self._labeled: list[dict] = []
        rng = random.Random(0)
        for domain in domains:
            for split, count in n.items():
                rows = []
                for i in range(count):
                    q = f"{domain} " + " ".join(rng.choice(WORDS) for _ in range(4))
                    body = " ".join(rng.choice(WORDS) for _ in range(5))
                    rows.append({"pair_id": f"{domain}:{split}:{i}", "item_id": f"{domain}:{split}:{i}",
                                 "domain": domain, "split": split, "prompt": q,
                                 "chosen": "excellent great " + body, "rejected": "awful bad " + body})
                    for label, text in ((1, "excellent great " + body), (0, "awful bad " + body)):
                        self._labeled.append({"review_id": f"{domain}:{split}:{i}:{label}", "domain": domain,
                                              "split": split, "prompt": f"Review of {domain}:", "text": text,
                                              "label": label})
                self._pairs[(domain, split)] = rows

    def pairs(self, task: str, domain: str, split: str) -> list[dict]:
        assert task == self.task_name
        return list(self._pairs.get((domain, split), []))

    def prompts(self, task: str, domain: str, split: str) -> list[dict]:
        return [{"prompt_id": p["pair_id"], "prompt": p["prompt"]} for p in self.pairs(task, domain, split)]

    def labeled(self, task: str, split: str, domain: str | None = None) -> list[dict]:
        assert task == self.task_name
        return [r for r in self._labeled if r["split"] == split and domain in (None, r["domain"])]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OODPL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def profile():
    return dataclasses.replace(get_profile("smoke"), gold_max_examples=120, gold_epochs=2)


def test_qa_gold_learns_caches_and_reports_accuracy(cache, profile):
    task = get_task("qa")
    edition = FakeEdition("qa", task.domains, {"oracle": 16, "test": 8, "train": 4})
    start = time.perf_counter()
    rm = G.gold_reward_model(task, edition, profile)
    trained_in = time.perf_counter() - start
    info = rm.info["gold"]
    assert info["kind"] == "bradley-terry" and info["data_hash"] == "fake-1"
    assert info["examples_per_domain"] == {d: 12 for d in task.domains}  # 120 balanced over 10 domains
    acc = G.gold_accuracy(rm, edition, task)
    assert set(acc) == set(task.domains) and all(0.0 <= a <= 1.0 for a in acc.values())
    assert sum(acc.values()) / len(acc) > 0.8

    folders = [p for p in (cache / "gold").iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1 and folders[0].name == info["key"]
    start = time.perf_counter()
    again = G.gold_reward_model(task, edition, profile)
    assert time.perf_counter() - start < max(1.0, trained_in)
    prompts = [p["prompt"] for p in edition.pairs("qa", "beer", "test")]
    texts = [p["chosen"] for p in edition.pairs("qa", "beer", "test")]
    torch.testing.assert_close(again.score(prompts, texts), rm.score(prompts, texts), rtol=0, atol=0)
    assert G.gold_accuracy(again, edition, task) == acc


def test_gold_key_follows_data_backbone_and_settings(profile):
    task = get_task("qa")
    edition = FakeEdition("qa", ("beer",), {"oracle": 1})
    backbone = {"revision": "sha256:abc", "source": "tiny"}
    config = G.gold_train_config(profile, "tiny")
    key = G.gold_cache_key(task, edition, backbone, config)
    other_data = FakeEdition("qa", ("beer",), {"oracle": 1}, data_hash="fake-2")
    assert G.gold_cache_key(task, other_data, backbone, config) != key
    assert G.gold_cache_key(task, edition, dict(backbone, revision="sha256:def"), config) != key
    assert G.gold_cache_key(task, edition, backbone, dataclasses.replace(config, epochs=3)) != key
    assert G.gold_cache_key(get_task("sentiment"), edition, backbone, config) != key
    assert G.gold_train_config(get_profile("default"), "wheel").lr < config.lr


def test_balanced_round_robin_is_deterministic_and_fills_from_large_domains():
    by_domain = {"a": [{"id": f"a{i}"} for i in range(2)], "b": [{"id": f"b{i}"} for i in range(10)],
                 "c": [{"id": f"c{i}"} for i in range(10)]}
    picked = G.balanced_round_robin(by_domain, 12)
    counts = {d: sum(1 for dd, _ in picked if dd == d) for d in by_domain}
    assert counts == {"a": 2, "b": 5, "c": 5}
    shuffled = {d: rows[::-1] for d, rows in by_domain.items()}  # input order does not matter
    assert G.balanced_round_robin(shuffled, 12) == picked
    assert len(G.balanced_round_robin(by_domain, None)) == 22


def test_sentiment_gold_is_a_classifier(cache, profile):
    task = get_task("sentiment")
    edition = FakeEdition("sentiment", task.domains, {"oracle": 5, "test": 4})
    rm = G.gold_reward_model(task, edition, dataclasses.replace(profile, gold_max_examples=140, gold_epochs=3))
    info = rm.info["gold"]
    assert info["kind"] == "classifier" and sum(info["examples_per_domain"].values()) == 140
    assert len(info["examples_per_domain"]) == len(task.domains)
    acc = G.gold_accuracy(rm, edition, task)
    assert len(acc) == len(task.domains) and sum(acc.values()) / len(acc) > 0.8
