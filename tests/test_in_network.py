"""The in-network model's fit (``dfseg.latency.in_network``) on networks made from known coefficients:
the fit must recover them.  Pure arithmetic; no timing."""

import pytest

from dfseg.arch import PRESETS
from dfseg.latency.in_network import (
    BOTTLENECK_CLASS,
    CACHE_CAPACITIES_MB,
    OTHER_CLASS,
    NetworkSample,
    cached_mb,
    factor_class,
    fit_in_network,
    in_network_extra,
    sample_network,
)
from dfseg.parts import network_parts, parse_part_key, part_weight_count


def _network(other, bottleneck, cached=None, f_other=1.1, f_bottleneck=0.95, per_mb=0.0, capacity=1.0):
    """A calibration network made from known coefficients, as ``calibrate`` hands it to the fit."""
    cached = cached or {c: 0.0 for c in CACHE_CAPACITIES_MB}
    measured = f_other * other + f_bottleneck * bottleneck + per_mb * cached[capacity]
    return NetworkSample("n", 1, measured, other, bottleneck, cached)


def _cached(weights_mb):
    """Each capacity's cached MB for a network whose parts hold ``weights_mb``."""
    return {c: sum(min(w, c) for w in weights_mb) for c in CACHE_CAPACITIES_MB}


def test_two_kinds_of_network_fit_a_factor_per_kind():
    fitted = fit_in_network([_network(10, 0), _network(2, 8), _network(3, 12), _network(20, 1)])
    assert fitted.other == pytest.approx(1.1) and fitted.bottleneck == pytest.approx(0.95)
    assert fitted.cache is None  # four networks do not determine three unknowns with room to spare
    one_kind = fit_in_network([_network(10, 0), _network(20, 1, f_other=1.2)])
    assert one_kind.other == one_kind.bottleneck


def test_the_cache_term_and_its_capacity_are_recovered():
    """Networks whose extra in-network time is 0.02 per MB of each part's weights up to 2 MB: the fit finds
    the capacity among the candidates, the cost per MB and the factors."""
    layouts = [[0.3] * 12, [1.5] * 6 + [9.0] * 3, [0.6, 2.5, 4.0, 8.0], [1.2] * 10, [3.0] * 5, [0.2, 0.4, 16.0],
               [0.9] * 4 + [6.0] * 2]
    networks = [_network(5.0 + 2 * i, 12.0 * (i % 2), _cached(w), f_other=1.03, f_bottleneck=0.98, per_mb=0.02,
                         capacity=2.0) for i, w in enumerate(layouts)]
    fitted = fit_in_network(networks)
    assert fitted.cache.capacity_mb == 2.0
    assert fitted.cache.relative_per_mb == pytest.approx(0.02, rel=1e-6)
    assert fitted.factors == pytest.approx({"other": 1.03, "bottleneck": 0.98}, rel=1e-6)
    assert fitted.predict(networks[3]) == pytest.approx(networks[3].measured, rel=1e-9)
    # no cache effect in the measurements: the term is dropped, not kept at ~0
    plain = fit_in_network([_network(5.0 + 2 * i, 12.0 * (i % 2), _cached(w), per_mb=0.0)
                            for i, w in enumerate(layouts)])
    assert plain.cache is None and plain.factors == pytest.approx({"other": 1.1, "bottleneck": 0.95})


def test_too_few_networks_fall_back_to_the_median_factor():
    fitted = fit_in_network([_network(10, 0, f_other=1.1), _network(10, 0, f_other=1.3)])
    assert fitted == (pytest.approx(1.2), pytest.approx(1.2), None)


def test_a_sample_sums_a_networks_parts_by_class_and_its_cached_weights():
    arch = PRESETS["df2a"]
    keys = [p.key for p in network_parts(arch, 224, 224)]
    relative = {key: 0.001 * (i + 1) for i, key in enumerate(keys)}
    sample = sample_network("df2a", keys, relative, 1.5, "fp16")
    # a repeated block counts once per occurrence
    bottleneck = sum(relative[k] for k in keys if factor_class(k) == BOTTLENECK_CLASS)
    assert bottleneck > 0 and sample.bottleneck == pytest.approx(bottleneck)
    assert sample.other == pytest.approx(sum(relative[k] for k in keys) - bottleneck)
    assert sample.parts == len(keys) and sample.measured == 1.5
    for capacity in CACHE_CAPACITIES_MB:
        expected = sum(min(part_weight_count(parse_part_key(k)) * 2 / 1e6, capacity) for k in keys)
        assert sample.cached_mb[capacity] == pytest.approx(expected)
    # the extra time of one part inside a network: its cached weights at the fitted capacity
    key = next(k for k in keys if factor_class(k) == OTHER_CLASS)
    assert in_network_extra(key, None, "fp16") == 0.0
    assert in_network_extra(key, {"capacity_mb": 1.0, "relative_per_mb": 0.5}, "fp16") == \
        pytest.approx(0.5 * cached_mb(key, 1.0, "fp16"))
