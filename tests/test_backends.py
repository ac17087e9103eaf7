"""Three runtimes that agree: snnTorch and onnxruntime against the numpy reference on converted fixtures,
the snnTorch neuron against ``runtimes.neuron``, the standard-ONNX variant in a plain onnxruntime session."""

import functools
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("snntorch")
torch.set_num_threads(1)

import onnx2snn  # noqa: E402
import runtimes  # noqa: E402
from conftest import FIXTURES  # noqa: E402
from runtimes import spec  # noqa: E402
from runtimes.neuron import NeuronParams, if_step  # noqa: E402
from runtimes.numpy_ref import NumpyRuntime  # noqa: E402
from runtimes.onnxruntime_backend import EVENTS_PREFIX, OnnxRuntimeRuntime, to_standard_onnx  # noqa: E402
from runtimes.snntorch_backend import SignedIF, SnnTorchRuntime  # noqa: E402
from runtimes.verify import verify  # noqa: E402
from tolerances import (BACKEND_FLOAT32, BACKEND_FLOAT64, BACKEND_SPIKE_RTOL,  # noqa: E402
                        BACKEND_WITH_FLIPS)

CASES = {   # name: (fixture, conversion options)
    "tanh_pieces1": ("torch_tanh_gemm.onnx", {"pieces": 1}),
    "tanh_pwl": ("torch_tanh_gemm.onnx", {}),
    "tanh_floor": ("torch_tanh_gemm.onnx", {"pieces": 1, "neuron": "floor"}),
    "separable_pwl": ("torch_separable.onnx", {}),
    "separable_pieces1": ("torch_separable.onnx", {"pieces": 1}),
    "float64_pwl": ("jax_float64_tanh.onnx", {}),
    "rank3_pwl": ("torch_tanh_rank3.onnx", {}),
    "float64_pieces1": ("jax_float64_tanh.onnx", {"pieces": 1}),
    "multi_io_pwl": ("torch_multi_io.onnx", {}),
    "hardbc_pieces1": ("torch_normalised_hardbc.onnx", {"pieces": 1}),
}


@pytest.fixture(scope="module")
def artifacts():
    return {name: onnx2snn.convert(FIXTURES / fixture, samples=1024, validate=False, **options)
            for name, (fixture, options) in CASES.items()}


def _inputs(result, points=256, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {}
    for k, (name, boxes) in enumerate(result.domain.items()):
        lo, hi = np.array(boxes).T
        n = points - 64 * k if _separable(result) else points   # separable: different grid sizes
        declared = next(i for i in result.model.graph.input if i.name == name).type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(declared.elem_type)
        middle = [d.dim_value or 1 for d in declared.shape.dim[1:-1]]      # rank > 2: e.g. [batch, 1, d]
        feeds[name] = (lo + (hi - lo) * rng.random((n, *middle, len(boxes)))).astype(dtype)
    return feeds


def _separable(result):
    return any(n.op_type == "Einsum" for n in result.model.graph.node)


def _assert_agree(reference, result, name):
    exact = all(result.spikes[k].events == v.events for k, v in reference.spikes.items())
    for node, counts in reference.spikes.items():
        got = result.spikes[node]
        assert (got.neurons, got.batch, got.timesteps) == (counts.neurons, counts.batch, counts.timesteps), node
        assert abs(got.events - counts.events) <= BACKEND_SPIKE_RTOL * counts.events, (name, node)
    for output, expected in reference.outputs.items():
        got = result.outputs[output]
        assert got.shape == expected.shape and got.dtype == expected.dtype, (name, output)
        bound = (BACKEND_FLOAT64 if expected.dtype == np.float64 else BACKEND_FLOAT32) if exact else BACKEND_WITH_FLIPS
        rel = np.linalg.norm(got.astype(np.float64) - expected) / np.linalg.norm(expected.astype(np.float64))
        assert rel <= bound, f"{name}/{output}: relative L2 {rel:.2e} > {bound:.0e} (spikes identical: {exact})"


@pytest.mark.parametrize("name", list(CASES))
def test_backends_agree_with_numpy(artifacts, name):
    result = artifacts[name]
    feeds = _inputs(result)
    T = 32
    reference = NumpyRuntime(result.model, T).run(feeds)
    assert sum(c.events for c in reference.spikes.values()) > 0
    _assert_agree(reference, SnnTorchRuntime(result.model, T).run(feeds), f"{name}/snntorch")
    _assert_agree(reference, SnnTorchRuntime(result.model, T, chunk_rows=37).run(feeds), f"{name}/snntorch-chunked")
    _assert_agree(reference, SnnTorchRuntime(result.model, T, chunk_rows=0).run(feeds), f"{name}/snntorch-whole")
    _assert_agree(reference, OnnxRuntimeRuntime(result.model, T).run(feeds), f"{name}/onnxruntime")
    chunked = OnnxRuntimeRuntime(result.model, T, chunk_rows=37).run(feeds)
    _assert_agree(reference, chunked, f"{name}/onnxruntime-chunked")


@pytest.mark.parametrize("name", ["tanh_pwl", "separable_pwl", "float64_pwl", "rank3_pwl"])
def test_padding_free_layers_change_nothing(artifacts, name, monkeypatch):
    """Dropping θ = inf padding (runtimes.padfree) gives the same spikes as the dense layers."""
    from runtimes import padfree
    monkeypatch.setattr(padfree, "PADFREE_BELOW", 1.0)      # whatever the fraction of padding
    result = artifacts[name]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in result.model.graph.initializer}
    layers = padfree.find_padfree_layers(list(result.model.graph.node), inits, set(), 17)
    assert layers
    for layer in layers.values():
        kept = sum(g.k * len(g.units) for g in layer.groups)
        assert layer.live <= kept <= layer.weight.size and len(layer.groups) <= 1 + np.log2(layer.weight.shape[1]) + 1
        theta = layer.tensors["theta_pos"]
        assert sum(np.isfinite(g.gather(theta)).sum() for g in layer.groups) == np.isfinite(theta).sum()
    feeds = _inputs(result)
    reference = NumpyRuntime(result.model, 32).run(feeds)
    makers = {"snntorch": SnnTorchRuntime, "onnxruntime": OnnxRuntimeRuntime}
    if torch.cuda.is_available():
        makers["snntorch-cuda"] = functools.partial(SnnTorchRuntime, device="cuda")
    for backend, make in makers.items():
        dense, padfree = make(result.model, 32, padfree=False).run(feeds), make(result.model, 32).run(feeds)
        _assert_agree(reference, dense, f"{name}/{backend}/dense")
        _assert_agree(reference, padfree, f"{name}/{backend}/padfree")
        if backend != "snntorch-cuda":      # CUDA's sums have no fixed order: K vs k terms may round apart
            assert {k: v.events for k, v in dense.spikes.items()} == {k: v.events for k, v in padfree.spikes.items()}


def test_opset_11_artifact_runs_in_every_backend(tmp_path, monkeypatch):
    """An opset-11 source (no GreaterOrEqual yet, Split/ReduceSum axes as attributes) converts, and its
    standard-ONNX variant, padding-free layers included, and snnTorch agree with numpy."""
    from runtimes import padfree
    monkeypatch.setattr(padfree, "PADFREE_BELOW", 1.0)
    model = onnx.load(FIXTURES / "torch_tanh_gemm.onnx")           # Gemm and Tanh only: the same at opset 11
    for o in model.opset_import:
        o.version = 11 if o.domain in ("", "ai.onnx") else o.version
    onnx.checker.check_model(model)
    onnx.save(model, tmp_path / "opset11.onnx")
    result = onnx2snn.convert(tmp_path / "opset11.onnx", samples=1024, validate=False)
    assert {o.version for o in result.model.opset_import if o.domain == ""} == {11}
    feeds = _inputs(result)
    reference = NumpyRuntime(result.model, 32).run(feeds)
    for make in (SnnTorchRuntime, OnnxRuntimeRuntime):
        got = make(result.model, 32).run(feeds)
        _assert_agree(reference, got, f"opset11/{make.__name__}")


@pytest.mark.parametrize("name", ["tanh_pwl", "separable_pieces1", "float64_pwl", "multi_io_pwl", "hardbc_pieces1"])
def test_standard_onnx_variant_runs_in_plain_onnxruntime(artifacts, name):
    result = artifacts[name]
    standard = to_standard_onnx(result.model, 8)
    onnx.checker.check_model(standard, full_check=True)
    assert standard.ir_version <= 10
    assert all(n.domain in ("", "ai.onnx") for n in standard.graph.node)
    assert spec.DOMAIN not in {o.domain for o in standard.opset_import}
    session = ort.InferenceSession(standard.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = _inputs(result, points=64)
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    reference = NumpyRuntime(result.model, 8).run(feeds)
    for output, expected in reference.outputs.items():
        np.testing.assert_allclose(outputs[output], expected, rtol=1e-4, atol=1e-6)
    for node, counts in reference.spikes.items():
        assert int(outputs[EVENTS_PREFIX + node]) == counts.events


def test_timesteps_override_and_network_dispatch(artifacts, tmp_path):
    result = artifacts["tanh_pieces1"]
    path = result.save(tmp_path / "a.snn.onnx")
    feeds = _inputs(result, points=32)
    for T in (1, 3):
        expected = runtimes.load(path, timesteps=T).run_with_stats(feeds)
        for backend in ("snntorch", "onnxruntime"):
            got = runtimes.load(path, backend=backend).run_with_stats(feeds, timesteps=T)
            _assert_agree(expected, got, f"{backend}/T={T}")
    assert set(runtimes.available_backends()) == {"numpy", "snntorch", "onnxruntime"}
    with pytest.raises(runtimes.ArtifactError, match="unknown backend"):
        runtimes.load(path, backend="loihi")


def test_missing_torch_is_a_one_line_error(artifacts, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "runtimes.snntorch_backend", raising=False)
    with pytest.raises(runtimes.ArtifactError) as error:
        runtimes.SpikingNetwork(artifacts["tanh_pieces1"].model, backend="snntorch")
    assert "backend 'snntorch' needs torch and snntorch: pip install" in str(error.value)
    assert "\n" not in str(error.value)


def test_verify_report(artifacts):
    result = artifacts["separable_pwl"]
    report = verify(result.model, _inputs(result))
    expected = {"snntorch", "onnxruntime"} | ({"snntorch-cuda"} if torch.cuda.is_available() else set())
    assert report.ok and set(report.backends) == expected and not report.skipped
    for check in report.backends.values():
        assert check.ok and max(check.rel_l2.values()) <= BACKEND_WITH_FLIPS and check.seconds > 0
    assert len(report.lines()) == 1 + len(expected)
    # a wrong artifact is caught: the same graph with a different threshold, run as "onnxruntime"
    broken = onnx.ModelProto()
    broken.CopyFrom(result.model)
    theta = next(t for t in broken.graph.initializer if t.name.endswith("/theta_pos"))
    array = onnx.numpy_helper.to_array(theta) * 1.5
    theta.CopyFrom(onnx.numpy_helper.from_array(array.astype(array.dtype), theta.name))
    reference = NumpyRuntime(result.model, 32).run(_inputs(result))
    other = OnnxRuntimeRuntime(broken, 32).run(_inputs(result))
    from runtimes.verify import BackendCheck, _compare
    check = BackendCheck(backend="broken", ok=True)
    _compare(reference, other, check, 1e-4, 1e-3)
    assert not check.ok and check.problems


def _random_layer(rng, n, K, dtype, signed, fraction, padding):
    theta_pos = rng.uniform(0.05, 1.0, (n, K)).astype(dtype)
    theta_neg = rng.uniform(0.05, 1.0, (n, K)).astype(dtype)
    if padding:
        theta_pos[rng.random((n, K)) < 0.3] = np.inf
        theta_neg[rng.random((n, K)) < 0.3] = np.inf
    v0 = (theta_pos / 2 if fraction == 1.0 else np.zeros((n, K))).astype(dtype)
    v0[~np.isfinite(v0)] = 0
    bias = rng.normal(0, 0.3, (n, K)).astype(dtype)
    return NeuronParams(bias=bias, theta_pos=theta_pos, theta_neg=theta_neg, v0=v0, signed=signed,
                        fire_fraction=fraction)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("fraction", [0.5, 1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_snntorch_neuron_matches_numpy_neuron(signed, fraction, dtype):
    rng = np.random.default_rng(int(signed) * 10 + int(fraction * 4) + (dtype == np.float64))
    n, K, batch = 7, 5, 33
    p = _random_layer(rng, n, K, dtype, signed, fraction, padding=True)
    neuron = SignedIF(p.bias, p.theta_pos, p.theta_neg, signed, fraction)
    assert neuron not in __import__("snntorch").SpikingNeuron.instances     # no global registry
    v_np = p.v0
    v_fwd = torch.tensor(p.v0)
    v_fast, owned, workspace = torch.tensor(p.v0), False, {}
    for step in range(40):
        z = rng.normal(0, 0.6, (batch, n)).astype(dtype)
        if step == 5:    # land exactly on a firing level (neuron k = 0): u = a·θ+ must fire (>=)
            target = (fraction * p.theta_pos[:, 0] - v_np[..., 0]) - p.bias[:, 0]
            z = np.where(np.isfinite(target), target, z).astype(dtype)
        s_np, v_np = if_step(v_np, z, p)
        s_fwd, v_fwd = neuron(torch.tensor(z), v_fwd)
        s_fast, v_fast, events = neuron.step_(torch.tensor(z), v_fast, owned, workspace)
        owned = True
        for got in (s_fwd, s_fast):
            np.testing.assert_array_equal(got.numpy(), s_np)
        np.testing.assert_array_equal(v_fwd.numpy(), v_np)
        np.testing.assert_array_equal(v_fast.numpy(), v_np)
        assert int(events.item()) == np.count_nonzero(s_np)
        assert np.all(np.isin(s_np, [0]) | (s_np == p.theta_pos) | (signed & (s_np == -p.theta_neg)))
        assert not np.any((s_np != 0) & ~np.isfinite(p.theta_pos) & (s_np > 0))   # padding never fires


def test_snntorch_neuron_has_surrogate_gradient():
    rng = np.random.default_rng(3)
    p = _random_layer(rng, 4, 3, np.float32, True, 0.5, padding=False)
    neuron = SignedIF(p.bias, p.theta_pos, p.theta_neg, True, 0.5)
    z = torch.tensor(rng.normal(0, 0.5, (8, 4)).astype(np.float32), requires_grad=True)
    s, v = neuron(z, torch.tensor(p.v0))
    s.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_signed_neuron_is_not_a_pair_of_unsigned_neurons():
    """One membrane, at most one spike per step: an input of +0.6θ then -0.6θ gives one +θ and one -θ
    spike (rounding neuron), where a +/- pair of unsigned neurons would keep two separate residues."""
    theta = np.ones((1, 1), np.float32)
    neuron = SignedIF(np.zeros((1, 1), np.float32), theta, theta, True, 0.5)
    v, spikes = torch.zeros(1, 1), []
    for z in (0.6, -1.2, 0.6):
        s, v = neuron(torch.tensor([z]), v)
        spikes.append(float(s))
    assert spikes == [1.0, -1.0, 0.0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_snntorch_cuda_agrees_with_numpy(artifacts):
    for name in ("tanh_pwl", "float64_pieces1", "separable_pwl"):
        result = artifacts[name]
        feeds = _inputs(result)
        reference = NumpyRuntime(result.model, 32).run(feeds)
        _assert_agree(reference, SnnTorchRuntime(result.model, 32, device="cuda").run(feeds), f"{name}/cuda")


@pytest.mark.parametrize("fraction", [0.5, 1.0])
def test_snntorch_neuron_fires_at_the_level(fraction):
    """u = a·θ+ exactly fires +θ+, u = -a·θ- exactly fires -θ- (the spec's >= and <=), as in numpy."""
    theta_pos, theta_neg = np.array([[0.3, 0.7]], np.float32), np.array([[0.45, np.inf]], np.float32)
    p = NeuronParams(bias=np.zeros((1, 2), np.float32), theta_pos=theta_pos, theta_neg=theta_neg,
                     v0=np.zeros((1, 2), np.float32), signed=True, fire_fraction=fraction)
    neuron = SignedIF(p.bias, theta_pos, theta_neg, True, fraction)
    for z in (fraction * theta_pos[0, :1], -fraction * theta_neg[0, :1]):
        s_np, v_np = if_step(p.v0, z.astype(np.float32), p)
        s, v = neuron(torch.tensor(z, dtype=torch.float32), torch.tensor(p.v0))
        np.testing.assert_array_equal(s.numpy(), s_np)
        np.testing.assert_array_equal(v.numpy(), v_np)
        assert s_np[0, 0] != 0
