"""The optional leak λ of the IF node (``spec``): u = λ·v(t-1) + (z(t) + β), in every runtime.

A hand-built artifact ``x → MatMul → Add → IF(leak) → Mul(w) → ReduceSum(-1) → Add(c) → MatMul → Add →
Decode → y`` against a plain numpy loop of the equations, the backends against numpy, λ absent against
λ = 1, and invalid leaks refused at load."""

import math

import numpy as np
import onnx
import pytest
from onnx import helper

import runtimes
from runtimes import kernels, padfree, spec
from runtimes.neuron import NeuronParams, if_step
from runtimes.numpy_ref import NumpyRuntime
from artifact_graph import artifact_model
from tolerances import BACKEND_FLOAT32, BACKEND_FLOAT64, BACKEND_SPIKE_RTOL, BACKEND_WITH_FLIPS

N_IN, UNITS, K, N_OUT, T = 2, 6, 3, 2, 20


def _parameters(dtype, seed=0):
    """Weights and neurons of the test network, some neurons padding (θ = inf)."""
    rng = np.random.default_rng(seed)
    theta_pos = rng.uniform(0.2, 1.0, (UNITS, K))
    theta_neg = rng.uniform(0.2, 1.0, (UNITS, K))
    theta_pos[rng.random((UNITS, K)) < 0.25] = np.inf
    theta_neg[rng.random((UNITS, K)) < 0.25] = np.inf
    v0 = np.where(np.isfinite(theta_pos), theta_pos / 2, 0.0)
    p = {"W1": rng.normal(0, 1.5, (N_IN, UNITS)), "b1": rng.normal(0, 0.3, UNITS), "v0": v0,
         "beta": rng.normal(0, 0.2, (UNITS, K)), "theta_pos": theta_pos, "theta_neg": theta_neg,
         "w": rng.normal(0, 1, (UNITS, K)), "c": rng.normal(0, 0.1, UNITS),
         "W2": rng.normal(0, 1, (UNITS, N_OUT)), "b2": rng.normal(0, 0.1, N_OUT)}
    return {k: v.astype(dtype) for k, v in p.items()}


def _artifact(p, leak=None, name="if1", membrane=False):
    """The artifact of ``p`` (``leak`` None: no leak attribute; ``membrane``: the membrane's mean over
    the steps is an output too, "v_mean")."""
    dtype = helper.np_dtype_to_tensor_dtype(p["W1"].dtype)
    attrs = {"signed": 1, "fire_fraction": 1.0}
    if leak is not None:
        attrs["leak"] = leak
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["xw"], name="l1/MatMul"),
        helper.make_node("Add", ["xw", "b1"], ["z"], name="l1/Add"),
        helper.make_node(spec.IF_OP, ["z", "v0", "beta", "theta_pos", "theta_neg"], ["s", "v"], name=name,
                         domain=spec.DOMAIN, **attrs),
        helper.make_node("Mul", ["s", "w"], ["sw"], name=f"{name}/decode_mul"),
        helper.make_node("ReduceSum", ["sw", "axes"], ["summed"], name=f"{name}/decode_sum", keepdims=0),
        helper.make_node("Add", ["summed", "c"], ["h"], name=f"{name}/decode_add"),
        helper.make_node("MatMul", ["h", "W2"], ["hw"], name="out/MatMul"),
        helper.make_node("Add", ["hw", "b2"], ["y/step"], name="out/Add"),
        helper.make_node(spec.DECODE_OP, ["y/step"], ["y"], name="y/decode", domain=spec.DOMAIN),
    ]
    outputs = [helper.make_tensor_value_info("y", dtype, ["N", N_OUT])]
    if membrane:
        nodes.append(helper.make_node(spec.DECODE_OP, ["v"], ["v_mean"], name="v/decode", domain=spec.DOMAIN))
        outputs.append(helper.make_tensor_value_info("v_mean", dtype, ["N", UNITS, K]))
    return artifact_model(nodes, p, [helper.make_tensor_value_info("x", dtype, ["N", N_IN])], outputs, T, "leaky")


def _plain_loop(x, p, leak, timesteps=T, membrane=False):
    """The spec's equations as a plain numpy loop: (decoded y, number of non-zero spikes), and the mean
    membrane if ``membrane``."""
    z = x @ p["W1"] + p["b1"]
    v = np.broadcast_to(p["v0"], z.shape + (K,)).copy()
    total, events, v_sum = 0.0, 0, 0.0
    for _ in range(timesteps):
        u = leak * v + (z[..., None] + p["beta"])
        s = np.where(u >= p["theta_pos"], p["theta_pos"], 0.0)            # fire_fraction 1
        s = np.where(u <= -p["theta_neg"], -p["theta_neg"], s)            # signed
        v = u - s
        v_sum = v_sum + v
        events += int(np.count_nonzero(s))
        total = total + (((s * p["w"]).sum(-1) + p["c"]) @ p["W2"] + p["b2"])
    return (total / timesteps, events) + ((v_sum / timesteps,) if membrane else ())


def _inputs(dtype, points=50, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (points, N_IN)).astype(dtype)


@pytest.mark.parametrize("path", ["chain", "fused", "interpreter", "no-numba"])
def test_numpy_runtime_equals_plain_loop(path, monkeypatch):
    if path == "no-numba":
        monkeypatch.setattr(kernels, "available", False)
    p, x = _parameters(np.float64), _inputs(np.float64)
    options = {"chain": {}, "fused": {"chains": False}, "interpreter": {"fuse": False}, "no-numba": {}}[path]
    for leak in (0.8, 0.5, 1.0):
        expected, events = _plain_loop(x, p, float(np.float32(leak)))    # a float attribute is a float32
        got = NumpyRuntime(_artifact(p, leak), T, **options).run({"x": x})
        np.testing.assert_allclose(got.outputs["y"], expected, rtol=0, atol=1e-12)
        assert got.spikes["if1"].events == events > 0
    # the leak matters: λ = 0.8 is not λ = 1
    assert not np.allclose(_plain_loop(x, p, 0.8)[0], _plain_loop(x, p, 1.0)[0])


def test_membrane_follows_the_leak():
    """The membrane itself (decoded: its mean over the steps), in every backend, against the plain loop;
    λ is the float32 value of the attribute (λ = 0.8 as a float64 gives a different membrane)."""
    p, x = _parameters(np.float64, seed=8), _inputs(np.float64, seed=9)
    model = _artifact(p, 0.8, membrane=True)
    y, events, v_mean = _plain_loop(x, p, float(np.float32(0.8)), membrane=True)
    assert np.max(np.abs(_plain_loop(x, p, 0.8, membrane=True)[2] - v_mean)) > 1e-9
    for backend in runtimes.available_backends():
        got = runtimes.SpikingNetwork(model, backend).run_with_stats({"x": x})
        np.testing.assert_allclose(got.outputs["v_mean"], v_mean, rtol=0, atol=1e-12, err_msg=backend)
        np.testing.assert_allclose(got.outputs["y"], y, rtol=0, atol=1e-12, err_msg=backend)
        assert got.spikes["if1"].events == events, backend


def _assert_agree(reference, result, label):
    """As tests/test_backends.py: the same spike counts (within BACKEND_SPIKE_RTOL), outputs within the
    backend tolerances."""
    exact = all(result.spikes[k].events == v.events for k, v in reference.spikes.items())
    for node, counts in reference.spikes.items():
        got = result.spikes[node]
        assert (got.neurons, got.batch, got.timesteps) == (counts.neurons, counts.batch, counts.timesteps), label
        assert abs(got.events - counts.events) <= BACKEND_SPIKE_RTOL * counts.events, label
    for name, expected in reference.outputs.items():
        got = result.outputs[name]
        assert got.shape == expected.shape and got.dtype == expected.dtype, label
        bound = (BACKEND_FLOAT64 if expected.dtype == np.float64 else BACKEND_FLOAT32) if exact else BACKEND_WITH_FLIPS
        rel = np.linalg.norm(got.astype(np.float64) - expected) / np.linalg.norm(expected.astype(np.float64))
        assert rel <= bound, f"{label}: relative L2 {rel:.2e} > {bound:.0e} (spikes identical: {exact})"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dense", [False, True], ids=["padfree", "dense"])
def test_backends_agree_with_numpy(dtype, dense, monkeypatch):
    pytest.importorskip("snntorch")
    pytest.importorskip("onnxruntime")
    if not dense:       # run the IF layer padding-free (runtimes.padfree) whatever its fraction of padding
        monkeypatch.setattr(padfree, "PADFREE_BELOW", 1.0)
    p, x = _parameters(dtype, seed=2), _inputs(dtype, points=64, seed=3)
    model = _artifact(p, 0.8)
    reference = runtimes.SpikingNetwork(model).run_with_stats({"x": x})
    assert reference.spikes["if1"].events > 0
    import torch
    runs = [("snntorch", {}), ("onnxruntime", {})] + ([("snntorch", {"device": "cuda"})] if torch.cuda.is_available()
                                                      else [])
    for backend, options in runs:
        network = runtimes.SpikingNetwork(model, backend, padfree=not dense, **options)
        _assert_agree(reference, network.run_with_stats({"x": x}), f"{backend}{options}/{np.dtype(dtype).name}")


def test_leak_absent_equals_leak_one():
    pytest.importorskip("snntorch")
    pytest.importorskip("onnxruntime")
    p, x = _parameters(np.float32, seed=4), _inputs(np.float32, seed=5)
    absent, one = _artifact(p), _artifact(p, 1.0)
    variants = [("numpy", {}), ("numpy", {"fuse": False}), ("snntorch", {}), ("snntorch", {"padfree": False}),
                ("onnxruntime", {}), ("onnxruntime", {"padfree": False})]
    for backend, options in variants:
        a = runtimes.SpikingNetwork(absent, backend, **options).run_with_stats({"x": x})
        b = runtimes.SpikingNetwork(one, backend, **options).run_with_stats({"x": x})
        np.testing.assert_array_equal(a.outputs["y"], b.outputs["y"], err_msg=f"{backend} {options}")
        assert a.spikes["if1"].events == b.spikes["if1"].events
    from runtimes.onnxruntime_backend import to_standard_onnx
    ops = lambda m: sorted(n.op_type for n in to_standard_onnx(m, T).graph.node)
    assert ops(absent) == ops(one)      # λ = 1: no Mul by λ in the standard-ONNX variant


@pytest.mark.parametrize("leak", [0.0, 1.5, -0.5, math.nan, math.inf])
def test_invalid_leak_is_refused_at_load(leak, tmp_path):
    path = tmp_path / "bad.snn.onnx"
    onnx.save(_artifact(_parameters(np.float32), leak, name="hidden/IF"), path)
    for backend in runtimes.available_backends():
        with pytest.raises(runtimes.ArtifactError) as error:
            runtimes.load(path, backend=backend)
        message = str(error.value)
        assert "\n" not in message and "node 'hidden/IF'" in message and "'leak'" in message, message


def test_snntorch_neuron_with_leak_matches_numpy_neuron():
    pytest.importorskip("snntorch")
    import torch
    from runtimes.snntorch_backend import SignedIF
    rng = np.random.default_rng(6)
    for dtype in (np.float32, np.float64):
        q = _parameters(dtype, seed=7)
        p = NeuronParams(bias=q["beta"], theta_pos=q["theta_pos"], theta_neg=q["theta_neg"], v0=q["v0"],
                         signed=True, fire_fraction=0.5, leak=0.7)
        neuron = SignedIF(p.bias, p.theta_pos, p.theta_neg, True, 0.5, leak=0.7)
        v_np, v_fwd = p.v0, torch.tensor(p.v0)
        v_fast, owned, workspace = torch.tensor(p.v0), False, {}
        for _ in range(30):
            z = rng.normal(0, 0.6, (9, UNITS)).astype(dtype)
            s_np, v_np = if_step(v_np, z, p)
            s_fwd, v_fwd = neuron(torch.tensor(z), v_fwd)
            s_fast, v_fast, events = neuron.step_(torch.tensor(z), v_fast, owned, workspace)
            owned = True
            for s, v in ((s_fwd, v_fwd), (s_fast, v_fast)):
                np.testing.assert_array_equal(s.numpy(), s_np)
                np.testing.assert_array_equal(v.numpy(), v_np)
            assert int(events.item()) == np.count_nonzero(s_np)
