"""Every golden fixture (torch, tf2onnx, jax2onnx exports) converts, saves and runs on the numpy runtime,
close to the original network run in onnxruntime."""

import numpy as np
import onnx
import pytest

import onnx2snn
import runtimes
from conftest import FIXTURES, fixture_models
from onnx2snn.ann import run_ann
from onnx2snn.importer import import_model
from runtimes import spec
from tolerances import FIXTURE_DEFAULT_T32


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("snn")
    results = {}
    for path in fixture_models():
        result = onnx2snn.convert(path, samples=1024, validation_points=512)
        results[path.name] = (result, result.save(folder / (path.stem + ".snn.onnx")))
    return results


@pytest.mark.parametrize("name", [p.name for p in fixture_models()])
def test_fixture_converts_close_to_ann(converted, name):
    result, saved = converted[name]
    error = result.report["validation"]["rel_l2_snn_vs_ann"]
    assert np.isfinite(error) and error <= FIXTURE_DEFAULT_T32, f"{name}: {error:.3e}"
    assert result.report["spikes_per_sample"] > 0
    artifact = onnx.load(saved)
    onnx.checker.check_model(artifact)
    assert artifact.ir_version <= 10
    meta = {p.key: p.value for p in artifact.metadata_props}
    assert meta[spec.META_TIMESTEPS] == "32" and meta[spec.META_ENCODING] == "direct"
    assert meta[spec.META_READOUT] == "analog" and spec.META_DOMAIN in meta
    assert [o.name for o in artifact.graph.output] == [o.name for o in onnx.load(FIXTURES / name, load_external_data=False).graph.output]


@pytest.mark.parametrize("name", ["torch_separable.onnx", "torch_normalised_hardbc.onnx", "tf_swish.onnx",
                                  "jax_float64_tanh.onnx"])
def test_saved_artifact_reproduces_report(converted, name):
    """Independent check of the report: reload the file, run it, compare with onnxruntime on new points."""
    result, saved = converted[name]
    imported = import_model(FIXTURES / name)
    rng = np.random.default_rng(123)
    feeds = {}
    for input_name, boxes in result.domain.items():
        lo, hi = np.array(boxes).T
        feeds[input_name] = (lo + (hi - lo) * rng.random((300, len(boxes)))).astype(imported.dtype)
    ann = run_ann(imported.model, feeds)
    snn = runtimes.load(saved).run(feeds)
    for output in ann:
        assert snn[output].dtype == ann[output].dtype and snn[output].shape == ann[output].shape
        rel = np.linalg.norm(snn[output] - ann[output]) / np.linalg.norm(ann[output])
        assert rel <= FIXTURE_DEFAULT_T32, f"{name}/{output}: {rel:.3e}"


def test_structure_of_special_fixtures(converted):
    """What stays analog: preprocessing, hard BCs, Fourier features, Einsum between sub-networks."""
    analog = lambda name: {a["op"] for a in converted[name][0].report["analog_nodes"]}
    assert {"Sub", "Div", "Mul"} <= analog("torch_normalised_hardbc.onnx")
    assert {"Sin", "Cos", "Concat", "MatMul"} <= analog("torch_fourier.onnx")
    assert analog("torch_separable.onnx") == {"Einsum"}
    assert len(converted["torch_separable.onnx"][0].report["layers"]) == 4
    assert analog("torch_tanh_gemm.onnx") == set()
    kinds = lambda name: [l["activation"] for l in converted[name][0].report["layers"]]
    assert kinds("torch_sigmoid_relu.onnx") == ["Sigmoid", "Relu", "LeakyRelu", "Elu"]
    assert kinds("torch_swish.onnx") == kinds("tf_swish.onnx") == ["Swish", "Swish"]
    assert set(kinds("torch_gelu.onnx")) == set(kinds("jax_raw_gelu.onnx")) == {"Gelu"}
    assert kinds("torch_softplus.onnx") == ["Softplus", "Softplus"]


def test_error_falls_with_timesteps_and_pieces():
    """More steps and more pieces bring the SNN to the ANN: the conversion converges."""
    path = FIXTURES / "torch_tanh_gemm.onnx"
    errors = {}
    for pieces, T in ((1, 8), (1, 64), (16, 64), (32, 256)):
        report = onnx2snn.convert(path, pieces=pieces, timesteps=T, samples=1024, validation_points=512).report
        errors[pieces, T] = report["validation"]["rel_l2_snn_vs_ann"]
    assert errors[1, 64] < errors[1, 8]
    assert errors[16, 64] < errors[1, 64] / 3
    assert errors[32, 256] < errors[16, 64] and errors[32, 256] < 2e-3
