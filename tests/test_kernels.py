"""The compiled IF-layer step (``runtimes.kernels``) against its numpy composition in ``CompactLayer``."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtimes import kernels
from runtimes.compact import CompactLayer
from runtimes.neuron import NeuronParams

pytestmark = pytest.mark.skipif(not kernels.available, reason="numba is not installed")


def _layer(rng, n, K, signed, fraction, dtype):
    theta_pos = rng.uniform(0.05, 1.0, (n, K))
    theta_neg = rng.uniform(0.05, 1.0, (n, K))
    theta_pos[rng.random((n, K)) < 0.3] = np.inf           # padding and one-sided neurons
    theta_neg[rng.random((n, K)) < 0.3] = np.inf
    params = NeuronParams(bias=rng.normal(0, 0.3, (n, K)), theta_pos=theta_pos, theta_neg=theta_neg,
                          v0=rng.normal(0, 0.2, (n, K)), signed=signed, fire_fraction=fraction)
    return CompactLayer(params, rng.normal(size=(n, K)), rng.normal(size=n), dtype)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 9), K=st.integers(1, 5), signed=st.booleans(),
       fraction=st.sampled_from([0.5, 1.0, 0.3]), dtype=st.sampled_from([np.float32, np.float64]),
       with_bias=st.booleans())
def test_compiled_step_equals_numpy(seed, n, K, signed, fraction, dtype, with_bias):
    """Same membranes and spikes bit for bit; decoded values equal up to the order of the decode's sum
    (both layouts: one neuron per unit, points by rows; several, points by columns)."""
    rng = np.random.default_rng(seed)
    layer = _layer(rng, n, K, signed, fraction, dtype)
    N, T = 7, 12
    pre_bias = rng.normal(0, 0.5, n).astype(dtype) if with_bias else None
    v_fast = layer.initial_membrane(N)                   # [M, N] for several neurons per unit
    v_ref = layer.by_point(layer.initial_membrane(N)).copy()
    rates_fast, rates_ref = np.zeros_like(v_fast), np.zeros((N, layer.M), dtype)
    for _ in range(T):
        z = rng.normal(0, 1.0, (N, n)).astype(dtype)
        out = np.empty((N, n), dtype)
        events = layer.advance(v_fast, z, out=out, rates=rates_fast, pre_bias=pre_bias)
        s = layer.step(v_ref, layer.drive(z if pre_bias is None else z + pre_bias))
        rates_ref += s
        np.testing.assert_array_equal(layer.by_point(v_fast), v_ref)
        assert events == np.count_nonzero(s)
        np.testing.assert_allclose(out, layer.decode(s), rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    np.testing.assert_array_equal(layer.by_point(rates_fast), rates_ref)


def test_one_neuron_per_unit_takes_the_elementwise_path():
    """M = n with neuron j in unit j: the unit-by-unit loop gives the numpy values exactly."""
    rng = np.random.default_rng(1)
    theta = rng.uniform(0.1, 1.0, (50, 1)).astype(np.float32)
    layer = CompactLayer(NeuronParams(bias=np.zeros((50, 1)), theta_pos=theta, theta_neg=theta, v0=theta / 2,
                                      signed=True, fire_fraction=0.5), rng.normal(size=(50, 1)), rng.normal(size=50),
                         np.float32)
    assert layer._one_per_unit
    v_fast, v_ref = layer.initial_membrane(30), layer.by_point(layer.initial_membrane(30)).copy()
    for _ in range(16):
        z = rng.normal(0, 0.5, (30, 50)).astype(np.float32)
        out = np.empty((30, 50), np.float32)
        layer.advance(v_fast, z, out=out)
        s = layer.step(v_ref, layer.drive(z))
        np.testing.assert_array_equal(out, layer.decode(s))
    np.testing.assert_array_equal(layer.by_point(v_fast), v_ref)
