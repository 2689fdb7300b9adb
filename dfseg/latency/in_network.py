"""The in-network model: why a network's time is not the sum of its parts, and its fit.

A part timed alone, run after run, finds its weights in the caches as it left them; inside a network
the layers before it have replaced them, so a network's time is not the sum of its parts (2-15% more
on an Intel VM, most for networks of many small basic blocks; kind factors of 0.90-0.96 plus the cache
term on an AMD EPYC VM).  The model, fitted by weighted least squares over whole networks measured
beside the drift reference (``dfseg.bench.table_run.calibrate``)::

    measured = f_other x (the other parts) + f_bottleneck x (the bottleneck blocks)
               + c x (the weights, in MB, of each part up to a cache capacity L)

with L taken from ``CACHE_CAPACITIES_MB`` by the smallest residual.  Times are relative to the drift
reference throughout.  Device side: Python 3.6, no torch.
"""

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ..parts import parse_part_key, part_weight_count

BOTTLENECK_CLASS = "bottleneck"
OTHER_CLASS = "other"
# Cache capacities (MB) the fit tries: a part's weights up to this size are read again from a cache when it
# is timed alone, run after run, but not inside a network.
CACHE_CAPACITIES_MB = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "int8": 1}
# The fit's sanity bounds on a kind factor: outside them the cache term is taken to be fitting noise.
FACTOR_RANGE = (0.5, 2.0)


def factor_class(key: str) -> str:
    """Which in-network factor a part gets: bottleneck blocks have their own (their 1x1 convolutions keep
    less in the caches than basic blocks' 3x3 ones), every other part shares one."""
    return BOTTLENECK_CLASS if key.split(":", 1)[0] == BOTTLENECK_CLASS else OTHER_CLASS


def cached_mb(key: str, capacity_mb: float, precision: Optional[str]) -> float:
    """The part's weights (MB at the table's precision) that fit a cache of ``capacity_mb``."""
    count = part_weight_count(parse_part_key(key))
    return min(count * BYTES_PER_WEIGHT.get(precision or "fp32", 4) / 1e6, capacity_mb)


class NetworkSample(NamedTuple):
    """One calibration network as the fit sees it: its measured time net of the per-call overhead, the
    sums of its parts' entries by factor class, and its cached weights (MB) at each capacity."""

    label: str
    parts: int
    measured: float
    other: float
    bottleneck: float
    cached_mb: Dict[float, float]

    @property
    def summed(self) -> float:
        return self.other + self.bottleneck

    @property
    def bottleneck_share(self) -> float:
        return round(self.bottleneck / self.summed, 4)

    @property
    def factor(self) -> float:
        return round(self.measured / self.summed, 5)


def sample_network(label: str, keys: Sequence[str], relative: Mapping[str, float], measured: float,
                   precision: Optional[str]) -> NetworkSample:
    """The sample of a network of parts ``keys`` whose entries (relative to the reference) are ``relative``."""
    sums = {BOTTLENECK_CLASS: 0.0, OTHER_CLASS: 0.0}
    for key in keys:
        sums[factor_class(key)] += relative[key]
    cached = {capacity: sum(cached_mb(key, capacity, precision) for key in keys) for capacity in CACHE_CAPACITIES_MB}
    return NetworkSample(label, len(keys), round(measured, 6), sums[OTHER_CLASS], sums[BOTTLENECK_CLASS], cached)


class CacheTerm(NamedTuple):
    capacity_mb: float
    relative_per_mb: float


class InNetworkFit(NamedTuple):
    """The fitted model: a factor per class and, where the measurements support it, the cache term."""

    other: float
    bottleneck: float
    cache: Optional[CacheTerm] = None

    @property
    def factors(self) -> Dict[str, float]:
        return {OTHER_CLASS: self.other, BOTTLENECK_CLASS: self.bottleneck}

    def predict(self, sample: NetworkSample) -> float:
        value = self.other * sample.other + self.bottleneck * sample.bottleneck
        if self.cache is not None:
            value += self.cache.relative_per_mb * sample.cached_mb[self.cache.capacity_mb]
        return value


def in_network_extra(key: str, cache: Optional[Mapping[str, Any]], precision: Optional[str]) -> float:
    """The time (relative to the reference) that ``key`` takes inside a network beyond its scaled entry: the
    fitted cost per MB of weights that were cached when it was timed alone (``cache`` as the table's
    ``meta.in_network.cache`` holds it)."""
    if not cache:
        return 0.0
    return cache["relative_per_mb"] * cached_mb(key, cache["capacity_mb"], precision)


def fit_in_network(samples: Sequence[NetworkSample]) -> InNetworkFit:
    """Each kind gets its own factor only where networks dominated by each were measured; the cache term only
    where there are two networks more than unknowns, it comes out positive with factors in ``FACTOR_RANGE``,
    and it takes at least a tenth off the residual of the factors alone.  Otherwise the fit falls back to the
    factors alone, and then to the median of measured / summed."""
    import numpy as np

    measured = np.array([s.measured for s in samples])
    weights = 1.0 / measured  # relative errors count alike, whatever a network's length
    shares = [s.bottleneck_share for s in samples]
    both_kinds = max(shares) >= 0.5 and min(shares) <= 0.5
    kinds = [[s.other, s.bottleneck] if both_kinds else [s.other + s.bottleneck] for s in samples]

    def solve(columns: List[List[float]]) -> Optional[Tuple[Any, float]]:
        matrix = np.array(columns, dtype=float)
        if len(samples) < matrix.shape[1] + 2:
            return None
        solution = np.linalg.lstsq(matrix * weights[:, None], measured * weights, rcond=None)[0]
        factors = solution[:len(kinds[0])]
        if not np.all(np.isfinite(solution)) or np.any(factors < FACTOR_RANGE[0]) or np.any(factors > FACTOR_RANGE[1]):
            return None
        if matrix.shape[1] > len(kinds[0]) and solution[-1] <= 0:
            return None
        residual = float(np.sum(((matrix @ solution - measured) * weights) ** 2))
        return solution, residual

    def as_fit(solution: Any, capacity: Optional[float] = None) -> InNetworkFit:
        other = float(solution[0])
        cache = CacheTerm(capacity, float(solution[-1])) if capacity is not None else None
        return InNetworkFit(other, float(solution[1]) if both_kinds else other, cache)

    best: Optional[Tuple[float, InNetworkFit]] = None
    for capacity in CACHE_CAPACITIES_MB:
        found = solve([row + [s.cached_mb[capacity]] for row, s in zip(kinds, samples)])
        if found is not None and (best is None or found[1] < best[0]):
            best = (found[1], as_fit(found[0], capacity))
    plain = solve(kinds)
    if best is not None and (plain is None or best[0] <= 0.9 * plain[1]):
        return best[1]
    if plain is not None:
        return as_fit(plain[0])
    overall = float(np.median([s.factor for s in samples]))
    return InNetworkFit(overall, overall)
