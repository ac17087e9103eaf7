"""PINN architectures beyond the plain MLP spike end to end (issue 25): residual blocks, the modified MLP's
static gates, LayerNorm before the activation; what stays analog says why; the runtimes agree."""

import numpy as np
import onnx
import pytest

import onnx2snn
from conftest import FIXTURES, architecture_points
from onnx2snn.ann import run_ann
from onnx2snn.cli import main
from onnx2snn.importer import import_model
from onnx2snn.linked import BEHIND_ANALOG
from onnx2snn.structure import NOT_PLAIN, ON_DECODED, ONCE, STATIC_GATE, analyse, hidden_layers
from runtimes import spec
from runtimes.numpy_ref import NumpyRuntime
from tolerances import BACKEND_FLOAT32

ARCHITECTURES = ("torch_residual_linear", "torch_modified_mlp", "torch_layernorm")
TARGET_T32 = 5e-3        # issue 25: each within 5e-3 of its ANN at T=32 (default options, fresh points)


def _structure(name, **options):
    return analyse(import_model(FIXTURES / f"{name}.onnx").model, **options)


@pytest.fixture(scope="module")
def converted():
    return {name: onnx2snn.convert(FIXTURES / f"{name}.onnx", samples=2048, validation_points=1024)
            for name in ARCHITECTURES}


def test_residual_blocks_spike_through_their_sums():
    """H0 = x·W0 + b0 (static), H1 = H0 + tanh(H0·W1 + b1), H2 = H1 + tanh(H1·W2 + b2), u = H2·Wo + bo:
    both tanh layers spike, the second and the readout read them through the residual Adds."""
    s = _structure("torch_residual_linear")
    first, second = s.layers
    assert first.static and second.link.sources == [0] and [n.op_type for n in second.link.nodes] == ["Add"]
    assert second.link.statics == ["/inp/Gemm_output_0"]                      # H0: computed once per point
    (readout,) = s.readouts
    assert s.input_link(readout).sources == [0, 1] and [n.op_type for n in s.input_link(readout).nodes] == ["Add"] * 2
    assert [(a.name, a.op) for a in s.analog] == [("/inp/Gemm", "Gemm")]
    assert not _structure("torch_residual_linear", links=False).layers       # the plain-chain analysis refuses it


def test_modified_mlp_gates_are_static_and_their_products_are_links():
    """U, V depend on x only and multiply Z: computed once; (1 - Z)·U + Z·V carries Z's spikes on."""
    s = _structure("torch_modified_mlp")
    assert [l.name for l in s.layers] == ["/Tanh_2", "/Tanh_3", "/Tanh_4"]
    assert [n.op_type for n in s.layers[2].link.nodes] == ["Sub", "Mul", "Mul", "Add"]
    assert sorted(s.layers[2].link.statics) == ["/Tanh_1_output_0", "/Tanh_output_0"]
    assert {a.name: a.reason for a in s.analog} == {n: STATIC_GATE for n in ("/u/Gemm", "/v/Gemm", "/Tanh", "/Tanh_1")}


def test_layernorm_feeds_a_directly_encoded_layer():
    s = _structure("torch_layernorm")
    assert all(l.identity and l.static for l in s.layers) and len(s.layers) == 2
    assert [a.name for a in s.readouts] == ["/l2/Gemm", "/out/Gemm"]
    assert {a.op for a in s.analog} == {"Gemm", "LayerNormalization"}


def test_time_average_commutes_with_a_link():
    """mean_t L(u(t)) = L(mean_t u) for the modified MLP's gate link (affine in u, static coefficients)."""
    imported = import_model(FIXTURES / "torch_modified_mlp.onnx")
    s = analyse(imported.model)
    link = s.layers[2].link
    ann = run_ann(imported.model, architecture_points(64), link.statics + link.source_tensors)
    series = np.random.default_rng(0).normal(size=(8, 64, 16)).astype(np.float32)
    np.testing.assert_allclose(link.evaluate([series], ann).mean(axis=0), link.evaluate([series.mean(axis=0)], ann),
                               rtol=1e-5, atol=1e-6)
    z = ann[link.source_tensors[0]]
    np.testing.assert_allclose(link.evaluate([z], ann), (1 - z) * ann["/Tanh_output_0"] + z * ann["/Tanh_1_output_0"],
                               rtol=1e-6)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_activation_spikes_within_the_target(converted, name):
    report = converted[name].report
    assert report["validation"]["rel_l2_snn_vs_ann"] <= TARGET_T32, report["validation"]
    gates = [a for a in report["activations"] if not a["spikes"]]
    assert all(a["reason"] == STATIC_GATE for a in gates) and len(gates) == (2 if name == "torch_modified_mlp" else 0)
    assert all(layer["spikes_per_sample"] > 0 for layer in report["layers"])


def test_only_analog_reads_are_decoded(converted):
    """Layers joined by links run in one stage: a Decode only before the graph output (and LayerNorm)."""
    decodes = {name: [n.input[0] for n in converted[name].model.graph.node if n.op_type == spec.DECODE_OP]
               for name in ARCHITECTURES}
    assert decodes["torch_residual_linear"] == decodes["torch_modified_mlp"] == ["u/step"]
    assert sorted(decodes["torch_layernorm"]) == ["/l2/Gemm_output_0/step", "u/step"]


def test_spiking_mac_fraction_counts_the_synapses_behind_links(converted):
    """Residual: 32 (projection, analog) + 256 (first block, static current) + 256 + 16 (fed by spikes)."""
    assert converted["torch_residual_linear"].report["spiking_mac_fraction"] == pytest.approx(272 / 560)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_runtimes_agree_spike_for_spike(converted, name):
    from runtimes.onnxruntime_backend import OnnxRuntimeRuntime
    from runtimes.snntorch_backend import SnnTorchRuntime
    artifact, feeds = converted[name].model, architecture_points()
    reference = NumpyRuntime(artifact, 32, fuse=False).run(feeds)
    for runtime in (SnnTorchRuntime(artifact, 32), OnnxRuntimeRuntime(artifact, 32)):
        got = runtime.run(feeds)
        assert {k: v.events for k, v in got.spikes.items()} == {k: v.events for k, v in reference.spikes.items()}
        rel = np.linalg.norm(got.outputs["u"] - reference.outputs["u"]) / np.linalg.norm(reference.outputs["u"])
        assert rel <= BACKEND_FLOAT32, (name, type(runtime).__name__, rel)


def test_inspect_says_per_activation_whether_it_spikes(capsys):
    assert main(["inspect", str(FIXTURES / "torch_modified_mlp.onnx")]) == 0
    out = capsys.readouterr().out
    assert "activations: 3 of 5 spike" in out
    assert "not followed by an activation" not in out
    assert f"/Tanh (Tanh): analog, {STATIC_GATE}" in out


def test_plain_chain_reasons_name_what_stands_after_each_activation():
    """The plain-chain analysis (end-to-end fits, phase code) keeps the gates and the gated layers of the
    modified MLP analog: each affine layer followed by a Tanh says which node stands between that Tanh and
    the next affine layer (never "not followed by an activation"), and every analog Tanh is a hidden layer."""
    s = _structure("torch_modified_mlp", links=False)
    reasons = {a.name: a.reason for a in s.analog}
    gate = NOT_PLAIN.format(activation="/Tanh", between="/Mul", op="Mul")
    assert reasons["/u/Gemm"] == reasons["/Tanh"] == gate
    assert reasons["/Tanh_3"] == NOT_PLAIN.format(activation="/Tanh_3", between="/Sub", op="Sub")
    gated = NOT_PLAIN.format(activation="/Tanh_4", between="/Sub_1", op="Sub")
    assert reasons["/hidden.1/Gemm"] == reasons["/Tanh_4"] == gated
    assert reasons["/out/Gemm"] == ("affine layer not fed directly by a spiking layer and not followed by an "
                                    f"activation ({ON_DECODED})")
    report = {"layers": [{"name": l.name} for l in s.layers],
              "analog_nodes": [{"op": a.op, "reason": a.reason} for a in s.analog]}
    assert hidden_layers(report) == (1, 5)


def test_analog_reasons_say_whether_a_node_waits_for_spikes():
    """Input preprocessing and Fourier features are computed once per point; the hard BC's product with the
    readout waits for the decoded spikes."""
    hardbc = {a.name: a.reason for a in _structure("torch_normalised_hardbc").analog}
    once = [name for name, reason in hardbc.items() if reason.endswith(f"({ONCE})")]
    assert once == ["/Sub", "/Sub_1", "/Div", "/Mul"]
    assert hardbc["/Mul_1"].endswith(f"({ON_DECODED})")
    fourier = {a.name: a.reason for a in _structure("torch_fourier").analog}
    assert fourier["/Sin"] == f"its affine layer's output also feeds '/Cos', so it is not one pointwise activation " \
                              f"({ONCE})"


def test_activation_behind_a_product_of_spiking_signals_names_the_product(tmp_path):
    """h2 = tanh(h1·W2), h3 = tanh(h1·W3), u = (h2 ⊙ h3)·W4 with h1 = tanh(x·W1): the product of two
    spiking signals is not a link, so h2 and h3 stay analog (on h1's readouts) and say so (not "not between
    two affine layers": an affine layer follows, behind the product), and count as hidden layers; the last
    affine reads decoded values (not "static values")."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    weights = {f"W{k}": rng.normal(size=shape).astype(np.float32)
               for k, shape in ((1, (2, 8)), (2, (8, 8)), (3, (8, 8)), (4, (8, 1)))}
    layer = lambda k, x: [helper.make_node("MatMul", [x, f"W{k}"], [f"z{k}"], name=f"l{k}"),
                          helper.make_node("Tanh", [f"z{k}"], [f"h{k}"], name=f"t{k}")]
    nodes = layer(1, "x") + layer(2, "h1") + layer(3, "h1") + [
        helper.make_node("Mul", ["h2", "h3"], ["p"], name="product"),
        helper.make_node("MatMul", ["p", "W4"], ["u"], name="l4")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
                              [helper.make_tensor_value_info("u", TensorProto.FLOAT, ["batch", 1])],
                              [numpy_helper.from_array(w, k) for k, w in weights.items()])
    path = tmp_path / "product.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    s = analyse(import_model(path).model)
    assert [l.name for l in s.layers] == ["t1"] and [a.name for a in s.readouts] == ["l2", "l3"]
    reasons = {a.name: a.reason for a in s.analog}
    assert reasons["t2"] == BEHIND_ANALOG.format(activation="t2", node="product", op="Mul")
    assert reasons["t3"] == BEHIND_ANALOG.format(activation="t3", node="product", op="Mul")
    assert reasons["l4"] == f"affine layer on analog nodes' outputs ({ON_DECODED})"
    report = {"layers": [{"name": "t1"}], "analog_nodes": [{"op": a.op, "reason": a.reason} for a in s.analog]}
    assert hidden_layers(report) == (1, 3)


def test_artifact_is_valid_onnx(converted, tmp_path):
    path = converted["torch_modified_mlp"].save(tmp_path / "mmlp.snn.onnx")
    onnx.checker.check_model(onnx.load(path))


def test_oscillating_static_layer_is_computed_once():
    """SIREN's sin(30·z) first layer (total variation 7.7x its range on the data) is not expanded into
    pieces: computed once per point; tanh first layers (variation 1) keep spiking."""
    from onnx2snn.oscillation import oscillating_static_layers
    siren = onnx2snn.convert(FIXTURES / "torch_siren.onnx", samples=1024, validation_points=512, timesteps=16)
    assert [l.name for l in siren.structure.layers] == ["/Sin_1"] and siren.structure.layers[0].static
    assert {a.name for a in siren.structure.analog} >= {"/first/Gemm", "/Sin"}
    imported = import_model(FIXTURES / "torch_residual_linear.onnx")
    s = analyse(imported.model)
    ann = run_ann(imported.model, architecture_points(), [s.layers[0].activation.input])
    assert oscillating_static_layers(s, ann) == {}
