"""Length-sorted scoring batches: longest first, stable for equal lengths, every index once."""

from ood_pl_bench.models.batching import longest_first_batches


def test_longest_first_batches_are_stable_and_cover_every_row():
    lengths = [3, 7, 3, 9, 7, 1]
    assert list(longest_first_batches(lengths, 2)) == [[3, 1], [4, 0], [2, 5]]
    assert list(longest_first_batches(lengths, 0)) == [[3], [1], [4], [0], [2], [5]]   # at least 1
    assert list(longest_first_batches([], 8)) == []
