"""`random.Random(seed).shuffle` for many seeds at once, with the same results.

A benchmark orders each person's profile answers with `random.Random(f"{seed}-{person}-{fold}-{protocol}")`
(history k keeps the first k answers). The whole WVS-7 needs about a million such shuffles, and one at a time
the ~230 Python-level draws of each take minutes. Here CPython's own generator still does the seeding and the
32-bit outputs (`getrandbits(32 * L)` returns L outputs in one call, least significant word first), and numpy runs
`shuffle`'s loop over all seeds at once: for i = n-1 .. 1, `j = randbelow(i + 1)` keeps the top
`(i + 1).bit_length()` bits of the next output and redraws while j > i, then swaps x[i] and x[j]
(CPython's random.py). tests/test_shuffle.py checks the permutations against `random` itself.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np


def _draws(seeds: Sequence[str], count: int, pad: int = 0) -> np.ndarray:
    """Each seed's first `count` 32-bit outputs, one seed after the other, then `pad` zeros (int64)."""
    rng = random.Random()
    parts = []
    for s in seeds:
        rng.seed(s)
        parts.append(rng.getrandbits(32 * count).to_bytes(4 * count, "little"))
    parts.append(bytes(4 * pad))
    return np.frombuffer(b"".join(parts), dtype="<u4").astype(np.int64)


def permutations(seeds: Sequence[str], lengths: Sequence[int] | np.ndarray, outputs: int | None = None) -> np.ndarray:
    """Row p: `list(range(lengths[p]))` after `random.Random(seeds[p]).shuffle`, padded with -1 to the longest.

    A list `x` of that length shuffles to `[x[k] for k in row]`. `outputs`: 32-bit outputs drawn per seed up
    front. A shuffle of n takes ~1.43n (each draw is accepted with probability over 1/2; measured for n = 232:
    331 +- 13, at most 388 in 3,000 seeds), so the default 1.6n + 48 (419) runs out very rarely, and a seed that
    does is redone by `random`."""
    n = np.asarray(lengths, dtype=np.int64)
    width = int(n.max(initial=0))
    out = np.where(np.arange(width)[None, :] < n[:, None], np.arange(width)[None, :], -1).astype(np.int32)
    lanes = np.flatnonzero(n >= 2)  # lists of 0 or 1 item draw nothing
    if lanes.size == 0:
        return out
    lanes = lanes[np.argsort(-n[lanes], kind="stable")]  # longest first: the lanes still drawing are a prefix
    m = n[lanes]
    count = outputs or int(1.6 * width) + 48
    # A lane that ran out reads on into the next lane's outputs (or the padding) until the end of its shuffle,
    # at most `width` past its own: harmless, it is redone below.
    drawn = _draws([seeds[p] for p in lanes.tolist()], count, pad=width)
    perm = np.ascontiguousarray(out[lanes])
    flat_perm = perm.reshape(-1)  # flat indices: cheaper than 2-D ones
    row_start = np.arange(len(lanes)) * width
    start = np.arange(len(lanes)) * count
    at = start.copy()  # each lane's next output
    short = np.zeros(len(lanes), dtype=bool)  # ran out of outputs
    shift_of = 32 - np.array([int(b).bit_length() for b in range(width + 1)])  # keep the top k bits of 32
    pos = m - 1  # the position each lane fills next: j = randbelow(pos + 1)
    for step in range(width - 1):
        a = int(np.searchsorted(-m, -(step + 2), side="right"))  # lanes with a position >= 1 left
        p = pos[:a]
        bound, shift = p + 1, shift_of[p + 1]
        r = drawn[at[:a]] >> shift
        at[:a] += 1
        retry = np.flatnonzero(r >= bound)
        while retry.size:  # redraw the lanes whose k-bit number was out of range, while outputs last
            spent = at[retry] >= start[retry] + count
            short[retry[spent]] = True
            retry = retry[~spent]
            r[retry] = drawn[at[retry]] >> shift[retry]
            at[retry] += 1
            retry = retry[r[retry] >= bound[retry]]
        r = np.minimum(r, p)  # only a lane that ran out can be out of range
        here, there = row_start[:a] + p, row_start[:a] + r
        flat_perm[here], flat_perm[there] = flat_perm[there], flat_perm[here]
        pos[:a] -= 1
    out[lanes] = perm
    for k in np.flatnonzero(short | (at - start > count)):
        row = list(range(int(m[k])))
        random.Random(seeds[lanes[k]]).shuffle(row)
        out[lanes[k], : m[k]] = row
    return out
