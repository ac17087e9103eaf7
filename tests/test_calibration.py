"""The calibration suite (one signed neuron per unit): thresholds, methods and their measured behaviour."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx2snn
from conftest import FIXTURES
from onnx2snn.calibration.refit import refit_affine
from onnx2snn.calibration.thresholds import activation_range, mse_neurons, signed_neurons
from onnx2snn.errors import CalibrationError
from runtimes.neuron import simulate_constant

TANH = FIXTURES / "torch_tanh_gemm.onnx"


def snn_error(path, **options) -> float:
    options = {"pieces": 1, "samples": 1024, "validation_points": 512, **options}
    return onnx2snn.convert(path, **options).report["validation"]["rel_l2_snn_vs_ann"]


@pytest.fixture(scope="module")
def errors():
    """SNN vs ANN of the tanh fixture per (method, T)."""
    return {(m, T): snn_error(TANH, calibration=m, timesteps=T)
            for m in ("none", "refit", "advanced", "finetune") for T in (16, 64)}


def test_uncalibrated_error_is_flat_in_timesteps(errors):
    """A clipped identity is not tanh: more steps do not help without calibration (DESIGN §4)."""
    assert errors["none", 16] > 0.1 and errors["none", 64] > 0.1
    assert 0.67 < errors["none", 64] / errors["none", 16] < 1.5


@pytest.mark.parametrize("method", ["refit", "advanced", "finetune"])
def test_calibration_is_several_times_better_and_improves_with_timesteps(errors, method):
    for T in (16, 64):
        assert errors[method, T] < errors["none", T] / 2.5, (method, T, errors[method, T], errors["none", T])
    assert errors[method, 64] < errors[method, 16]


def test_end_to_end_finetune_beats_layerwise_methods(errors):
    for T in (16, 64):
        assert errors["finetune", T] < min(errors["refit", T], errors["advanced", T])


def test_finetune_keeps_directly_read_layers_close_to_the_activation():
    """A residual connection reads the first layer's decoded values as they are: fitting only the readouts
    end to end moved them off tanh and made the network worse than uncalibrated (0.29 vs 0.18)."""
    path = FIXTURES / "torch_residual.onnx"
    assert snn_error(path, calibration="finetune", timesteps=32) < 0.8 * snn_error(path, calibration="none",
                                                                                   timesteps=32)


def test_default_for_one_neuron_per_unit_is_finetune():
    result = onnx2snn.convert(TANH, pieces=1, samples=256, validation_points=128, timesteps=8)
    assert result.report["calibration"] == "finetune"


def test_max_and_percentile_thresholds_are_the_per_unit_extremes():
    rng = np.random.default_rng(0)
    h = np.tanh(rng.normal(size=(1000, 5)) * np.arange(1, 6)).astype(np.float32)
    lo, hi = activation_range(h, "max")
    np.testing.assert_array_equal(lo, h.min(axis=0))
    np.testing.assert_array_equal(hi, h.max(axis=0))
    lo, hi = activation_range(h, "percentile:99")
    np.testing.assert_allclose(hi, np.percentile(h, 99, axis=0), rtol=1e-6)
    np.testing.assert_allclose(lo, np.percentile(h, 1, axis=0), rtol=1e-6)
    lo, hi = activation_range(h, "max", "layer")
    assert np.all(hi == h.max()) and np.all(lo == h.min())


def test_mse_thresholds_fit_the_activation_better_than_max():
    """min_{a,c} E|h(z) - (a·Q_θ(z) + c)|² with the searched θ is at most that of θ = max h or θ = max z."""
    rng = np.random.default_rng(1)
    z = rng.normal(scale=2.0, size=(1000, 4)).astype(np.float32)
    h, T = np.tanh(z), 16

    def fit_error(neurons):
        rate = simulate_constant(z, neurons, T)[0][..., 0]
        fits = [np.polyval(np.polyfit(rate[:, j], h[:, j], 1), rate[:, j]) for j in range(4)]
        return ((np.stack(fits, axis=1) - h) ** 2).mean(axis=0)

    neurons, gain, offset = mse_neurons(z, h, T, "round", "neuron", None, False, rng)
    searched = fit_error(neurons)
    for lo, hi in ((h.min(axis=0), h.max(axis=0)), (z.min(axis=0), z.max(axis=0))):
        assert np.all(searched <= fit_error(signed_neurons(lo, hi, "round", None, None)) * (1 + 1e-4) + 1e-9)
    decoded = simulate_constant(z, neurons, T)[0][..., 0] * gain + offset     # the returned decode is the fit
    np.testing.assert_allclose(((decoded - h) ** 2).mean(axis=0), searched, rtol=1e-3, atol=1e-9)


def test_refit_is_the_least_squares_solution():
    rng = np.random.default_rng(2)
    u, y = rng.normal(size=(500, 7)), rng.normal(size=(500, 3))
    weight, bias = refit_affine(u, y, ridge=0.0)
    solution = np.linalg.lstsq(np.concatenate([u, np.ones((500, 1))], axis=1), y, rcond=None)[0]
    np.testing.assert_allclose(weight, solution[:7], atol=1e-9)
    np.testing.assert_allclose(bias, solution[7], atol=1e-9)


@pytest.mark.parametrize("method, needed", [("advanced", 32), ("finetune", 64), ("refit", 17)])
def test_too_few_calibration_points_say_how_many_are_needed(method, needed):
    with pytest.raises(CalibrationError, match=f"needs at least {needed} calibration points"):
        onnx2snn.convert(TANH, pieces=1, calibration=method, samples=12, validate=False)


def dead_unit_model(path):
    """1 → 4 tanh → 1 where unit 2 has zero weight and bias: its activation is 0 everywhere (θ = 0)."""
    w1 = np.array([[1.5, -0.7, 0.0, 2.0]], np.float32)
    b1 = np.array([0.1, 0.3, 0.0, -0.2], np.float32)
    w2 = np.array([[1.0], [0.5], [3.0], [-0.8]], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["z"]), helper.make_node("Tanh", ["z"], ["h"]),
         helper.make_node("Gemm", ["h", "w2", "b2"], ["y"])], "dead",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (np.zeros(1, np.float32), "b2"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    helper.set_model_props(model, {"onnx2snn.domain": "x=-2:2"})
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("options", [dict(pieces=1, calibration=m) for m in
                                     ("none", "light", "potential", "advanced", "refit", "finetune")]
                         + [dict(pieces=1, threshold="mse"), dict(pieces=1, neuron="floor", readout="spiking"), {}])
def test_a_unit_that_never_activates_stays_silent_and_finite(tmp_path, options):
    result = onnx2snn.convert(dead_unit_model(tmp_path / "dead.onnx"), samples=256, validation_points=128,
                              timesteps=16, **options)
    error = result.report["validation"]["rel_l2_snn_vs_ann"]
    assert np.isfinite(error) and error < 0.5
    for tensor in result.model.graph.initializer:
        assert not np.any(np.isnan(numpy_helper.to_array(tensor))), tensor.name
