"""Gold reward models: the benchmark's evaluators (SPEC section 3), never a solver's signal.

One gold model per (edition data, task, backbone revision, gold settings), trained on the
**oracle** split of *all* domains of the task and cached under ``<cache>/gold/<key>/``:

* ``qa``: a Bradley-Terry cross-encoder on the oracle pairs (higher- vs lower-voted answer);
* ``sentiment``: a classifier on the oracle labeled reviews (prompt = review header,
  text = review, label = 1 for positive), whose logit is the reward.

Training data is capped at ``profile.gold_max_examples`` examples, balanced across domains:
each domain's examples are put in a fixed pseudo-random order (sha256 of their id), then domains
are taken round-robin until the cap, so small domains give all they have and large ones the rest.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..io import sha256_text, stable_hash
from ..paths import cache_dir
from ..profiles import Profile
from ..tasks import TaskSpec
from .resolve import file_lock, resolve_reward_backbone
from .reward import REWARD_MODEL_FILE, RewardModel, RMTrainConfig, train_bradley_terry, train_classifier

GOLD_VERSION = 1
CLASSIFIER_TASKS = ("sentiment",)


def gold_kind(task: TaskSpec) -> str:
    """``"classifier"`` for sentiment tasks, ``"bradley-terry"`` otherwise."""
    return "classifier" if task.name in CLASSIFIER_TASKS else "bradley-terry"


def gold_train_config(profile: Profile, source: str) -> RMTrainConfig:
    """Gold training settings of a profile: 5e-5 for pretrained backbones, 1e-3 for tiny random
    ones (which start from noise and would not move at fine-tuning rates)."""
    return RMTrainConfig(lr=1e-3 if source == "tiny" else 5e-5, epochs=profile.gold_epochs,
                         batch_size=16, max_examples=profile.gold_max_examples, seed=0,
                         weight_decay=0.01, bf16=profile.dtype == "bf16")


def gold_cache_key(task: TaskSpec, edition: Any, backbone: dict, config: RMTrainConfig) -> str:
    """The cache key of a gold model: everything its weights depend on."""
    return stable_hash({
        "version": GOLD_VERSION, "edition": task.edition, "data_hash": edition.data_hash,
        "task": task.name, "domains": list(task.domains), "kind": gold_kind(task),
        "backbone_revision": backbone["revision"], "backbone_source": backbone["source"],
        "config": dataclasses.asdict(config),
    })


def gold_reward_model(task: TaskSpec, edition: Any, profile: Profile, progress: Any = None,
                      config: RMTrainConfig | None = None, device: str = "cpu") -> RewardModel:
    """The gold reward model of ``task``: loaded from the cache, or trained once and cached.

    ``edition`` provides ``pairs(task, domain, split)``, ``labeled(task, split, domain=None)`` and
    ``data_hash``. ``config`` overrides :func:`gold_train_config` (the key follows it). The gold
    model is the evaluator every run shares, so it is always trained on the CPU (the cached weights
    do not depend on the machine that trained them first); the returned model is on ``device``.
    """
    resolved = resolve_reward_backbone(profile.reward_backbone)
    config = config or gold_train_config(profile, resolved.source)
    key = gold_cache_key(task, edition, resolved.to_dict(), config)
    folder = cache_dir() / "gold" / key
    if (folder / REWARD_MODEL_FILE).is_file():
        return RewardModel.load(folder, device=device)
    with file_lock(folder.with_name(f".{key}.lock")):
        if (folder / REWARD_MODEL_FILE).is_file():  # built by a concurrent process meanwhile
            return RewardModel.load(folder, device=device)
        rm = RewardModel.from_pretrained(resolved, seed=config.seed, device="cpu")
        examples, per_domain = gold_training_examples(task, edition, config.max_examples)
        # The subset is chosen here (balanced); the trainer must not subsample again.
        train_config = dataclasses.replace(config, max_examples=None)
        if gold_kind(task) == "classifier":
            stats = train_classifier(rm, examples, train_config, progress=progress)
        else:
            stats = train_bradley_terry(rm, examples, train_config, progress=progress)
        rm.info = {"gold": {"key": key, "task": task.name, "edition": task.edition,
                            "data_hash": edition.data_hash, "kind": gold_kind(task),
                            "examples_per_domain": per_domain, "config": dataclasses.asdict(config),
                            "final_loss": _tail_mean(stats["losses"]), "steps": stats["steps"],
                            "seconds": stats["seconds"]}}
        rm.save(folder)
    return rm.to(torch.device(device))


def gold_training_examples(task: TaskSpec, edition: Any, cap: int | None) -> tuple[list[dict], dict[str, int]]:
    """The oracle examples a gold model trains on (balanced across domains, deterministic) and
    how many came from each domain."""
    by_domain: dict[str, list[dict]] = {}
    if gold_kind(task) == "classifier":
        for row in edition.labeled(task.name, "oracle"):
            if row.get("domain") in task.domains:
                by_domain.setdefault(row["domain"], []).append(
                    {"prompt": row["prompt"], "text": row["text"], "label": int(row["label"]),
                     "id": row.get("review_id", row["text"])})
    else:
        for domain in task.domains:
            for row in edition.pairs(task.name, domain, "oracle"):
                by_domain.setdefault(domain, []).append(
                    {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"],
                     "id": row["pair_id"]})
    selected = balanced_round_robin(by_domain, cap)
    per_domain: dict[str, int] = {}
    for domain, row in selected:
        per_domain[domain] = per_domain.get(domain, 0) + 1
    return [row for _, row in selected], per_domain


def balanced_round_robin(by_domain: dict[str, list[dict]], cap: int | None) -> list[tuple[str, dict]]:
    """Take rows round-robin over domains (in sorted domain order), each domain in the order of
    sha256 of the row ``id``, until ``cap`` rows (None: all)."""
    queues = {d: sorted(rows, key=lambda r: sha256_text(str(r["id"]))) for d, rows in by_domain.items()}
    total = sum(len(q) for q in queues.values())
    limit = total if cap is None else min(cap, total)
    out: list[tuple[str, dict]] = []
    position = 0
    while len(out) < limit:
        for d in sorted(queues):
            if position < len(queues[d]) and len(out) < limit:
                out.append((d, queues[d][position]))
        position += 1
    return out


def gold_accuracy(rm: RewardModel, edition: Any, task: TaskSpec, max_pairs: int | None = None,
                  batch_size: int = 32) -> dict[str, float]:
    """Per-domain accuracy of ``rm`` on each domain's test pairs: 1 if r(chosen) > r(rejected),
    0.5 on a tie, else 0; averaged over pairs. Domains without test pairs are left out."""
    out: dict[str, float] = {}
    for domain in task.domains:
        pairs = edition.pairs(task.name, domain, "test")
        if max_pairs is not None:
            pairs = pairs[:max_pairs]
        if not pairs:
            continue
        prompts = [p["prompt"] for p in pairs]
        scores = rm.score(prompts + prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs],
                          batch_size=batch_size).tolist()
        n = len(pairs)
        outcomes = [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(scores[:n], scores[n:])]
        out[domain] = sum(outcomes) / n
    return out


def _tail_mean(values: list[float], n: int = 10) -> float | None:
    tail = values[-n:]
    return sum(tail) / len(tail) if tail else None
