"""Property tests of the IF neuron (runtimes.neuron): charge conservation, sign symmetry, rate bound."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from runtimes.neuron import NeuronParams, if_step, simulate_constant
from tolerances import rounding_bound

floats = st.floats(-4.0, 4.0, allow_nan=False, width=64)


def params(theta_pos, theta_neg, signed=True, fraction=0.5, v0=0.0, bias=0.0):
    shape = (1, 1)
    return NeuronParams(bias=np.full(shape, bias), theta_pos=np.full(shape, theta_pos),
                        theta_neg=np.full(shape, theta_neg), v0=np.full(shape, v0), signed=signed,
                        fire_fraction=fraction)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(floats, min_size=1, max_size=64), st.floats(0.05, 3.0), st.floats(0.05, 3.0),
       st.sampled_from([0.5, 1.0]), floats)
def test_charge_conservation(currents, theta_pos, theta_neg, fraction, v0):
    """v_T + Σ s_t = v_0 + Σ z_t, whatever the inputs and thresholds."""
    p = params(theta_pos, theta_neg, fraction=fraction, v0=v0)
    v = p.v0.copy()
    emitted = 0.0
    for z in currents:
        s, v = if_step(v, np.array([z]), p)
        emitted += float(s.sum())
        assert float(s.sum()) in (0.0, theta_pos, -theta_neg)   # at most one spike, of the right amplitude
    assert np.isclose(float(v.sum()) + emitted, v0 + sum(currents), atol=1e-9)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(floats, min_size=1, max_size=64), st.floats(0.05, 3.0))
def test_sign_symmetry(currents, theta):
    """With θ+ = θ- and v0 = 0, negating every input negates every spike (rounding neuron)."""
    p = params(theta, theta)
    v_pos, v_neg = p.v0.copy(), p.v0.copy()
    for z in currents:
        if np.isclose(abs(float(v_pos.sum()) + z), theta / 2, rtol=0, atol=1e-12):
            return   # an exact tie fires on both sides (u >= θ/2, u <= -θ/2): symmetry ends there
        s_pos, v_pos = if_step(v_pos, np.array([z]), p)
        s_neg, v_neg = if_step(v_neg, np.array([-z]), p)
        np.testing.assert_allclose(s_neg, -s_pos)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(floats, st.floats(0.05, 3.0), st.floats(0.05, 3.0), st.sampled_from([1, 2, 7, 32, 100]))
def test_rounding_rate_within_half_step(z, theta_pos, theta_neg, timesteps):
    """Constant input: the rounding neuron's rate is within θ/(2T) of clip(z, -θ-, θ+)."""
    rate, _ = simulate_constant(np.array([z]), params(theta_pos, theta_neg), timesteps)
    target = np.clip(z, -theta_neg, theta_pos)
    theta = theta_pos if z >= 0 else theta_neg
    assert abs(float(rate.sum()) - target) <= rounding_bound(theta, timesteps)


def test_floor_neuron_is_biased_for_negative_inputs():
    """The papers' floor neuron (a = 1, v0 = θ/2) loses about one spike on negative inputs (DESIGN §4)."""
    theta, T, n = 1.0, 32, 33
    z = np.linspace(-0.9, -0.1, n)
    floor = NeuronParams(bias=np.zeros((n, 1)), theta_pos=np.ones((n, 1)), theta_neg=np.ones((n, 1)),
                         v0=np.full((n, 1), theta / 2), signed=True, fire_fraction=1.0)
    rate, _ = simulate_constant(z, floor, T)
    error = rate[:, 0] - z
    assert error.mean() > 0.5 * theta / T               # biased: one negative spike short on average
    assert np.abs(error).max() <= 1.5 * theta / T + 1e-9
    rounding = NeuronParams(bias=floor.bias, theta_pos=floor.theta_pos, theta_neg=floor.theta_neg,
                            v0=np.zeros((n, 1)), signed=True, fire_fraction=0.5)
    rate, _ = simulate_constant(z, rounding, T)
    assert abs((rate[:, 0] - z).mean()) < 0.25 * theta / T   # the rounding neuron is unbiased


def test_unsigned_neuron_never_fires_negative():
    p = params(1.0, 1.0, signed=False)
    rate, count = simulate_constant(np.array([-2.0]), p, 16)
    assert rate.sum() == 0 and count.sum() == 0


def test_infinite_threshold_never_fires():
    p = params(np.inf, np.inf)
    rate, count = simulate_constant(np.array([1e6]), p, 8)
    assert count.sum() == 0 and np.isfinite(rate).all()
