"""Length-sorted batching for scoring: rows of similar length share a batch (less padding)."""

from __future__ import annotations

from typing import Iterator, Sequence


def longest_first_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices into ``lengths`` in batches of ``batch_size`` (at least 1), longest rows first.

    The sort is stable, so rows of equal length keep their input order: the same inputs always
    form the same batches (bf16 values depend on a batch's padding).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    step = max(1, batch_size)
    for lo in range(0, len(order), step):
        yield order[lo:lo + step]
