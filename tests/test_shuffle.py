"""valuesim.data.shuffle gives the permutations `random.Random(seed).shuffle` gives, for many seeds at once."""

from __future__ import annotations

import random

import numpy as np
import pytest

from valuesim.data.shuffle import permutations


def python_order(seed: str, n: int) -> list[int]:
    row = list(range(n))
    random.Random(seed).shuffle(row)
    return row


@pytest.mark.parametrize("outputs", [None, 40, 3, 1])  # None: enough outputs; the others run out (redone by random)
def test_same_permutations_as_random(outputs: int | None) -> None:
    rng = np.random.default_rng(0)
    seeds = [f"0-USA-84007{i:04d}-{f}-values" for i in range(150) for f in (1, 2)]
    seeds += ["", "x", "é" * 10, "a" * 3000]  # empty, one byte, non-ASCII, a key over 624 words
    lengths = rng.integers(0, 700, len(seeds))  # up to 700: more than 624 outputs for some seeds
    lengths[:6] = [0, 1, 2, 3, 232, 290]
    rows = permutations(seeds, lengths, outputs)
    assert rows.shape == (len(seeds), lengths.max())
    for seed, n, row in zip(seeds, lengths, rows, strict=True):
        assert row[:n].tolist() == python_order(seed, int(n)), (seed, n)
        assert (row[n:] == -1).all()


def test_no_seeds_and_short_lists() -> None:
    assert permutations([], []).shape == (0, 0)
    assert permutations(["a", "b"], [0, 1]).tolist() == [[-1], [0]]
