"""SYNTHETIC latency tables and accuracy landscapes, for tests and benchmarks only.

Nothing here is measured.  ``synthetic_table`` prices every part of a space in proportion to its
multiply-accumulates plus a fixed per-part cost, so latency is monotone in the partial order the
way the paper's TX2 table is; real searches use a table from ``dfseg-bench --table``.
``accuracy_landscape`` assigns every candidate a known accuracy so that a search can be scored
against the true speed/accuracy front (benchmarks/bench_search_efficiency.py).
"""

import math
from typing import Iterable, Optional

import numpy as np

from ..latency.table import LatencyTable
from ..parts import PPM_BINS, PPM_BRANCH_WIDTH, Part

SYNTHETIC_DEVICE = "synthetic (FLOP-proportional, not measured)"
# About the TX2's effective rate on DF1 (746 MMAC in ~2.5 ms) and a small fixed cost per layer.
MACS_PER_MS = 3.0e8
PART_OVERHEAD_MS = 0.01


def part_macs(part: Part) -> float:
    """Multiply-accumulates of one part (convolutions only; pooling and upsampling are free here)."""
    out_area = part.h_out * part.w_out
    in_area = part.h_in * part.w_in
    c_in, c_out = part.c_in, part.c_out
    projection = c_in * c_out * out_area if (part.stride != 1 or c_in != c_out) else 0
    if part.kind == "stem":
        return 9.0 * c_in * c_out * out_area
    if part.kind == "basic":
        return 9.0 * c_in * c_out * out_area + 9.0 * c_out * c_out * out_area + projection
    if part.kind == "bottleneck":
        inner = part.inner
        return c_in * inner * in_area + 9.0 * inner * inner * out_area + inner * c_out * out_area + projection
    if part.kind == "classifier":
        return float(c_in * c_out)
    if part.kind == "ppm":
        branches = sum(c_in * PPM_BRANCH_WIDTH * b * b for b in PPM_BINS)
        return branches + 9.0 * (c_in + len(PPM_BINS) * PPM_BRANCH_WIDTH) * c_out * out_area
    if part.kind == "wc":
        return float(c_in * c_out * out_area)
    if part.kind == "fuse":
        return c_in * c_out * in_area + 9.0 * 2 * c_out * c_out * out_area
    if part.kind == "head":
        return 9.0 * c_in * c_out * in_area
    raise ValueError("no MAC formula for part kind {!r}".format(part.kind))


def synthetic_part_ms(part: Part) -> float:
    return PART_OVERHEAD_MS + part_macs(part) / MACS_PER_MS


def synthetic_table(parts: Iterable[Part], path: Optional[str] = None) -> LatencyTable:
    """A complete, clearly labelled synthetic table for ``parts`` (e.g. ``space.all_parts()``)."""
    entries = {}  # type: Dict[str, Dict[str, float]]
    for part in parts:
        ms = synthetic_part_ms(part)
        entries[part.key] = {"median_ms": ms, "p90_ms": ms, "std_ms": 0.0, "count": 1}
    meta = {"device": SYNTHETIC_DEVICE, "backend": "synthetic", "precision": "fp32", "batch": 1}
    return LatencyTable(entries, meta, path=path)


def accuracy_landscape(codes: np.ndarray, seed: int = 0, noise: float = 0.0, floor: float = 40.0,
                       ceiling: float = 80.0) -> np.ndarray:
    """Accuracy (%) for every candidate, monotone in each order-key code when ``noise`` is 0.

    Capacity is a positively weighted sum of concave functions of the width codes (random weights
    per block position make some depth/width balances better per millisecond than others, as in the
    paper's Fig. 8b); accuracy saturates with capacity.  ``noise`` (percentage points, Gaussian,
    per candidate) breaks the partial-order assumption in some comparable pairs.
    """
    rng = np.random.default_rng(seed)
    codes = np.asarray(codes, dtype=np.float64)
    weights = rng.uniform(0.3, 1.0, size=codes.shape[1])
    exponent = rng.uniform(0.5, 0.9)
    capacity = (np.power(codes, exponent) * weights).sum(axis=1)
    scale = max(float(np.median(capacity)), 1e-9)
    accuracy = floor + (ceiling - floor) * (1.0 - np.exp(-1.5 * capacity / scale))
    if noise:
        accuracy = accuracy + rng.normal(0.0, noise, size=accuracy.shape)
    return accuracy


def violation_rate(codes: np.ndarray, accuracy: np.ndarray, pairs: int = 20000, seed: int = 0,
                   eps: float = 0.0) -> float:
    """Fraction of sampled comparable pairs x <= y (x != y) with Acc(x) > Acc(y) + eps."""
    rng = np.random.default_rng(seed)
    n = codes.shape[0]
    found = violated = 0
    for _ in range(int(math.ceil(pairs / 1000.0)) * 50):
        a = rng.integers(n, size=1000)
        b = rng.integers(n, size=1000)
        le = np.all(codes[a] <= codes[b], axis=1) & (a != b)
        found += int(le.sum())
        violated += int((accuracy[a][le] > accuracy[b][le] + eps).sum())
        if found >= pairs:
            break
    return violated / found if found else 0.0


def tiny_space(**overrides):
    """A small backbone space (a few hundred members) for tests and quick demos."""
    from ..space import SearchSpace

    options = dict(widths=(64, 128, 256), blocks_per_stage=((1, 2), (1, 3), (1, 2)))
    options.update(overrides)
    return SearchSpace(**options)
