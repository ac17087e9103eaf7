"""Streaming sigma-delta neurons (``--coding delta``): the neuron against its definition, the numpy
stream runtime against a per-row reference, snnTorch against numpy spike for spike, conversion, ordering
and the streaming run's accounting."""

import numpy as np
import pytest

from conftest import FIXTURES
from onnx2snn.ann import run_ann
from onnx2snn.delta.artifact import build_delta_artifact
from onnx2snn.importer import import_model
from onnx2snn.structure import analyse
from runtimes import spec
from runtimes.neuron import NeuronParams, delta_step
from runtimes.stream import NumpyStreamOps, StreamRuntime


def _params(n, theta, fraction=0.5, dtype=np.float32):
    column = lambda x: np.asarray(x, dtype).reshape(n, 1)
    return NeuronParams(bias=column(np.zeros(n)), theta_pos=column(theta), theta_neg=column(theta),
                        v0=column(np.zeros(n)), signed=True, fire_fraction=fraction, coding=spec.CODING_DELTA)


@pytest.mark.parametrize("fraction", [0.5, 1.0])
def test_delta_neuron_tracks_its_value_within_a_fraction_of_theta(fraction):
    """r stays within a·θ of the activation after every step, r is the running sum of the events, each
    event a whole number of θ, and a unit that moves less than a·θ sends nothing."""
    rng = np.random.default_rng(0)
    n, theta = 5, np.array([0.01, 0.02, 0.05, 0.1, 0.3], np.float32)
    p = _params(n, theta, fraction)
    walk = np.cumsum(rng.normal(0, 0.03, (400, n)), axis=0).astype(np.float32)
    r = p.v0
    total = np.zeros((n, 1), np.float64)
    for a in walk:
        s, r_next, k = delta_step(r, a, p)
        np.testing.assert_array_equal(s, k * np.sign(s) * p.theta_pos)
        np.testing.assert_array_equal(r_next, r + s)
        moved = np.abs(a[:, None] - r) < fraction * p.theta_pos
        assert np.all(k[moved] == 0)
        r = r_next
        total += s
        assert np.all(np.abs(a[:, None] - r) < fraction * p.theta_pos * (1 + 1e-6))
    np.testing.assert_allclose(r, total, rtol=0, atol=1e-4)


def _artifact(fixture, theta, graded=False):
    imported = import_model(FIXTURES / fixture)
    structure = analyse(imported.model)
    thresholds = [np.full(layer.width, theta) for layer in structure.layers]
    rest = [np.zeros(layer.width) for layer in structure.layers]
    return imported, build_delta_artifact(imported.model, structure, thresholds, rest,
                                          {spec.META_TIMESTEPS: "1"}, graded=graded)


def _line(n, dtype, d=1):
    """n points along a diagonal of [-1, 1] x [0, 1] (d = 2) or of [-1, 1]."""
    t = np.linspace(0, 1, n)
    return (np.stack([2 * t - 1, t], 1)[:, :d]).astype(dtype)


def test_stream_runtime_matches_per_row_reference_and_the_ann():
    """The compiled scan equals ``neuron.delta_step`` row by row bit for bit, cutting the stream into blocks
    changes no spike (r carried; outputs only by BLAS's summation order over fewer rows), and the output is
    within the bound the thresholds promise of the ANN."""
    imported, model = _artifact("torch_tanh_gemm.onnx", 2e-3)
    x = {"x": _line(500, np.float32, 2)}
    reference = StreamRuntime(model, ops=NumpyStreamOps(compiled=False)).run(x)
    for runtime, exact in ((StreamRuntime(model), True), (StreamRuntime(model, block_rows=77), False)):
        got = runtime.run(x)
        np.testing.assert_allclose(got.outputs["u"], reference.outputs["u"], rtol=0, atol=0 if exact else 1e-6)
        for name, counts in reference.spikes.items():
            np.testing.assert_array_equal(got.spikes[name].per_row, counts.per_row)
            assert got.spikes[name].events == counts.events > 0
    y, ann = reference.outputs["u"], run_ann(imported.model, x)["u"]
    rel = np.linalg.norm(y - ann) / np.linalg.norm(ann)
    assert 1e-4 < rel < 2e-2, rel
    first = sum(c.per_row[0] for c in reference.spikes.values())
    later = sum(c.per_row[1:].mean() for c in reference.spikes.values())
    assert first > 20 * later          # the start-up point sends each unit's whole value


def test_graded_events_count_sending_units():
    """``graded`` changes the count (one event per sending unit), not the values."""
    _, binary = _artifact("torch_tanh_gemm.onnx", 1e-3)
    _, graded = _artifact("torch_tanh_gemm.onnx", 1e-3, graded=True)
    x = {"x": _line(300, np.float32, 2)}
    b, g = StreamRuntime(binary).run(x), StreamRuntime(graded).run(x)
    np.testing.assert_array_equal(b.outputs["u"], g.outputs["u"])
    for name, counts in b.spikes.items():
        assert g.spikes[name].events == counts.changes == g.spikes[name].changes < counts.events


def test_snntorch_delta_neuron_is_numpy_bit_for_bit():
    torch = pytest.importorskip("torch")
    pytest.importorskip("snntorch")
    from runtimes.snntorch_backend import SignedIF
    rng = np.random.default_rng(1)
    n = 64
    theta = rng.uniform(1e-3, 1e-1, n).astype(np.float32)
    p = _params(n, theta)
    neuron = SignedIF(p.bias, p.theta_pos, p.theta_neg, True, 0.5, coding=spec.CODING_DELTA)
    r, sent = p.v0, torch.tensor(p.v0)
    steps = rng.normal(0, 0.05, (200, n)).astype(np.float32)
    steps[::7] = np.round(steps[::7] / theta * 2) * theta / 2      # changes exactly at a level
    for a in np.cumsum(steps, axis=0, dtype=np.float32):
        s, r, k = delta_step(r, a, p)
        ts, sent, tk = neuron.delta_step(torch.tensor(a)[:, None] + neuron.bias, sent)
        np.testing.assert_array_equal(ts.numpy(), s)
        np.testing.assert_array_equal(tk.numpy(), k)
        np.testing.assert_array_equal(sent.numpy(), r)


def test_snntorch_stream_identical_spikes_float64():
    """On a float64 network snnTorch's stream sends the numpy reference's spikes, row by row."""
    pytest.importorskip("torch")
    pytest.importorskip("snntorch")
    from runtimes.network import SpikingNetwork
    _, model = _artifact("jax_float64_tanh.onnx", 1e-3)
    x = {"x": _line(400, np.float64)}
    reference = SpikingNetwork(model).run_with_stats(x)
    got = SpikingNetwork(model, backend="snntorch").run_with_stats(x)
    for name, counts in reference.spikes.items():
        np.testing.assert_array_equal(got.spikes[name].per_row, counts.per_row)
    np.testing.assert_allclose(got.outputs["y"], reference.outputs["y"], rtol=0, atol=1e-12)
