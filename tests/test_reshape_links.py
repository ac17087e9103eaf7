"""Spiking chains through reshapes (issue 25): Reshape, Flatten, Squeeze, Unsqueeze and Transpose that keep each
point's values in its row are link ops, so the layers around them spike as one stage; a Reshape gets a constant
shape on import, also where the graph computes it from ``Shape``; one that moves points across rows stays analog."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx2snn
from conftest import FIXTURES, architecture_points
from onnx2snn.ann import run_ann
from onnx2snn.cli import main
from onnx2snn.importer import import_model
from onnx2snn.linked import BEHIND_MIXING
from onnx2snn.report import relative_l2
from onnx2snn.structure import ONCE, analyse
from runtimes.numpy_ref import NumpyRuntime
from runtimes.onnxruntime_backend import OnnxRuntimeRuntime
from runtimes.snntorch_backend import SnnTorchRuntime
from tolerances import BACKEND_FLOAT32, EXACT_FLOAT32

RESHAPED = ("torch_reshape", "torch_reshape_dynamo")     # the TorchScript and the dynamo export
PLAIN = "torch_reshape_plain"                           # the same weights, no reshapes
TARGET_T32 = 5e-3


@pytest.fixture(scope="module")
def converted():
    return {name: onnx2snn.convert(FIXTURES / f"{name}.onnx", samples=2048, validation_points=1024)
            for name in RESHAPED + (PLAIN,)}


@pytest.mark.parametrize("name", RESHAPED)
def test_layers_spike_through_the_reshapes(name):
    """All three tanh layers spike; the second reads the first through Reshape+Flatten (TorchScript; dynamo
    writes one Reshape), the third the second through Unsqueeze+Squeeze and two Reshape+Transpose+Reshape
    (dynamo merges the two Reshapes between the Transposes)."""
    s = analyse(import_model(FIXTURES / f"{name}.onnx").model)
    assert len(s.layers) == 3 and not s.analog
    ops = [[n.op_type for n in layer.link.nodes] for layer in s.layers[1:]]
    assert ops[0] == (["Reshape", "Flatten"] if name == "torch_reshape" else ["Reshape"])
    assert ops[1] == ["Unsqueeze", "Squeeze"] + (["Reshape", "Transpose", "Reshape"] * 2 if name == "torch_reshape"
                                                 else ["Reshape", "Transpose", "Reshape", "Transpose", "Reshape"])
    assert [layer.link.sources for layer in s.layers[1:]] == [[0], [1]]


@pytest.mark.parametrize("name", RESHAPED)
def test_reshapes_read_constant_shapes_after_import(name):
    """TorchScript computes N = h.shape[0] and w // 4 (Shape, Gather, Div, Cast, Concat), dynamo writes
    [-1, ...] with ``allowzero`` 1: on import each Reshape reads the constant [0, *F] (``allowzero`` 0) and
    the shape computation is gone; the ANN is unchanged."""
    path = FIXTURES / f"{name}.onnx"
    model = import_model(path).model
    shapes = {t.name: numpy_helper.to_array(t).tolist() for t in model.graph.initializer}
    reshapes = [n for n in model.graph.node if n.op_type == "Reshape"]
    expected = [[0, 4, 6], [0, 4, 6], [0, 24], [0, 6, 4], [0, 24]]
    assert [shapes[n.input[1]] for n in reshapes] == (expected if name == "torch_reshape" else
                                                      [[0, 24], [0, 4, 6], [0, 6, 4], [0, 24]])
    assert not any(a.name == "allowzero" and a.i for n in reshapes for a in n.attribute)
    assert not {"Shape", "Gather", "Div", "Cast", "Concat"} & {n.op_type for n in model.graph.node}
    feeds = architecture_points(64)
    np.testing.assert_array_equal(run_ann(model, feeds)["u"], run_ann(onnx.load(path), feeds)["u"])


def test_computed_shape_of_a_transposed_tensor_becomes_minus_one(tmp_path):
    """A Reshape whose input is not a row tensor ([4, N, 6] from a Transpose that moves the batch) but whose
    output is ([N, 24]), its shape computed from ``Shape``: the constant [-1, 24] (the same values at every
    batch size); the Reshape itself mixes points, so it stays analog."""
    node = helper.make_node
    rearrange = [node("Reshape", ["h1", "split"], ["h3d"], name="split"),
                 node("Transpose", ["h3d"], ["moved"], name="move", perm=[1, 0, 2]),
                 node("Shape", ["h1"], ["dims"], name="shape"),
                 node("Reshape", ["moved", "dims"], ["r"], name="reshape")]
    model = _model(tmp_path, rearrange, 24, {"split": np.array([0, 4, 6], np.int64)})
    shapes = {t.name: numpy_helper.to_array(t).tolist() for t in model.graph.initializer}
    (reshape,) = [n for n in model.graph.node if n.name == "reshape"]
    assert shapes[reshape.input[1]] == [-1, 24] and "Shape" not in {n.op_type for n in model.graph.node}
    assert [l.name for l in analyse(model).layers] == ["t2"]


@pytest.mark.parametrize("name", RESHAPED)
def test_reshaped_network_converts_as_the_plain_one(converted, name):
    """The reshapes leave every point's values in place, so the conversion is the plain network's: the same
    spikes per layer and the same output (float32 rounding), hence its error against its own ANN
    (onnxruntime, fresh points) is the plain network's, within the T=32 target; every activation spikes.  The
    numpy runtime runs both as compiled chains (the reshapes leave each point's values in place)."""
    feeds = architecture_points(seed=11)
    result, plain = converted[name], converted[PLAIN]
    assert all(a["spikes"] for a in result.report["activations"]) and len(result.report["activations"]) == 3
    runtimes = [NumpyRuntime(r.model, 32) for r in (result, plain)]
    assert runtimes[0].blocks_itself == runtimes[1].blocks_itself     # compiled loops skip in-place reshapes
    got, expected = (runtime.run(feeds) for runtime in runtimes)
    assert [c.events for c in got.spikes.values()] == [c.events for c in expected.spikes.values()]
    assert relative_l2(got.outputs["u"], expected.outputs["u"]) <= EXACT_FLOAT32
    errors = [relative_l2(OnnxRuntimeRuntime(r.model, 32).run(feeds).outputs["u"],
                          run_ann(import_model(FIXTURES / f"{n}.onnx").model, feeds)["u"])
              for r, n in ((result, name), (plain, PLAIN))]
    assert errors[0] <= errors[1] * (1 + EXACT_FLOAT32) and errors[0] <= TARGET_T32, errors


def test_end_to_end_fit_through_reshapes_is_the_plain_networks():
    """The phase code's end-to-end fit carries its gradients back through the links (``Link.backward``): through
    the reshapes it fits the plain network's parameters, so both SNNs give the same outputs."""
    short = dict(timesteps=6, coding="phase", samples=256, finetune_iterations=20, validation_points=128)
    feeds = architecture_points(seed=11)
    outputs = [OnnxRuntimeRuntime(onnx2snn.convert(FIXTURES / f"{name}.onnx", **short).model, 6).run(feeds).outputs["u"]
               for name in ("torch_reshape", PLAIN)]
    assert relative_l2(outputs[0], outputs[1]) <= EXACT_FLOAT32


@pytest.mark.parametrize("name", RESHAPED)
def test_runtimes_agree(converted, name):
    """snnTorch runs the artifact spike for spike with the numpy reference; onnxruntime (whose MatMul sums in
    another order than numpy, so a membrane within rounding of a threshold may flip) spike for spike with its
    own run of the plain network's artifact, whose MatMuls read the same values."""
    artifact, feeds = converted[name].model, architecture_points(seed=11)
    reference = NumpyRuntime(artifact, 32, fuse=False).run(feeds)
    torch_run = SnnTorchRuntime(artifact, 32).run(feeds)
    assert {k: v.events for k, v in torch_run.spikes.items()} == {k: v.events for k, v in reference.spikes.items()}
    assert relative_l2(torch_run.outputs["u"], reference.outputs["u"]) <= BACKEND_FLOAT32
    ort_run, ort_plain = (OnnxRuntimeRuntime(a, 32).run(feeds) for a in (artifact, converted[PLAIN].model))
    assert [c.events for c in ort_run.spikes.values()] == [c.events for c in ort_plain.spikes.values()]
    assert relative_l2(ort_run.outputs["u"], ort_plain.outputs["u"]) <= EXACT_FLOAT32


def test_inspect_says_every_activation_spikes(capsys):
    assert main(["inspect", str(FIXTURES / "torch_reshape.onnx")]) == 0
    out = capsys.readouterr().out
    assert "activations: 3 of 3 spike" in out and "0 node(s) stay analog" in out
    assert "(input through Reshape+Flatten of spiking layers /Tanh)" in out


def _model(tmp_path, rearrange: list[onnx.NodeProto], width_in: int,
           constants: dict[str, np.ndarray]) -> onnx.ModelProto:
    """h1 = tanh(x·W1), r = rearrange(h1) [N, width_in], u = tanh(r·W2)·W3, x [batch, 2]; saved and imported."""
    rng = np.random.default_rng(0)
    weights = {"W1": rng.normal(size=(2, 24)), "W2": rng.normal(size=(width_in, 8)) / 4,
               "W3": rng.normal(size=(8, 1))}
    node = helper.make_node
    nodes = [node("MatMul", ["x", "W1"], ["z1"], name="l1"), node("Tanh", ["z1"], ["h1"], name="t1"), *rearrange,
             node("MatMul", ["r", "W2"], ["z2"], name="l2"), node("Tanh", ["z2"], ["h2"], name="t2"),
             node("MatMul", ["h2", "W3"], ["u"], name="l3")]
    inits = [numpy_helper.from_array(w.astype(np.float32), k) for k, w in weights.items()]
    inits += [numpy_helper.from_array(v, k) for k, v in constants.items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
                              [helper.make_tensor_value_info("u", TensorProto.FLOAT, ["batch", 1])], inits)
    path = tmp_path / "rearranged.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return import_model(path).model


def test_reshape_link_evaluates_point_by_point_and_its_transpose_is_its_gradient(tmp_path):
    """r = Flatten(Transpose(Reshape(h1, [0, 4, 6]), [0, 2, 1])) permutes each point's 24 values: the link
    equals that permutation on a series of T steps and on its mean, and ⟨L(u), g⟩ = ⟨u, Lᵀ(g)⟩ (dot-product
    test of ``Link.backward`` against ``Link.tangent``)."""
    rearrange = [helper.make_node("Reshape", ["h1", "shape"], ["h3d"], name="reshape"),
                 helper.make_node("Transpose", ["h3d"], ["ht"], name="transpose", perm=[0, 2, 1]),
                 helper.make_node("Flatten", ["ht"], ["r"], name="flatten", axis=1)]
    model = _model(tmp_path, rearrange, 24, {"shape": np.array([0, 4, 6], np.int64)})
    s = analyse(model)
    link = s.layers[1].link
    assert [n.op_type for n in link.nodes] == ["Reshape", "Transpose", "Flatten"] and not s.analog
    ann = run_ann(model, architecture_points(16), link.source_tensors)
    rng = np.random.default_rng(1)
    series = rng.normal(size=(5, 16, 24))
    permuted = series.reshape(5, 16, 4, 6).transpose(0, 1, 3, 2).reshape(5, 16, 24)
    np.testing.assert_array_equal(link.evaluate([series], ann), permuted)
    np.testing.assert_array_equal(link.evaluate([series[2]], ann), permuted[2])
    u, g = rng.normal(size=(16, 24)), rng.normal(size=(16, 24))
    (transposed,) = link.backward(g, ann)
    np.testing.assert_allclose(np.sum(link.tangent([u], ann) * g), np.sum(u * transposed), rtol=1e-12)
    np.testing.assert_array_equal(np.sort(transposed, axis=1), np.sort(g, axis=1))      # a permutation


@pytest.mark.parametrize("name", RESHAPED)
def test_fixture_links_backward_is_the_transpose_of_their_tangent(name):
    """⟨L(u), g⟩ = ⟨u, Lᵀ(g)⟩ on every link of the fixtures (the reshape chains, and the readout's identity),
    and a series of T steps is evaluated as each step alone."""
    imported = import_model(FIXTURES / f"{name}.onnx")
    s = analyse(imported.model)
    links = [l.link for l in s.layers if l.link is not None] + list(s.readout_links.values())
    rng = np.random.default_rng(2)
    for link in links:
        ann = run_ann(imported.model, architecture_points(8), link.source_tensors)
        u = [rng.standard_normal(ann[t].shape) for t in link.source_tensors]
        out = link.tangent(u, ann)
        g = rng.standard_normal(out.shape)
        transposed = link.backward(g, ann)
        np.testing.assert_allclose(np.sum(out * g), sum(np.sum(a * b) for a, b in zip(u, transposed)), rtol=1e-12)
        series = [rng.standard_normal((4,) + a.shape) for a in u]
        np.testing.assert_array_equal(link.evaluate(series, ann),
                                      np.stack([link.evaluate([x[t] for x in series], ann) for t in range(4)]))


@pytest.mark.parametrize("case", ["folds the batch", "names the batch size"])
def test_reshape_that_moves_points_stays_analog(tmp_path, case):
    """[N, 24] → [2N, 12] (two rows per point) is linear but not point by point, and a shape naming the batch
    size [8, 24] only runs at that size: the first layer stays analog and says so (not "not linear"); the
    Reshape then reads static values, computed once per point."""
    rearrange = [helper.make_node("Reshape", ["h1", "shape"], ["r"], name="reshape")]
    shape, width = ([-1, 12], 12) if case == "folds the batch" else ([8, 24], 24)
    model = _model(tmp_path, rearrange, width, {"shape": np.array(shape, np.int64)})
    s = analyse(model)
    assert [l.name for l in s.layers] == ["t2"]
    reasons = {a.name: a.reason for a in s.analog}
    assert reasons["reshape"].endswith(f"({ONCE})")
    assert reasons["t1"] == BEHIND_MIXING.format(activation="t1", node="reshape", op="Reshape")


@pytest.mark.parametrize("name", RESHAPED)
def test_reshape_artifacts_export_to_nir_spike_for_spike(name, converted):
    """The reshapes fold into NIR's affine maps (each a linear map of the features): onnx2snn's NIR executor
    reproduces every spike of the artifact's float64 reference run."""
    pytest.importorskip("nir")
    from onnx2snn.nir_check import check_exact, domain_points
    from onnx2snn.nir_export import export_nir
    model = converted[name].model
    assert {"Reshape", "Transpose"} <= {n.op_type for n in model.graph.node}
    check = check_exact(export_nir(model), model, domain_points(model, 24, seed=3))
    assert check.events > 1000 and check.mismatches == 0, check.per_layer
    assert check.rel_l2 < 1e-12
