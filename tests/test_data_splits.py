"""Deterministic hash splits: fixed per item, independent of order and of the other items."""

from __future__ import annotations

import collections
import random

import pytest

from ood_pl_bench.data.splits import (LABELED_REVIEW_SPLITS, SE_QUESTION_SPLITS,
                                      UNLABELED_REVIEW_SPLITS, assign_split, hash_select, hash_unit,
                                      order_key)


def test_fractions_sum_to_one():
    for table in (SE_QUESTION_SPLITS, LABELED_REVIEW_SPLITS, UNLABELED_REVIEW_SPLITS):
        assert sum(f for _, f in table) == pytest.approx(1.0)
    assert dict(SE_QUESTION_SPLITS) == {"test": 0.30, "oracle": 0.25, "train": 0.30, "prompts": 0.15}


def test_split_is_a_function_of_domain_and_id_only():
    ids = [str(i) for i in range(2000)]
    first = {i: assign_split("beer", i) for i in ids}
    shuffled = ids[:]
    random.Random(7).shuffle(shuffled)
    # Another order, other items around, a fresh call: the same split for every id.
    assert {i: assign_split("beer", i) for i in shuffled} == first
    assert {i: assign_split("beer", i) for i in shuffled[:50]} == {i: first[i] for i in shuffled[:50]}
    assert assign_split("beer", 17) == assign_split("beer", "17")
    # The domain is part of the hash: another site splits its ids differently.
    assert sum(first[i] != assign_split("coffee", i) for i in ids) > 500


def test_split_matches_the_documented_hash():
    import hashlib

    u = int.from_bytes(hashlib.sha256(b"ai:123").digest()[:8], "big") / 2.0**64
    assert hash_unit("ai", "123") == u
    edges, name = 0.0, None
    for split, fraction in SE_QUESTION_SPLITS:
        edges += fraction
        if u < edges:
            name = split
            break
    assert assign_split("ai", "123") == name


def test_fractions_are_respected_on_many_ids():
    counts = collections.Counter(assign_split("music", f"r{i}", LABELED_REVIEW_SPLITS) for i in range(20000))
    for split, fraction in LABELED_REVIEW_SPLITS:
        assert counts[split] / 20000 == pytest.approx(fraction, abs=0.015)


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError):
        assign_split("x", "1", (("train", 0.5), ("test", 0.4)))


def test_order_key_and_hash_select_are_order_independent():
    items = [f"p{i}" for i in range(100)]
    rev = list(reversed(items))
    key = lambda s: order_key("dvd", s)  # noqa: E731
    assert hash_select(items, 10, key) == hash_select(rev, 10, key)
    # A smaller cap is a prefix of a larger one: reduced subsets are nested.
    assert hash_select(items, 10, key) == hash_select(items, 30, key)[:10]
    assert hash_select(items, None, key) == sorted(items, key=key)
    assert order_key("a", 1) == order_key("a", "1") != order_key("a", "2")
