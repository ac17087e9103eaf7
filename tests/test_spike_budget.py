"""The levers that trade spikes for error: an analog first layer, neurons silent at a unit's typical value,
and the spike penalty of the end-to-end fit."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import FIXTURES
from onnx2snn import convert
from onnx2snn.calibration.finetune import spikes_per_step
from onnx2snn.calibration.layer import ConvertedLayer
from onnx2snn.calibration.thresholds import at_rest, signed_neurons
from onnx2snn.structure import analyse
from runtimes.neuron import simulate_constant
from tolerances import rounding_bound

FAST = dict(samples=512, validation_points=256)


def test_analog_first_layer_is_computed_once_and_costed_as_macs():
    """2-16-16-1 tanh: with the first layer analog, one spiking layer is left, fed by the constant current
    tanh(x·W1 + b1)·W2 + b2; the report counts both affines' MACs and 16 tanh, from the ONNX weights."""
    path = FIXTURES / "torch_tanh_gemm.onnx"
    model = onnx.load(path)
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert len(analyse(model, analog_first=True).layers) == len(analyse(model).layers) - 1 == 1
    result = convert(path, first_layer="analog", **FAST)
    report = result.report
    assert len(report["layers"]) == 1
    assert report["first_layer_macs_per_sample"] == w["layers.1.weight"].size
    assert report["analog_macs_per_sample"] == w["layers.0.weight"].size
    assert report["analog_ops_per_sample"]["activations"] == 16
    assert report["validation"]["rel_l2_snn_vs_ann"] < 3e-2
    spiking = convert(path, **FAST).report
    assert report["spikes_per_sample"] < spiking["spikes_per_sample"]
    x = np.random.default_rng(1).uniform([-1, 0], [1, 1], (64, 2)).astype(np.float32)
    outputs = {b: result.network(b).run({"x": x})["y"] if "y" in result.network(b).output_names else
               next(iter(result.network(b).run({"x": x}).values())) for b in ("numpy", "onnxruntime", "snntorch")}
    np.testing.assert_allclose(outputs["onnxruntime"], outputs["numpy"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(outputs["snntorch"], outputs["numpy"], rtol=0, atol=1e-5)


def test_neurons_at_rest_compute_the_same_clip_and_are_silent_at_the_median():
    rng = np.random.default_rng(0)
    h = np.concatenate([rng.normal(0.6, 0.05, (300, 1)), rng.uniform(-0.5, 0.5, (300, 1)),
                        np.clip(rng.normal(1.0, 0.3, (300, 1)), -1, 0.98)], axis=1).astype(np.float32)
    lo, hi = h.min(axis=0), h.max(axis=0)
    T = 32
    neurons, m = at_rest(signed_neurons(lo, hi, "round"), lo, hi, h)
    assert m[2] == pytest.approx(hi[2])          # the median sits at the top of the range: snapped onto it
    assert np.isinf(neurons.theta_pos[2, 0])     # ... and that side has no neuron
    z = np.linspace(-1.5, 1.5, 301, dtype=np.float32)[:, None].repeat(3, axis=1)
    rate, count = simulate_constant(z, neurons, T)
    value = rate[..., 0] + m
    theta = np.maximum(np.where(np.isfinite(neurons.theta_pos), neurons.theta_pos, 0),
                       np.where(np.isfinite(neurons.theta_neg), neurons.theta_neg, 0))[:, 0]
    assert np.all(np.abs(value - np.clip(z, lo, hi)) <= rounding_bound(theta, T) + 1e-6)
    _, at_m = simulate_constant(np.broadcast_to(m, (1, 3)).astype(np.float32), neurons, T)
    assert at_m.sum() == 0


def test_spikes_per_step_is_the_rounding_neurons_count():
    """The penalty's spike estimate T·s(ū) against the counted spikes of a constant current: within one
    spike for symmetric thresholds, a lower bound for asymmetric ones (θ+ = 0.8 > θ- = 0.2: after a
    positive spike the membrane lands below -θ-/2 and a negative one follows; z = 0.2 costs 42 spikes
    in 64 steps where 16 would carry the rate)."""
    lo, hi = np.array([-1.0, -0.2]), np.array([1.0, 0.8])
    neurons = signed_neurons(lo, hi, "round")
    layer = ConvertedLayer(np.eye(2), np.zeros(2), neurons, np.ones((2, 1)), np.zeros(2))
    z = np.random.default_rng(0).uniform(-1, 1, (500, 2))
    T = 64
    rate, count = simulate_constant(z, neurons, T)
    estimate, slope = spikes_per_step(layer, rate[..., 0])
    assert np.all(np.abs(estimate[:, 0] * T - count[:, 0, 0]) <= 1.0)
    assert np.all(estimate[:, 1] * T <= count[:, 1, 0] + 1.0)
    assert np.all(slope[z > 0.01] > 0) and np.all(slope[z < -0.01] < 0)


def test_spike_penalty_trades_error_for_spikes():
    """The same end-to-end fit with and without a large penalty: fewer spikes, and a larger error."""
    path = FIXTURES / "torch_tanh_gemm.onnx"
    plain = convert(path, pieces=1, timesteps=16, finetune_iterations=60, **FAST).report
    paid = convert(path, pieces=1, timesteps=16, finetune_iterations=60, spike_penalty=1e-2, **FAST).report
    assert paid["spikes_per_sample"] < 0.8 * plain["spikes_per_sample"]
    assert paid["validation"]["rel_l2_snn_vs_ann"] > plain["validation"]["rel_l2_snn_vs_ann"]
