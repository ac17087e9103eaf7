"""The phase code (``coding = "phase"``, ``runtimes.spec``): weighted spikes, the signed binary digits of a
saturating membrane's value, most significant first.

A hand-built artifact ``x → MatMul → Add → IF(phase) → Mul(w) → ReduceSum(-1) → Add(c) → Decode → MatMul →
Add → y`` against a plain loop of the spec's equations and against the closed form (the value rounded to
a multiple of θ·2^(1-T)); the three runtimes against each other; the converter's phase conversions."""

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

import runtimes
from artifact_graph import artifact_model
from conftest import FIXTURES
from onnx2snn import convert
from onnx2snn.calibration.layer import ConvertedLayer, simulate_layer
from onnx2snn.errors import CalibrationError
from onnx2snn.report import relative_l2
from runtimes import spec
from runtimes.errors import ArtifactError
from runtimes.neuron import NeuronParams
from tolerances import BACKEND_FLOAT32, BACKEND_FLOAT64

N_IN, UNITS, N_OUT, T = 2, 8, 2, 6


def _parameters(dtype, seed=0):
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.3, 1.0, (UNITS, 1))
    p = {"W1": rng.normal(0, 1.5, (N_IN, UNITS)), "b1": rng.normal(0, 0.3, UNITS), "v0": np.zeros((UNITS, 1)),
         "beta": rng.normal(0, 0.1, (UNITS, 1)), "theta_pos": theta, "theta_neg": theta.copy(),
         "w": rng.normal(0, 1, (UNITS, 1)), "c": rng.normal(0, 0.1, UNITS),
         "W2": rng.normal(0, 1, (UNITS, N_OUT)), "b2": rng.normal(0, 0.1, N_OUT)}
    return {k: v.astype(dtype) for k, v in p.items()}


def _artifact(p, attrs=None, timesteps=T):
    dtype = helper.np_dtype_to_tensor_dtype(p["W1"].dtype)
    attrs = {"signed": 1, "fire_fraction": 0.5, "coding": "phase"} if attrs is None else attrs
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["xw"], name="l1/MatMul"),
        helper.make_node("Add", ["xw", "b1"], ["z"], name="l1/Add"),
        helper.make_node(spec.IF_OP, ["z", "v0", "beta", "theta_pos", "theta_neg"], ["s", "v"], name="if1",
                         domain=spec.DOMAIN, **attrs),
        helper.make_node("Mul", ["s", "w"], ["sw"], name="if1/decode_mul"),
        helper.make_node("ReduceSum", ["sw", "axes"], ["summed"], name="if1/decode_sum", keepdims=0),
        helper.make_node("Add", ["summed", "c"], ["h/step"], name="if1/decode_add"),
        helper.make_node(spec.DECODE_OP, ["h/step"], ["h"], name="h/decode", domain=spec.DOMAIN),
        helper.make_node("MatMul", ["h", "W2"], ["hw"], name="out/MatMul"),
        helper.make_node("Add", ["hw", "b2"], ["y"], name="out/Add"),
    ]
    return artifact_model(nodes, p, [helper.make_tensor_value_info("x", dtype, ["N", N_IN])],
                          [helper.make_tensor_value_info("y", dtype, ["N", N_OUT])], timesteps, "phase")


def _plain_loop(x, p, timesteps=T):
    """The spec's equations as a plain loop in float64: (unit values h, events)."""
    p = {k: v.astype(np.float64) for k, v in p.items()}
    theta = p["theta_pos"]
    v = np.clip(x.astype(np.float64) @ p["W1"] + p["b1"] + p["beta"][:, 0], -theta[:, 0], theta[:, 0])
    total, events = np.zeros_like(v), 0
    for t in range(timesteps):
        step = theta[:, 0] * 2.0 ** -t
        d = np.where(v >= 0.5 * step, 1.0, np.where(v <= -0.5 * step, -1.0, 0.0))
        v = v - d * step
        total += d * step
        events += int(np.count_nonzero(d))
    return total * p["w"][:, 0] + p["c"], events


def _inputs(dtype, points=200, seed=1):
    return np.random.default_rng(seed).uniform(-1.5, 1.5, (points, N_IN)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_runtime_is_the_spec_and_the_rounded_clip(dtype):
    p = _parameters(dtype)
    x = _inputs(dtype)
    run = runtimes.SpikingNetwork(_artifact(p)).run_with_stats({"x": x})
    h, events = _plain_loop(x, p)
    np.testing.assert_allclose(run.outputs["y"], h @ p["W2"].astype(np.float64) + p["b2"], rtol=1e-5, atol=1e-5)
    assert run.spikes["if1"].events == events
    # closed form: clip(z + β, -θ, θ) to within half the last digit, θ·2^-T, and never more than T events
    theta = p["theta_pos"][:, 0].astype(np.float64)
    clipped = np.clip(x.astype(np.float64) @ p["W1"] + p["b1"] + p["beta"][:, 0], -theta, theta)
    decoded = (h - p["c"]) / p["w"][:, 0]
    assert np.all(np.abs(decoded - clipped) <= theta * 2.0 ** -T * (1 + 1e-5) + 1e-6)
    assert events <= x.shape[0] * UNITS * T
    # saturated units send one event, units at 0 none
    saturated = np.abs(x.astype(np.float64) @ p["W1"] + p["b1"] + p["beta"][:, 0]) >= theta
    assert saturated.any()


def test_a_saturated_unit_sends_one_event_and_a_unit_at_rest_none():
    p = _parameters(np.float64)
    p["W1"][:] = 0.0
    p["beta"][:] = 0.0
    p["b1"] = np.where(np.arange(UNITS) % 2 == 0, 10.0, 0.0)      # even units saturated, odd ones at 0
    run = runtimes.SpikingNetwork(_artifact(p)).run_with_stats({"x": _inputs(np.float64, 10)})
    assert run.spikes["if1"].events == 10 * (UNITS // 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backends_agree_with_numpy(dtype):
    p = _parameters(dtype, seed=3)
    x = _inputs(dtype, 300, seed=4)
    model = _artifact(p)
    reference = runtimes.SpikingNetwork(model).run_with_stats({"x": x})
    bound = BACKEND_FLOAT32 if dtype == np.float32 else BACKEND_FLOAT64
    for backend in ("snntorch", "onnxruntime"):
        run = runtimes.SpikingNetwork(model, backend=backend).run_with_stats({"x": x})
        assert relative_l2(run.outputs["y"], reference.outputs["y"]) <= bound, backend
        assert run.spikes["if1"].events == reference.spikes["if1"].events, backend


def test_calibration_simulation_is_the_runtime():
    p = _parameters(np.float32, seed=5)
    neurons = NeuronParams(bias=p["beta"], theta_pos=p["theta_pos"], theta_neg=p["theta_neg"], v0=p["v0"],
                           signed=True, fire_fraction=0.5, coding="phase")
    layer = ConvertedLayer(p["W1"], p["b1"], neurons, p["w"], p["c"])
    x = _inputs(np.float32, 100, seed=6)
    trace = simulate_layer(x, layer, T, static=True)
    run = runtimes.SpikingNetwork(_artifact(p)).run({"x": x})
    np.testing.assert_allclose(trace.mean @ p["W2"] + p["b2"], run["y"], rtol=1e-5, atol=1e-6)
    assert np.all(trace.series == trace.series[0])          # a decoded value: the same at every step


@pytest.mark.parametrize("attrs, message", [
    ({"signed": 1, "fire_fraction": 0.5, "coding": "burst"}, "'coding' = 'burst'"),
    ({"signed": 1, "fire_fraction": 0.5, "coding": "phase", "leak": 0.9}, "no leak")])
def test_invalid_codings_are_refused_at_load(attrs, message, tmp_path):
    path = tmp_path / "bad.snn.onnx"
    onnx.save(_artifact(_parameters(np.float32), attrs), path)
    with pytest.raises(ArtifactError, match=message):
        runtimes.load(path)


def test_phase_conversion_is_accurate_and_cheap(tmp_path):
    source = tmp_path / "tanh.onnx"
    shutil.copy(FIXTURES / "torch_tanh_gemm.onnx", source)
    result = convert(source, timesteps=7, coding="phase", samples=1024, validation_points=512)
    report = result.report
    assert report["coding"] == "phase" and report["pieces"] == 1
    nodes = result.model.graph.node
    assert all(any(a.name == "coding" and a.s == b"phase" for a in n.attribute) for n in nodes if n.op_type == "IF")
    assert sum(n.op_type == "Decode" for n in nodes) >= len(report["layers"])     # a Decode after each layer
    x = np.random.default_rng(7).uniform([-1, 0], [1, 1], (400, 2)).astype(np.float32)
    ann = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    runs = {b: result.network(b).run_with_stats({"x": x}) for b in ("numpy", "snntorch", "onnxruntime")}
    assert relative_l2(runs["numpy"].outputs["u"], ann) < 1e-2
    for backend, run in runs.items():
        assert relative_l2(run.outputs["u"], runs["numpy"].outputs["u"]) <= BACKEND_FLOAT32, backend
    # at most T events per neuron and point, and cheaper than the rate code's one neuron per unit at the
    # T its resolution matches (2^(T-1) = 64 steps) would be: its value needs |h|/θ·64 events per unit
    layers = report["layers"]
    assert all(l["spike_rate"] <= 1.0 for l in layers)
    assert report["spikes_per_sample"] < 0.25 * 64 * sum(l["neurons"] for l in layers)


@pytest.mark.parametrize("options, flag", [(dict(pieces=4), "--pieces 4"), (dict(neuron="floor"), "--neuron floor"),
                                           (dict(rest="typical"), "--rest typical"), (dict(timesteps=24), "T = 24")])
def test_phase_refuses_what_it_does_not_do(options, flag, tmp_path):
    with pytest.raises(CalibrationError, match=flag):
        convert(FIXTURES / "torch_tanh_gemm.onnx", coding="phase", **{"timesteps": 6, **options})


def test_more_digits_than_float_precision_are_refused():
    model = _artifact(_parameters(np.float32))
    with pytest.raises(ArtifactError, match="at most 20"):
        runtimes.SpikingNetwork(model, timesteps=21)
    with pytest.raises(ArtifactError, match="at most 20"):
        runtimes.SpikingNetwork(model).run({"x": _inputs(np.float32, 4)}, timesteps=64)


@pytest.mark.parametrize("name", ["torch_sigmoid_relu", "torch_separable"])
def test_phase_conversions_of_dead_units_and_separable_grids_agree_in_every_runtime(name, tmp_path):
    """Dead ReLU units (range {0}) get no neuron; a separable network's axes run as phase stages."""
    from runtimes.verify import verify
    from onnx2snn.importer import import_model
    from onnx2snn.inputs import resolve_domain, validation_inputs
    result = convert(FIXTURES / f"{name}.onnx", timesteps=8, coding="phase", samples=1024, validation_points=512)
    assert result.report["validation"]["rel_l2_snn_vs_ann"] < 1e-2
    imported = import_model(FIXTURES / f"{name}.onnx")
    points = validation_inputs(imported, resolve_domain(imported, None), 256, np.random.default_rng(0))
    assert verify(result.model, points).ok
