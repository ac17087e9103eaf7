"""The numpy reference runtime against an independent scalar implementation of the spec."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import runtimes
from runtimes import spec
from runtimes.network import SpikingNetwork


def _artifact(W1, b1, theta_pos, theta_neg, v0, W2, b2, T, fraction=0.5, post_square=False):
    n = theta_pos.shape[0]
    f = lambda a, name: numpy_helper.from_array(np.asarray(a, np.float32), name)
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["xw"]),
        helper.make_node("Add", ["xw", "b1"], ["z"]),
        helper.make_node(spec.IF_OP, ["z", "v0", "beta", "tp", "tn"], ["s", "v"], domain=spec.DOMAIN,
                         name="if1", signed=1, fire_fraction=fraction),
        helper.make_node("Mul", ["s", "w"], ["sw"]),
        helper.make_node("ReduceSum", ["sw", "axes"], ["h"], keepdims=0),
        helper.make_node("MatMul", ["h", "W2"], ["hw"]),
        helper.make_node("Add", ["hw", "b2"], ["y_step"]),
        helper.make_node(spec.DECODE_OP, ["y_step"], ["y" if not post_square else "y_dec"], domain=spec.DOMAIN),
    ]
    if post_square:   # an analog op after the decode: (mean y)², not mean(y²)
        nodes.append(helper.make_node("Mul", ["y_dec", "y_dec"], ["y"]))
    inits = [f(W1, "W1"), f(b1, "b1"), f(v0, "v0"), f(np.zeros((n, 1)), "beta"), f(theta_pos, "tp"),
             f(theta_neg, "tn"), f(np.ones((n, 1)), "w"), f(W2, "W2"), f(b2, "b2"),
             numpy_helper.from_array(np.array([-1], np.int64), "axes")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", W1.shape[0]])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", W2.shape[1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(spec.DOMAIN, 1)])
    model.ir_version = 10
    model.metadata_props.add(key=spec.META_TIMESTEPS, value=str(T))
    return model


def _scalar_reference(x, W1, b1, theta_pos, theta_neg, v0, W2, b2, T, fraction):
    """The spec's equations written out with Python floats, one neuron at a time."""
    out, events = [], 0
    for row in x.astype(np.float64):
        z = [sum(row[i] * W1[i, j] for i in range(W1.shape[0])) + b1[j] for j in range(W1.shape[1])]
        v = [float(v0[j, 0]) for j in range(len(z))]
        total = np.zeros(W2.shape[1])
        for _ in range(T):
            s = []
            for j in range(len(z)):
                u = v[j] + z[j]
                if u >= fraction * theta_pos[j, 0]:
                    sj = theta_pos[j, 0]
                elif u <= -fraction * theta_neg[j, 0]:
                    sj = -theta_neg[j, 0]
                else:
                    sj = 0.0
                v[j] = u - sj
                events += sj != 0
                s.append(sj)
            total += np.array(s) @ W2 + b2
        out.append(total / T)
    return np.array(out), events


def test_runtime_matches_scalar_reference():
    rng = np.random.default_rng(1)
    W1, b1 = rng.normal(size=(2, 5)), rng.normal(size=5) * 0.3
    theta_pos, theta_neg = rng.uniform(0.5, 1.5, (5, 1)), rng.uniform(0.5, 1.5, (5, 1))
    W2, b2 = rng.normal(size=(5, 3)), rng.normal(size=3)
    # quantise everything to float32 first so both implementations see identical parameters
    W1, b1, theta_pos, theta_neg, W2, b2 = (a.astype(np.float32).astype(np.float64)
                                            for a in (W1, b1, theta_pos, theta_neg, W2, b2))
    x = rng.uniform(-1, 1, (7, 2)).astype(np.float32)
    for fraction, v0 in ((0.5, np.zeros((5, 1))), (1.0, theta_pos / 2)):
        model = _artifact(W1, b1, theta_pos, theta_neg, v0, W2, b2, T=16, fraction=fraction)
        result = SpikingNetwork(model).run_with_stats({"x": x})
        expected, events = _scalar_reference(x, W1, b1, theta_pos, theta_neg, v0, W2, b2, 16, fraction)
        np.testing.assert_allclose(result.outputs["y"], expected, rtol=1e-4, atol=1e-4)
        assert result.spikes["if1"].events == events
        assert result.spikes["if1"].batch == 7 and result.spikes["if1"].timesteps == 16


def test_analog_ops_see_decoded_values(tmp_path):
    rng = np.random.default_rng(2)
    args = (rng.normal(size=(1, 4)), np.zeros(4), np.ones((4, 1)), np.ones((4, 1)), np.zeros((4, 1)),
            rng.normal(size=(4, 1)), np.zeros(1))
    x = rng.uniform(-1, 1, (9, 1)).astype(np.float32)
    plain = SpikingNetwork(_artifact(*args, T=8)).run({"x": x})["y"]
    squared = SpikingNetwork(_artifact(*args, T=8, post_square=True)).run({"x": x})["y"]
    np.testing.assert_allclose(squared, plain ** 2, rtol=1e-5)
    path = tmp_path / "a.snn.onnx"
    onnx.save(_artifact(*args, T=8), path)
    np.testing.assert_allclose(runtimes.load(path).run({"x": x})["y"], plain)
    # -T overrides the artifact's T
    assert not np.allclose(runtimes.load(path, timesteps=3).run({"x": x})["y"], plain)


def test_input_checks_name_the_input():
    model = _artifact(np.ones((2, 3)), np.zeros(3), np.ones((3, 1)), np.ones((3, 1)), np.zeros((3, 1)),
                      np.ones((3, 1)), np.zeros(1), T=4)
    snn = SpikingNetwork(model)
    for bad, words in (({"q": np.zeros((2, 2))}, "unknown ['q']"), ({"x": np.zeros((2, 3))}, "input 'x': shape"),
                       ({"x": np.full((2, 2), np.nan)}, "NaN")):
        try:
            snn.run(bad)
        except runtimes.InputError as e:
            assert words in str(e)
        else:
            raise AssertionError(f"no error for {bad}")


def test_fused_kernel_equals_the_four_nodes():
    """IF + decode ops run as one compact kernel give exactly what running the nodes one by one gives."""
    import onnx2snn
    from conftest import FIXTURES
    from runtimes.numpy_ref import NumpyRuntime
    for pieces in (1, 4):
        model = onnx2snn.convert(FIXTURES / "torch_sin.onnx", pieces=pieces, samples=256, validate=False).model
        x = {"x": np.random.default_rng(0).uniform(-1, 1, (50, 1)).astype(np.float32)}
        fused, plain = NumpyRuntime(model, 16).run(x), NumpyRuntime(model, 16, fuse=False).run(x)
        np.testing.assert_allclose(fused.outputs["u"], plain.outputs["u"], rtol=1e-6, atol=1e-7)
        assert {k: v.events for k, v in fused.spikes.items()} == {k: v.events for k, v in plain.spikes.items()}
        assert {k: v.neurons for k, v in fused.spikes.items()} == {k: v.neurons for k, v in plain.spikes.items()}


def test_compiled_chain_equals_the_interpreter(monkeypatch):
    """An MLP stage run as one compiled loop (``runtimes.chain``: several blocks of points, the last one
    partial) gives the spike counts of the node-by-node interpreter exactly and its outputs up to the
    summation order of the matrix products; float32 and float64, one neuron per unit and PWL layers,
    points on one axis or two (rank-3 input)."""
    import onnx2snn
    from conftest import FIXTURES
    from runtimes import kernels
    from runtimes.numpy_ref import NumpyRuntime
    if not kernels.available:
        pytest.skip("numba is not installed")
    calls, run_chain = [], kernels.run_chain
    monkeypatch.setattr(kernels, "run_chain", lambda *args: calls.append(args[0].shape) or run_chain(*args))
    for fixture, pieces in (("torch_sin", 1), ("torch_sin", 4), ("torch_float64", 3), ("torch_tanh_rank3", 2)):
        model = onnx2snn.convert(FIXTURES / f"{fixture}.onnx", pieces=pieces, samples=256, validate=False).model
        compiled, plain = NumpyRuntime(model, 16), NumpyRuntime(model, 16, chains=False)
        assert compiled.blocks_itself and not plain.blocks_itself
        block = next(c for c in compiled.chains if c is not None)[0].block_rows
        name, dims = model.graph.input[0].name, model.graph.input[0].type.tensor_type.shape.dim
        shape = (2 * block + 7,) + tuple(d.dim_value for d in dims[1:])
        dtype = np.float64 if fixture.endswith("64") else np.float32
        x = {name: np.random.default_rng(0).uniform(-1, 1, shape).astype(dtype)}
        calls.clear()
        a, b = compiled.run(x), plain.run(x)
        assert len(calls) == 1                      # the compiled loop ran (no fallback to the interpreter)
        for output, value in b.outputs.items():
            assert a.outputs[output].dtype == value.dtype and a.outputs[output].shape == value.shape
            np.testing.assert_allclose(a.outputs[output], value, rtol=1e-5, atol=1e-6)
        assert {k: v.events for k, v in a.spikes.items()} == {k: v.events for k, v in b.spikes.items()}
        assert {k: (v.neurons, v.batch, v.timesteps) for k, v in a.spikes.items()} == \
            {k: (v.neurons, v.batch, v.timesteps) for k, v in b.spikes.items()}


def test_separable_stage_runs_as_one_chain_per_axis(monkeypatch):
    """A separable network's stage (one MLP per input axis, nodes interleaved) runs as one compiled chain
    per axis, with the interpreter's spike counts and outputs."""
    import onnx2snn
    from conftest import FIXTURES
    from runtimes import kernels
    from runtimes.numpy_ref import NumpyRuntime
    if not kernels.available:
        pytest.skip("numba is not installed")
    calls, run_chain = [], kernels.run_chain
    monkeypatch.setattr(kernels, "run_chain", lambda *args: calls.append(args[0].shape) or run_chain(*args))
    for pieces in (1, 3):
        result = onnx2snn.convert(FIXTURES / "torch_separable.onnx", pieces=pieces, samples=256, validate=False)
        compiled, plain = NumpyRuntime(result.model, 16), NumpyRuntime(result.model, 16, chains=False)
        stages = [chains for chains in compiled.chains if chains]
        assert compiled.blocks_itself and len(stages) == 1 and len(stages[0]) == len(result.domain) > 1
        rng = np.random.default_rng(1)
        x = {name: rng.uniform(lo, hi, (150 + 40 * k, 1)).astype(np.float32)
             for k, (name, [(lo, hi)]) in enumerate(result.domain.items())}
        calls.clear()
        a, b = compiled.run(x), plain.run(x)
        assert len(calls) == len(result.domain)
        for output, value in b.outputs.items():
            assert a.outputs[output].shape == value.shape
            np.testing.assert_allclose(a.outputs[output], value, rtol=1e-5, atol=1e-6)
        assert {k: (v.events, v.neurons, v.batch) for k, v in a.spikes.items()} == \
            {k: (v.events, v.neurons, v.batch) for k, v in b.spikes.items()}


def test_fused_kernel_broadcasts_a_one_column_current():
    """A current [N, 1] plus a bias [n] (the spec broadcasts it to the n units) runs fused as unfused."""
    from runtimes.numpy_ref import NumpyRuntime
    rng = np.random.default_rng(3)
    theta = rng.uniform(0.2, 1.0, (3, 1))
    model = _artifact(rng.normal(size=(2, 1)), rng.normal(size=3), theta, theta, theta / 2,
                      rng.normal(size=(3, 2)), np.zeros(2), T=8)
    x = {"x": rng.uniform(-1, 1, (20, 2)).astype(np.float32)}
    fused, plain = NumpyRuntime(model, 8).run(x), NumpyRuntime(model, 8, fuse=False).run(x)
    np.testing.assert_allclose(fused.outputs["y"], plain.outputs["y"], rtol=1e-6, atol=1e-7)
    assert fused.spikes["if1"].events == plain.spikes["if1"].events > 0


def test_chunked_run_equals_one_batch():
    """Row chunks (bounded memory for any number of points) give the same outputs and spike counts."""
    import onnx2snn
    from conftest import FIXTURES
    model = onnx2snn.convert(FIXTURES / "torch_tanh_rank3.onnx", pieces=3, samples=256, validate=False).model
    snn = SpikingNetwork(model)
    x = {"x": np.random.default_rng(1).uniform(-1, 1, (1000, 1, 2)).astype(np.float32)}
    calls = []
    whole = snn.run_with_stats(x)
    chunked = snn.run_with_stats(x, chunk_rows=300, progress=lambda done, total: calls.append((done, total)))
    np.testing.assert_allclose(chunked.outputs["u"], whole.outputs["u"], rtol=1e-5, atol=1e-6)
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    for name, counts in whole.spikes.items():
        assert abs(chunked.spikes[name].events - counts.events) <= 1e-3 * counts.events
        assert chunked.spikes[name].batch == counts.batch == 1000
