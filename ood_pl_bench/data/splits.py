"""Deterministic hash splits: an item's split depends only on its domain and id.

The split of an item (a question, a review) is read off ``sha256(f"{domain}:{item_id}")``: the
first 64 bits give a number ``u`` in [0, 1) and the cumulative fractions below map ``u`` to a
split. Nothing depends on RNG state, file order or the other items, so adding or removing an item
never moves another one, and the same dump always gives the same edition.

Selections and orders inside a split (which pairs of a thread are kept, which test pairs make the
fixed evaluation set, the row order of a built table) use :func:`order_key`, a hash too.
"""

from __future__ import annotations

import hashlib

# Stack Exchange questions (also SHP posts and Amazon Reviews 2023 reviews, which have the same
# shape: labeled items plus items that only serve as prompts). A question's bucket decides where
# all of its pairs go; questions in ``train`` are also unlabeled training prompts and questions in
# ``prompts`` are evaluation prompts only (their pairs, if any, are not used).
SE_TEST_FRACTION = 0.30
SE_ORACLE_FRACTION = 0.25
SE_TRAIN_FRACTION = 0.30
SE_PROMPTS_FRACTION = 0.15
SE_QUESTION_SPLITS: tuple[tuple[str, float], ...] = (
    ("test", SE_TEST_FRACTION),
    ("oracle", SE_ORACLE_FRACTION),
    ("train", SE_TRAIN_FRACTION),
    ("prompts", SE_PROMPTS_FRACTION),
)

# FDU-MTL labeled reviews (train and test files pooled) → pair/labeled splits.
REVIEW_TRAIN_FRACTION = 0.45
REVIEW_ORACLE_FRACTION = 0.25
REVIEW_TEST_FRACTION = 0.30
LABELED_REVIEW_SPLITS: tuple[tuple[str, float], ...] = (
    ("train", REVIEW_TRAIN_FRACTION),
    ("oracle", REVIEW_ORACLE_FRACTION),
    ("test", REVIEW_TEST_FRACTION),
)

# FDU-MTL unlabeled reviews → prompt splits. Evaluation keeps only a fixed number of prompts per
# domain, so most unlabeled reviews go to the training prompts that methods adapt on.
UNLABELED_TRAIN_FRACTION = 0.80
UNLABELED_PROMPTS_FRACTION = 0.20
UNLABELED_REVIEW_SPLITS: tuple[tuple[str, float], ...] = (
    ("train", UNLABELED_TRAIN_FRACTION),
    ("prompts", UNLABELED_PROMPTS_FRACTION),
)


def hash_unit(domain: str, item_id: str) -> float:
    """A number in [0, 1) fixed by ``sha256(f"{domain}:{item_id}")`` (its first 64 bits)."""
    digest = hashlib.sha256(f"{domain}:{item_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(domain: str, item_id: str | int,
                 splits: tuple[tuple[str, float], ...] = SE_QUESTION_SPLITS) -> str:
    """The split of ``item_id`` in ``domain`` under the cumulative ``(name, fraction)`` table."""
    total = sum(f for _, f in splits)
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {total}")
    u = hash_unit(domain, str(item_id))
    edge = 0.0
    for name, fraction in splits:
        edge += fraction
        if u < edge:
            return name
    return splits[-1][0]  # u is just below 1.0 and rounding left the last edge under it


def order_key(*parts: object) -> str:
    """A hex sha256 of the parts joined by ``:``; sorting by it gives a fixed pseudo-random order."""
    return hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).hexdigest()


def hash_select(items: list, k: int | None, key) -> list:
    """The ``k`` items with the smallest ``key(item)`` hash (all when ``k`` is None), in that order."""
    ordered = sorted(items, key=key)
    return ordered if k is None else ordered[:k]
