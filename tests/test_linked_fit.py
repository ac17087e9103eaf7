"""The end-to-end fit through links (``calibration/wiring.py``): PINN architectures whose layers are joined by
residual sums, static gates or a LayerNorm convert with the cheap codes of issue 22 (``--coding phase``,
``--pieces 1``, both fitted end to end), within a bound of their ANN in onnxruntime, every runtime agreeing
spike for spike; a link's transpose is its exact gradient; plain chains fit as before."""

import numpy as np
import pytest

import onnx2snn
from conftest import FIXTURES
from onnx2snn.ann import run_ann
from onnx2snn.importer import import_model
from onnx2snn.report import relative_l2
from onnx2snn.structure import analyse
from runtimes.numpy_ref import NumpyRuntime
from runtimes.onnxruntime_backend import OnnxRuntimeRuntime
from runtimes.snntorch_backend import SnnTorchRuntime
from tolerances import BACKEND_FLOAT32

# a short fit (the default is 600 quantised and 2 x 9,600 analog iterations): seconds per conversion
SHORT = dict(samples=512, finetune_iterations=50, validation_points=256)
# (fixture, code, T) -> the bound on SNN vs ANN (onnxruntime), relative L2 on 256 fresh points: the error
# measured with SHORT (seed 0) times about 1.5
CASES = {("torch_modified_mlp", "phase", 6): 0.0,
         ("torch_layernorm", "phase", 6): 0.0,
         ("torch_residual_linear", "pieces1", 8): 0.0}
CODES = {"phase": dict(coding="phase"), "pieces1": dict(pieces=1)}


@pytest.fixture(scope="module")
def converted():
    return {case: onnx2snn.convert(FIXTURES / f"{case[0]}.onnx", timesteps=case[2], **CODES[case[1]], **SHORT)
            for case in CASES}


def _points(n=256, seed=11):
    rng = np.random.default_rng(seed)
    return {"x": (np.array([-1.0, 0.0]) + np.array([2.0, 1.0]) * rng.random((n, 2))).astype(np.float32)}


@pytest.mark.parametrize("case", list(CASES))
def test_linked_network_converts_with_the_cheap_code(converted, case):
    """Every activation but the modified MLP's two static gates spikes, and the SNN (onnxruntime) is within
    the bound of the ANN (onnxruntime) on fresh points."""
    result = converted[case]
    analog = [a for a in result.report["activations"] if not a["spikes"]]
    assert len(analog) == (2 if case[0] == "torch_modified_mlp" else 0), analog
    feeds = _points()
    ann = run_ann(import_model(FIXTURES / f"{case[0]}.onnx").model, feeds)["u"]
    snn = OnnxRuntimeRuntime(result.model, case[2]).run(feeds).outputs["u"]
    assert relative_l2(snn, ann) <= CASES[case], relative_l2(snn, ann)


@pytest.mark.parametrize("case", list(CASES))
def test_runtimes_agree_spike_for_spike(converted, case):
    artifact, feeds = converted[case].model, _points()
    reference = NumpyRuntime(artifact, case[2], fuse=False).run(feeds)
    for runtime in (SnnTorchRuntime(artifact, case[2]), OnnxRuntimeRuntime(artifact, case[2])):
        got = runtime.run(feeds)
        assert {k: v.events for k, v in got.spikes.items()} == {k: v.events for k, v in reference.spikes.items()}
        assert relative_l2(got.outputs["u"], reference.outputs["u"]) <= BACKEND_FLOAT32


@pytest.mark.parametrize("name", ["torch_modified_mlp", "torch_residual_tanh", "torch_residual_linear"])
def test_link_transpose_is_its_gradient(name):
    """⟨g, L(u + e_j) - L(u)⟩ = (Lᵀ g)_j for every source column j (L affine in u), and the tangent is
    L(u̇) - L(0), on the fixture's links (sums, gate products)."""
    imported = import_model(FIXTURES / f"{name}.onnx")
    s = analyse(imported.model)
    links = [l.link for l in s.layers if l.link is not None and not l.link.identity] + list(s.readout_links.values())
    rng = np.random.default_rng(0)
    for link in links:
        ann = run_ann(imported.model, _points(8), link.statics + link.source_tensors)
        sources = [rng.standard_normal(ann[t].shape) for t in link.source_tensors]
        out = link.evaluate(sources, ann)
        g = rng.standard_normal(out.shape)
        for k, transposed in enumerate(link.backward(g, ann)):
            for j in range(sources[k].shape[1]):
                moved = [u.copy() for u in sources]
                moved[k][:, j] += 1.0
                np.testing.assert_allclose(np.sum(g * (link.evaluate(moved, ann) - out), axis=1), transposed[:, j],
                                           rtol=1e-9, atol=1e-9)
        zero = link.evaluate([np.zeros_like(u) for u in sources], ann)
        np.testing.assert_allclose(link.tangent(sources, ann), out - zero, rtol=1e-12, atol=1e-12)
