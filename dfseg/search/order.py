"""The partial order "x is shallower and narrower than y" (x <= y, the paper's x < y, section 3.3).

Definition.  x <= y when x and y share stem, block kinds and head, and in every stage s the blocks
of x map, in order and one-to-one, onto blocks of y that are each at least as wide: there is a
strictly increasing f with width(x_s[i]) <= width(y_s[f(i)]).  So y has at least as many blocks
per stage (deeper) and x's blocks are matched by no narrower ones (wider).

Vector form.  Widths never decrease, so the best map sends x's blocks onto y's *last* blocks: any
increasing f has f(i) <= i + n_y - n_x, hence width(y[f(i)]) <= width(y[i + n_y - n_x]).  Writing
each stage right-aligned into a fixed-length vector of width codes (code = 1 + rank of the width,
0 = no block) therefore gives:  x <= y  iff  key(x) <= key(y) elementwise.  A zero in y opposite a
block of x fails the test, so "fewer blocks" needs no separate check.  This is ``order_key`` of
``dfseg.space.SearchSpace``; the decoder space uses the ranks of [C3, C4, C5] (``DecoderSpace``).

The elementwise order on vectors is reflexive, antisymmetric and transitive, so this is a partial
order (tests/test_order.py checks the three laws, the equivalence with the block-mapping definition
and Lat(x) <= Lat(y) on a FLOP-proportional table with hypothesis).
"""

from typing import Optional, Sequence

import numpy as np


def precedes(x_key: Sequence[int], y_key: Sequence[int]) -> bool:
    """x <= y: x is shallower and narrower than (or equal to) y."""
    if len(x_key) != len(y_key):
        raise ValueError("order keys of different spaces cannot be compared")
    return all(a <= b for a, b in zip(x_key, y_key))


def comparable(x_key: Sequence[int], y_key: Sequence[int]) -> bool:
    return precedes(x_key, y_key) or precedes(y_key, x_key)


def precedent_mask(codes: np.ndarray, key: Sequence[int], start: int = 0, stop: Optional[int] = None,
                   top: Optional[int] = None) -> np.ndarray:
    """Boolean mask over ``codes[start:stop]`` of the rows m with m <= key.

    ``codes`` is (N, L) uint8; column-major storage makes each column test one contiguous pass,
    which is what keeps a pruning update over 10^6 candidates well under 0.1 s.  ``top`` (the
    largest code) lets columns the key cannot constrain be skipped.
    """
    rows = codes[start:stop]
    mask = np.ones(rows.shape[0], dtype=bool)
    if top is None:
        top = int(codes.max()) if codes.size else 0
    for column, bound in enumerate(key):
        if bound >= top:
            continue  # every code passes
        np.logical_and(mask, rows[:, column] <= bound, out=mask)
    return mask


def successor_mask(codes: np.ndarray, key: Sequence[int]) -> np.ndarray:
    """Boolean mask over ``codes`` of the rows m with key <= m (m is deeper and wider than ``key``)."""
    mask = np.ones(codes.shape[0], dtype=bool)
    for column, bound in enumerate(key):
        if bound <= 0:
            continue  # every code passes
        np.logical_and(mask, codes[:, column] >= bound, out=mask)
    return mask
