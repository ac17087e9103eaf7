"""The PINNs trained outside PyTorch convert with no options (framework-agnostic proof).

``models/poisson1d_keras.onnx`` (TensorFlow/Keras 3, exported by tf2onnx: ``MatMul`` + ``Add``) and
``models/poisson1d_jax.onnx`` (JAX/Flax NNX, exported by jax2onnx: ``Gemm(transB=0)``) were made by
``models/train_poisson1d_keras.py`` and ``models/train_poisson1d_jax.py`` in their own virtualenvs
(optional extras ``fixtures-tf`` / ``fixtures-jax``, not run here); these tests only read the shipped files.
Their ANN error against the exact solution is tested with every shipped model in ``test_models.py``.
"""

import onnx
import pytest

import onnx2snn
from conftest import MODELS
from tolerances import MODEL_ANN_VS_EXACT, MODEL_DEFAULT_T32

# file -> (problem, op types the exporter wrote, hidden tanh layers)
FRAMEWORK_MODELS = {
    "poisson1d_keras.onnx": ("poisson1d", {"MatMul", "Add", "Tanh"}, 3),
    "poisson1d_jax.onnx": ("poisson1d", {"Gemm", "Tanh"}, 3),
}
NAMES = sorted(FRAMEWORK_MODELS)


def _metadata(name):
    return {p.key: p.value for p in onnx.load(MODELS / name).metadata_props}


@pytest.fixture(scope="module")
def converted():
    """Each model converted once with the default options (T=32; domain and problem from the metadata)."""
    return {name: onnx2snn.convert(MODELS / name, validation_points=1024) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_file_follows_the_model_conventions(name):
    problem, ops, _ = FRAMEWORK_MODELS[name]
    model = onnx.load(MODELS / name)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version <= 10
    assert {node.op_type for node in model.graph.node} == ops
    assert [i.name for i in model.graph.input] == ["x"] and [o.name for o in model.graph.output] == ["u"]
    assert _metadata(name)["onnx2snn.problem"] == problem


@pytest.mark.parametrize("name", NAMES)
def test_default_conversion_meets_the_target(converted, name):
    problem, _, hidden = FRAMEWORK_MODELS[name]
    report = converted[name].report
    validation = report["validation"]
    assert validation["rel_l2_snn_vs_ann"] <= MODEL_DEFAULT_T32, f"{name}: {validation['rel_l2_snn_vs_ann']:.3e}"
    assert validation["rel_l2_ann_vs_exact"] <= MODEL_ANN_VS_EXACT[problem]
    assert report["analog_nodes"] == []  # the exporter's dense-layer pattern was recognised
    assert [layer["activation"] for layer in report["layers"]] == ["Tanh"] * hidden
    assert report["spikes_per_sample"] > 0
