"""Range reduction of a static sine (onnx2snn/sine_range.py): exact against numpy's sine, and SIREN converts
with its last sine spiking on one monotone branch (issue 25: within 5e-3 of the ANN at T=32 at ≤ 10× fewer
spikes than the 24,139 per sample of the conversion before static layers were computed once per point)."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import onnx2snn
from conftest import FIXTURES, architecture_points
from onnx2snn.sine_range import reduce_sines
from onnx2snn.structure import RANGE_REDUCTION
from runtimes.numpy_ref import NumpyRuntime
from tolerances import BACKEND_FLOAT32

SIREN_SPIKES_T32 = 1400     # measured 1,065 per sample (benchmarks/results/architectures.md, `range`) + 30 %
TARGET_T32 = 5e-3


def _run(model, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


def test_reduction_is_sin_on_every_branch():
    """sin(x) = s·sin(r), r ∈ [-π/2, π/2], on many periods both sides of 0, against numpy's sine."""
    graph = helper.make_graph([helper.make_node("Sin", ["x"], ["y"], name="sine")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N"])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    reduced = reduce_sines(model, ["sine"], np.dtype(np.float64))
    reduced.graph.output.append(helper.make_tensor_value_info("y/range_r", TensorProto.DOUBLE, ["N"]))
    x = np.concatenate([np.linspace(-40.0, 40.0, 20001), np.pi * np.arange(-12, 13) / 2])
    y, r = _run(reduced, x)
    assert np.max(np.abs(y - np.sin(x))) < 1e-12
    assert np.all(np.abs(r) <= np.pi / 2 + 1e-12)
    assert [n.op_type for n in model.graph.node] == ["Sin"]             # the input model is left as it is


@pytest.fixture(scope="module")
def siren():
    return onnx2snn.convert(FIXTURES / "torch_siren.onnx", timesteps=32)


def test_siren_spikes_on_the_monotone_branch(siren):
    (layer,) = siren.structure.layers
    assert layer.name == "/Sin_1" and layer.identity and layer.static
    assert layer.activation.input.endswith("/range_r")
    assert siren.structure.readout_links["/out/Gemm"].statics == ["/Sin_1_output_0/range_s"]
    assert [(a["name"], a["spikes"]) for a in siren.report["activations"]] == [("/Sin_1", True), ("/Sin", False)]
    assert sum(a.reason == RANGE_REDUCTION for a in siren.structure.analog) == 11


def test_siren_within_target_at_fewer_spikes(siren):
    """Against the ANN in onnxruntime (the fixture file itself) on fresh points."""
    x = architecture_points(1024, seed=11)["x"]
    (ann,) = ort.InferenceSession(str(FIXTURES / "torch_siren.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})
    run = NumpyRuntime(siren.model, 32).run({"x": x})
    rel = np.linalg.norm(run.outputs["u"] - ann) / np.linalg.norm(ann)
    assert rel <= TARGET_T32, rel
    spikes = sum(c.events for c in run.spikes.values()) / len(x)
    assert spikes <= SIREN_SPIKES_T32, spikes


def test_runtimes_agree_spike_for_spike(siren):
    from runtimes.onnxruntime_backend import OnnxRuntimeRuntime
    from runtimes.snntorch_backend import SnnTorchRuntime
    x = np.random.default_rng(3).uniform([-1.0, 0.0], [1.0, 1.0], (256, 2)).astype(np.float32)
    reference = NumpyRuntime(siren.model, 32, fuse=False).run({"x": x})
    for runtime in (SnnTorchRuntime(siren.model, 32), OnnxRuntimeRuntime(siren.model, 32)):
        got = runtime.run({"x": x})
        assert {k: v.events for k, v in got.spikes.items()} == {k: v.events for k, v in reference.spikes.items()}
        rel = np.linalg.norm(got.outputs["u"] - reference.outputs["u"]) / np.linalg.norm(reference.outputs["u"])
        assert rel <= BACKEND_FLOAT32, (type(runtime).__name__, rel)


def test_evaluate_analyses_the_artifact_as_converted(siren):
    """``onnx2snn evaluate`` rebuilds the reduced graph from the artifact: the same layers, analog nodes and
    analog operations per sample as the conversion's report."""
    from onnx2snn.evaluate import evaluate
    measured = evaluate(siren.model, ann=FIXTURES / "torch_siren.onnx", points=256)
    assert [l.name for l in measured.structure.layers] == ["/Sin_1"] and measured.structure.layers[0].identity
    assert len(measured.report["analog_nodes"]) == len(siren.report["analog_nodes"]) == 16
    assert measured.report["analog_ops_per_sample"] == siren.report["analog_ops_per_sample"]
    assert measured.report["energy"]["45nm_fp32"]["ann_pj"] == siren.report["energy"]["45nm_fp32"]["ann_pj"]


def test_a_sine_on_one_monotone_stretch_is_left_as_it_is():
    """A sin first layer whose currents stay within one monotone stretch (oscillation 1) is not rewritten."""
    from onnx2snn.ann import run_ann
    from onnx2snn.importer import import_model
    from onnx2snn.sine_range import reducible_sines
    from onnx2snn.structure import analyse
    imported = import_model(FIXTURES / "torch_sin.onnx")
    structure = analyse(imported.model)
    assert any(l.static and l.activation.kind == "Sin" for l in structure.layers)
    x = np.random.default_rng(0).uniform(-1.0, 1.0, (512, 1)).astype(np.float32)      # its domain: x=-1:1
    ann = run_ann(imported.model, {"x": x}, [l.activation.input for l in structure.layers])
    assert reducible_sines(structure, ann) == []
