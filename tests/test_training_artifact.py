"""Trained spiking networks as artifacts (``onnx2snn.training.artifact``): the numpy runtime computes
``parameters``' equations (checked against a plain simulation), the other backends agree, the runtime takes
its compiled-chain path, and artifacts read back (ours and the converter's with one neuron per unit)."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnx2snn
import runtimes
from conftest import FIXTURES
from onnx2snn.saving import save_model
from onnx2snn.training.artifact import (deeponet_artifact, mlp_artifact, mlp_from_artifact,
                                        update_artifact)
from onnx2snn.training.parameters import DenseLayer, SpikingDeepONetParams, SpikingMLPParams
from runtimes import spec
from runtimes.numpy_ref import NumpyRuntime
from tolerances import BACKEND_FLOAT64, BACKEND_SPIKE_RTOL, BACKEND_WITH_FLIPS

EXACT = 1e-12       # the runtime against the plain simulation: same operations, summation order aside
FOLDED = 1e-9       # β and decodes folded into the affines: rounding only


def _layer(rng, n_in, n_out, spiking=True):
    weight, bias = rng.normal(size=(n_in, n_out)), 0.5 * rng.normal(size=n_out)
    if not spiking:
        return DenseLayer(weight, bias, spiking=False)
    return DenseLayer(weight, bias, True, rng.uniform(0.5, 2, n_out), rng.uniform(0.5, 2, n_out),
                      rng.uniform(-0.5, 0.5, n_out))


def _mlp(widths, readout="analog", timesteps=16, seed=0, fire_fraction=1.0):
    rng = np.random.default_rng(seed)
    layers = [_layer(rng, a, b, spiking=readout == "rate" or k < len(widths) - 2)
              for k, (a, b) in enumerate(zip(widths, widths[1:]))]
    return SpikingMLPParams(layers, timesteps, fire_fraction=fire_fraction)


def _simulate(p, x):
    """``parameters``' equations, step by step: u = λ·v + z, s ∈ {+θ+, 0, -θ-}, v = u - s; the readout
    (1/T)·Σ_t s_{L-1}·W_L + b_L (analog) or (1/T)·Σ_t s_L (rate)."""
    hidden = p.layers if p.readout == "rate" else p.layers[:-1]
    a, v, total = p.fire_fraction, [np.tile(layer.v0, (len(x), 1)) for layer in hidden], 0.0
    for _ in range(p.timesteps):
        s = x
        for k, layer in enumerate(hidden):
            u = p.leak * v[k] + (s @ layer.weight + layer.bias)
            s = np.where(u >= a * layer.theta_pos, layer.theta_pos, np.where(u <= -a * layer.theta_neg,
                                                                              -layer.theta_neg, 0.0))
            v[k] = u - s
        total = total + s
    rate = total / p.timesteps
    return rate if p.readout == "rate" else rate @ p.layers[-1].weight + p.layers[-1].bias


def _run(model, x, backend="numpy"):
    return runtimes.SpikingNetwork(model, backend=backend).run_with_stats({model.graph.input[0].name: x})


def _output(result):
    return next(iter(result.outputs.values()))


def _assert_backends_agree(model, x):
    """snnTorch and onnxruntime (those installed) against numpy, as tests/test_backends.py bounds them."""
    reference = _run(model, x)
    for backend in [b for b in ("snntorch", "onnxruntime") if b in runtimes.available_backends()]:
        got = _run(model, x, backend)
        exact = all(got.spikes[k].events == c.events for k, c in reference.spikes.items())
        for name, counts in reference.spikes.items():
            assert abs(got.spikes[name].events - counts.events) <= BACKEND_SPIKE_RTOL * counts.events, backend
        rel = np.linalg.norm(_output(got) - _output(reference)) / np.linalg.norm(_output(reference))
        assert rel <= (BACKEND_FLOAT64 if exact else BACKEND_WITH_FLIPS), (backend, rel, exact)


def _compiled_chains(model, T):
    """Whether every stage of the numpy runtime is a compiled chain (``runtimes.chain``)."""
    runtime = NumpyRuntime(model, T)
    return all(chains is not None for chains, (_, stage) in zip(runtime.chains, runtime.rounds) if stage)


def _set(model, name, value):
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.CopyFrom(numpy_helper.from_array(value, name))


def _relative(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.fixture(scope="module")
def converted():
    """torch_float64.onnx (1-16-16-1 tanh, float64) converted with one neuron per unit, finetuned briefly."""
    return onnx2snn.convert(FIXTURES / "torch_float64.onnx", pieces=1, calibration="finetune", samples=256,
                            finetune_iterations=20, validate=False)


@pytest.mark.parametrize("readout", ["analog", "rate"])
def test_mlp_artifact_computes_the_equations(readout, tmp_path):
    p = _mlp([2, 16, 16, 1], readout)
    model = mlp_artifact(p, {spec.META_DOMAIN: "x=-1:1,-1:1", spec.META_TIMESTEPS: "99"})
    path = save_model(model, tmp_path / "mlp.snn.onnx")        # onnx.checker, as the converter saves
    x = np.random.default_rng(1).uniform(-1, 1, (64, 2))
    result = runtimes.load(path).run_with_stats({"x": x})
    assert all(c.events > 0 for c in result.spikes.values()) and list(result.spikes) == \
        ["layer1", "layer2"] + (["layer3"] if readout == "rate" else [])
    np.testing.assert_allclose(result.outputs["y"], _simulate(p, x), rtol=EXACT, atol=EXACT)
    meta = {m.key: m.value for m in model.metadata_props}
    assert meta == {spec.META_FORMAT: spec.FORMAT_VERSION, spec.META_TIMESTEPS: "16", spec.META_ENCODING: "direct",
                    spec.META_READOUT: {"rate": "spiking"}.get(readout, readout), spec.META_NEURON: "floor",
                    spec.META_DOMAIN: "x=-1:1,-1:1"}
    assert _compiled_chains(model, p.timesteps)
    _assert_backends_agree(model, x)


def test_float32_weights_give_a_float32_artifact():
    p = _mlp([2, 8, 1], fire_fraction=0.5)
    for layer in p.layers:
        for key, value in vars(layer).items():
            setattr(layer, key, value.astype(np.float32) if isinstance(value, np.ndarray) else value)
    model = mlp_artifact(p)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    out = _output(_run(model, np.zeros((4, 2), np.float32)))
    assert out.dtype == np.float32 and out.shape == (4, 1)
    assert {m.key: m.value for m in model.metadata_props}[spec.META_NEURON] == "round"


def test_leak_is_an_if_attribute_only_when_not_one():
    """λ ≠ 1 cannot run yet (the runtimes learn the attribute elsewhere): written and read back only."""
    leaky = _mlp([2, 4, 1])
    leaky.leak = 0.75
    for p, expected in ((_mlp([2, 4, 1]), None), (leaky, 0.75)):
        node = next(n for n in mlp_artifact(p).graph.node if n.op_type == spec.IF_OP)
        leak = [onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "leak"]
        assert leak == ([] if expected is None else [expected])
    assert mlp_from_artifact(mlp_artifact(leaky))[0].leak == 0.75


def test_deeponet_artifact_computes_branch_times_trunk():
    branch, trunk = _mlp([3, 8, 8, 4], seed=2), _mlp([2, 8, 4], "rate", seed=3)
    p = SpikingDeepONetParams(branch, trunk, bias=0.25, metadata={"problem": "antiderivative"})
    model = deeponet_artifact(p)
    onnx.checker.check_model(model)
    fx = np.random.default_rng(4).uniform(-1, 1, (32, 5))
    result = _run(model, fx)
    expected = np.sum(_simulate(branch, fx[:, :3]) * _simulate(trunk, fx[:, 3:]), axis=1, keepdims=True) + 0.25
    assert result.outputs["u"].shape == (32, 1)
    np.testing.assert_allclose(result.outputs["u"], expected, rtol=EXACT, atol=EXACT)
    assert set(result.spikes) == {"branch/layer1", "branch/layer2", "trunk/layer1", "trunk/layer2"}
    assert all(c.events > 0 for c in result.spikes.values())
    assert {m.key: m.value for m in model.metadata_props}["problem"] == "antiderivative"
    assert _compiled_chains(model, p.timesteps)
    _assert_backends_agree(model, fx)


def test_round_trip_and_folding():
    p = _mlp([2, 16, 16, 1])
    model = mlp_artifact(p)
    back, binding = mlp_from_artifact(model)
    assert (back.timesteps, back.fire_fraction, back.leak, back.readout) == (16, 1.0, 1.0, "analog")
    for mine, theirs in zip(p.layers, back.layers):
        for key in ("weight", "bias", "theta_pos", "theta_neg", "v0"):
            np.testing.assert_array_equal(getattr(theirs, key), getattr(mine, key))
    assert binding["widths"] == [2, 16, 16, 1] and binding["output"] == "y"
    # β, decode weights (either sign) and offsets the parameters have no place for: folded, same outputs
    rng = np.random.default_rng(5)
    for name in ("layer1", "layer2"):
        _set(model, f"{name}/bias", rng.normal(size=(16, 1)))
        _set(model, f"{name}/decode_w", rng.choice([-1, 1], (16, 1)) * rng.uniform(0.5, 1.5, (16, 1)))
        _set(model, f"{name}/decode_c", rng.normal(size=16))
    folded, binding = mlp_from_artifact(model)
    x = rng.uniform(-1, 1, (64, 2))
    expected = _output(_run(model, x))
    assert _relative(_output(_run(mlp_artifact(folded), x)), expected) <= FOLDED
    assert _relative(_simulate(folded, x), expected) <= FOLDED


def test_rate_readout_reads_back():
    p = _mlp([2, 8, 3], "rate")
    back, binding = mlp_from_artifact(mlp_artifact(p))
    assert back.readout == "rate" and binding["layers"][-1]["neurons"] == "layer2"
    x = np.random.default_rng(6).uniform(-1, 1, (16, 2))
    np.testing.assert_array_equal(_output(_run(mlp_artifact(back), x)), _output(_run(mlp_artifact(p), x)))


def test_converter_artifact_reads_back_and_updates(converted):
    model = converted.model
    params, binding = mlp_from_artifact(model)
    assert binding["widths"] == [1, 16, 16, 1] and (binding["input"], binding["output"]) == ("x", "u")
    assert params.fire_fraction == 0.5 and params.timesteps == 32
    x = np.random.default_rng(7).uniform(-1, 1, (64, 1))
    expected = _output(_run(model, x))
    assert _relative(_output(_run(mlp_artifact(params, input_name="x", output_name="u"), x)), expected) <= FOLDED
    params.layers[-1].bias = params.layers[-1].bias + 1.0             # "trained": the output moves by 1
    updated = update_artifact(model, params, binding)
    onnx.checker.check_model(updated)
    meta = {m.key: m.value for m in updated.metadata_props}
    assert meta[spec.META_DOMAIN] == "x=-1:1" and meta[spec.META_SOURCE] == "torch_float64.onnx"
    assert meta[spec.META_NEURON] == "round" and meta[spec.META_TIMESTEPS] == "32"
    np.testing.assert_allclose(_output(_run(updated, x)), expected + 1.0, rtol=FOLDED, atol=FOLDED)
    _assert_backends_agree(updated, x)


def test_other_artifacts_are_refused_in_one_line(converted):
    pwl = onnx2snn.convert(FIXTURES / "torch_float64.onnx", samples=256, validate=False).model
    deeponet = deeponet_artifact(SpikingDeepONetParams(_mlp([3, 4, 2]), _mlp([1, 4, 2])))
    for model, problem in ((pwl, "neurons per unit"), (deeponet, "read by 2 nodes ('branch/f', 'trunk/x')")):
        with pytest.raises(onnx2snn.errors.ArtifactError) as error:
            mlp_from_artifact(model)
        message = str(error.value)
        assert problem in message and "one neuron per unit, plain chain" in message and "\n" not in message
    params, binding = mlp_from_artifact(converted.model)
    with pytest.raises(ValueError, match="do not fit"):
        update_artifact(converted.model, _mlp([1, 16, 1]), binding)
