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
from onnx2snn.calibration.rest import move_rest
from onnx2snn.calibration.thresholds import signed_neurons
from onnx2snn.structure import analyse
from runtimes.neuron import simulate_constant
from tolerances import rounding_bound

FAST = dict(samples=512, validation_points=256)


def test_analog_first_layer_does_not_cascade_down_a_deep_chain():
    """--first-layer analog computes only the layer fed by the inputs once per point: on the 4x100 Poisson
    chain the three layers after it stay spiking (each is static once its predecessor is analog, which
    must not demote it in turn)."""
    model = onnx.load(FIXTURES.parent.parent / "models" / "poisson1d.onnx")
    plain, first = analyse(model), analyse(model, analog_first=True)
    assert len(plain.layers) == 4
    assert [l.name for l in first.layers] == [l.name for l in plain.layers[1:]]


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


def test_moving_the_rest_value_keeps_the_function_and_silences_saturated_units():
    """Three units: one saturated at +θ+ on most points, one spread evenly, one resting at -0.3.  The
    moved neurons compute the same clip (within the rounding bound of their new, coarser thresholds), a
    saturated point costs no spike, and the expected spikes (counted, constant currents) do not grow."""
    rng = np.random.default_rng(0)
    z = np.stack([np.where(rng.random(400) < 0.7, 2.0, rng.uniform(-1, 1, 400)), rng.uniform(-1, 1, 400),
                  rng.normal(-0.3, 0.05, 400)], axis=1).astype(np.float32)
    lo, hi = np.array([-1, -1, -1], np.float32), np.array([1, 1, 1], np.float32)
    layer = ConvertedLayer(np.eye(3, dtype=np.float32), np.zeros(3, np.float32), signed_neurons(lo, hi, "round"),
                           np.ones((3, 1), np.float32), np.zeros(3, np.float32))
    moved = move_rest(layer, z)
    assert np.isinf(moved.neurons.theta_pos[0, 0]) and moved.decode_offset[0] == 1.0    # rests at +θ+
    assert moved.decode_offset[2] == pytest.approx(-0.3, abs=0.03)
    T = 32
    rate, count = simulate_constant(z, moved.neurons, T)
    value = rate[..., 0] + moved.decode_offset
    theta = np.maximum(np.where(np.isfinite(moved.neurons.theta_pos), moved.neurons.theta_pos, 0),
                       np.where(np.isfinite(moved.neurons.theta_neg), moved.neurons.theta_neg, 0))[:, 0]
    assert np.all(np.abs(value - np.clip(z, lo, hi)) <= rounding_bound(theta, T) + 1e-6)
    before = simulate_constant(z, layer.neurons, T)[1][..., 0]
    assert count[z[:, 0] >= 1, 0, 0].sum() == 0 and before[z[:, 0] >= 1, 0].min() == T
    assert np.all(count[..., 0].mean(axis=0) <= before.mean(axis=0) + 1e-9)
    assert count[:, 0, 0].mean() < 0.5 * before[:, 0].mean() and count[:, 2, 0].mean() < 0.5 * before[:, 2].mean()


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


def test_target_error_search_keeps_the_cheapest_candidate_that_meets_it():
    """A loose target on a 2-16-16-1 fixture: every candidate is listed with its error and energy on the
    selection points; the kept one is the cheapest of those within the goal, and on fresh points it meets
    the target."""
    from onnx2snn.search import MARGIN, cheapest_conversion
    target = 3e-2
    result = cheapest_conversion(FIXTURES / "torch_tanh_gemm.onnx", target, samples=512, validation_points=1024,
                                 finetune_iterations=40)
    report = result.report
    rows = report["search"]
    assert {r["method"] for r in rows} >= {"pwl", "phase"}
    met = [r for r in rows if r["rel_l2_snn_vs_ann"] <= MARGIN * target]
    cheapest = min(met, key=lambda r: r["energy_ratio"])
    assert report["timesteps"] == cheapest["timesteps"]
    assert report["pieces"] == ("auto" if cheapest["method"] == "pwl" else 1)
    assert report["coding"] == ("phase" if cheapest["method"] == "phase" else "rate")
    assert report["validation"]["rel_l2_snn_vs_ann"] <= target
    assert any(r["pareto"] for r in rows) and cheapest["pareto"]
    assert report["energy"]["45nm_fp32"]["ratio"] == pytest.approx(cheapest["energy_ratio"], rel=0.1)


def test_the_phase_stream_adds_digits_until_the_goal_is_met_or_the_error_stops_falling():
    from onnx2snn.search import Candidate, next_phase_timesteps

    def stream(*errors_by_t):
        return [Candidate("phase", T, "spiking", "zero", rel_l2=e) for T, e in errors_by_t]
    assert next_phase_timesteps(stream((4, 1e-3)), 1e-2) is None                          # the fewest digits
    assert next_phase_timesteps(stream((4, 2e-2)), 1e-2) == 5
    assert next_phase_timesteps(stream((4, 2e-2), (5, 1.5e-2)), 1e-2) == 6
    assert next_phase_timesteps(stream((4, 2e-2), (5, 9e-3)), 1e-2) is None
    assert next_phase_timesteps(stream((4, 2e-2), (5, 2.1e-2)), 1e-2) is None              # a floor
    assert next_phase_timesteps(stream((12, 2e-2)), 1e-2) is None                          # the most digits


def test_target_error_refuses_what_it_cannot_reach_and_bad_models():
    from onnx2snn.errors import CalibrationError
    from onnx2snn.search import cheapest_conversion
    with pytest.raises(CalibrationError, match="energy model 'chip'.*45nm_fp32"):
        cheapest_conversion(FIXTURES / "torch_tanh_gemm.onnx", 1e-2, energy_model="chip")
    with pytest.raises(CalibrationError, match="target error must be in"):
        cheapest_conversion(FIXTURES / "torch_tanh_gemm.onnx", 2.0)


def test_moved_rest_values_run_alike_in_every_runtime():
    """One-neuron units with moved rests (one-sided neurons: θ = inf on a side, a bias -m, an offset c)
    behind an analog first layer: numpy, onnxruntime and snnTorch agree spike for spike (runtimes.verify)."""
    from runtimes.verify import verify
    result = convert(FIXTURES / "torch_tanh_gemm.onnx", pieces=1, timesteps=16, rest="typical",
                     first_layer="analog", finetune_iterations=20, **FAST)
    thetas = [numpy_helper.to_array(t) for t in result.model.graph.initializer if t.name.endswith("/theta_pos")]
    assert any(np.isinf(t).any() for t in thetas)           # at least one unit rests at its clip
    x = np.random.default_rng(2).uniform([-1, 0], [1, 1], (256, 2)).astype(np.float32)
    report = verify(result.model, x)
    assert report.ok and {"onnxruntime", "snntorch"} <= set(report.backends), report.lines()
