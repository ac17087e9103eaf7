"""Streaming sigma-delta neurons (``--coding delta``): the neuron against its definition, the numpy
stream runtime against a per-row reference, snnTorch against numpy spike for spike, conversion, ordering
and the streaming run's accounting."""

import numpy as np
import pytest

from conftest import FIXTURES
from onnx2snn.ann import run_ann
from onnx2snn.delta.artifact import build_delta_artifact
from onnx2snn.importer import import_model
from onnx2snn.structure import analyse
from runtimes import spec
from runtimes.neuron import NeuronParams, delta_step
from runtimes.stream import NumpyStreamOps, StreamRuntime


def _params(n, theta, fraction=0.5, dtype=np.float32):
    column = lambda x: np.asarray(x, dtype).reshape(n, 1)
    return NeuronParams(bias=column(np.zeros(n)), theta_pos=column(theta), theta_neg=column(theta),
                        v0=column(np.zeros(n)), signed=True, fire_fraction=fraction, coding=spec.CODING_DELTA)


@pytest.mark.parametrize("fraction", [0.5, 1.0])
def test_delta_neuron_tracks_its_value_within_a_fraction_of_theta(fraction):
    """r stays within a·θ of the activation after every step, r is the running sum of the events, each
    event a whole number of θ, and a unit that moves less than a·θ sends nothing."""
    rng = np.random.default_rng(0)
    n, theta = 5, np.array([0.01, 0.02, 0.05, 0.1, 0.3], np.float32)
    p = _params(n, theta, fraction)
    walk = np.cumsum(rng.normal(0, 0.03, (400, n)), axis=0).astype(np.float32)
    r = p.v0
    total = np.zeros((n, 1), np.float64)
    for a in walk:
        s, r_next, k = delta_step(r, a, p)
        np.testing.assert_array_equal(s, k * np.sign(s) * p.theta_pos)
        np.testing.assert_array_equal(r_next, r + s)
        moved = np.abs(a[:, None] - r) < fraction * p.theta_pos
        assert np.all(k[moved] == 0)
        r = r_next
        total += s
        assert np.all(np.abs(a[:, None] - r) < fraction * p.theta_pos * (1 + 1e-6))
    np.testing.assert_allclose(r, total, rtol=0, atol=1e-4)


def _artifact(fixture, theta, graded=False):
    imported = import_model(FIXTURES / fixture)
    structure = analyse(imported.model)
    thresholds = [np.full(layer.width, theta) for layer in structure.layers]
    rest = [np.zeros(layer.width) for layer in structure.layers]
    return imported, build_delta_artifact(imported.model, structure, thresholds, rest,
                                          {spec.META_TIMESTEPS: "1"}, graded=graded)


def _line(n, dtype, d=1):
    """n points along a diagonal of [-1, 1] x [0, 1] (d = 2) or of [-1, 1]."""
    t = np.linspace(0, 1, n)
    return (np.stack([2 * t - 1, t], 1)[:, :d]).astype(dtype)


def test_stream_runtime_matches_per_row_reference_and_the_ann():
    """The compiled scan equals ``neuron.delta_step`` row by row bit for bit, cutting the stream into blocks
    changes no bit (r carried; every row's arithmetic is its own, ``stream_math``), and the output is
    within the bound the thresholds promise of the ANN."""
    imported, model = _artifact("torch_tanh_gemm.onnx", 2e-3)
    x = {"x": _line(500, np.float32, 2)}
    reference = StreamRuntime(model, ops=NumpyStreamOps(compiled=False)).run(x)
    for runtime in (StreamRuntime(model), StreamRuntime(model, block_rows=77)):
        got = runtime.run(x)
        np.testing.assert_array_equal(got.outputs["u"], reference.outputs["u"])
        for name, counts in reference.spikes.items():
            np.testing.assert_array_equal(got.spikes[name].per_row, counts.per_row)
            assert got.spikes[name].events == counts.events > 0
    y, ann = reference.outputs["u"], run_ann(imported.model, x)["u"]
    rel = np.linalg.norm(y - ann) / np.linalg.norm(ann)
    assert 1e-4 < rel < 2e-2, rel
    first = sum(c.per_row[0] for c in reference.spikes.values())
    later = sum(c.per_row[1:].mean() for c in reference.spikes.values())
    assert first > 20 * later          # the start-up point sends each unit's whole value


def test_graded_events_count_sending_units():
    """``graded`` changes the count (one event per sending unit), not the values."""
    _, binary = _artifact("torch_tanh_gemm.onnx", 1e-3)
    _, graded = _artifact("torch_tanh_gemm.onnx", 1e-3, graded=True)
    x = {"x": _line(300, np.float32, 2)}
    b, g = StreamRuntime(binary).run(x), StreamRuntime(graded).run(x)
    np.testing.assert_array_equal(b.outputs["u"], g.outputs["u"])
    for name, counts in b.spikes.items():
        assert g.spikes[name].events == counts.changes == g.spikes[name].changes < counts.events


def test_snntorch_delta_neuron_is_numpy_bit_for_bit():
    torch = pytest.importorskip("torch")
    pytest.importorskip("snntorch")
    from runtimes.snntorch_backend import SignedIF
    rng = np.random.default_rng(1)
    n = 64
    theta = rng.uniform(1e-3, 1e-1, n).astype(np.float32)
    p = _params(n, theta)
    neuron = SignedIF(p.bias, p.theta_pos, p.theta_neg, True, 0.5, coding=spec.CODING_DELTA)
    r, sent = p.v0, torch.tensor(p.v0)
    steps = rng.normal(0, 0.05, (200, n)).astype(np.float32)
    steps[::7] = np.round(steps[::7] / theta * 2) * theta / 2      # changes exactly at a level
    for a in np.cumsum(steps, axis=0, dtype=np.float32):
        s, r, k = delta_step(r, a, p)
        ts, sent, tk = neuron.delta_step(torch.tensor(a)[:, None] + neuron.bias, sent)
        np.testing.assert_array_equal(ts.numpy(), s)
        np.testing.assert_array_equal(tk.numpy(), k)
        np.testing.assert_array_equal(sent.numpy(), r)


def test_snntorch_stream_identical_spikes_float64():
    """On a float64 network snnTorch's stream sends the numpy reference's spikes, row by row."""
    pytest.importorskip("torch")
    pytest.importorskip("snntorch")
    from runtimes.network import SpikingNetwork
    _, model = _artifact("jax_float64_tanh.onnx", 1e-3)
    x = {"x": _line(400, np.float64)}
    reference = SpikingNetwork(model).run_with_stats(x)
    got = SpikingNetwork(model, backend="snntorch").run_with_stats(x)
    for name, counts in reference.spikes.items():
        np.testing.assert_array_equal(got.spikes[name].per_row, counts.per_row)
    np.testing.assert_array_equal(got.outputs["y"], reference.outputs["y"])


def test_verify_requires_identical_streams():
    """``verify`` holds a delta artifact's backends to exact agreement, and snnTorch meets it."""
    pytest.importorskip("torch")
    pytest.importorskip("snntorch")
    from runtimes.verify import verify
    _, model = _artifact("torch_tanh_gemm.onnx", 1e-3)
    report = verify(model, {"x": _line(300, np.float32, 2)}, backends=["snntorch"])
    assert report.ok and report.rtol == 0.0
    check = report.backends["snntorch"]
    assert check.exact_spikes and set(check.rel_l2.values()) == {0.0}


def _with_layer_outputs(model):
    """A copy of delta artifact ``model`` whose graph also outputs every IF node's spikes s and sent r."""
    from onnx import TensorProto, helper
    out = type(model)()
    out.CopyFrom(model)
    for node in model.graph.node:
        if node.op_type == spec.IF_OP:
            out.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.DOUBLE, None)
                                    for name in node.output[:2])
    return out


@pytest.mark.parametrize("source, theta", [("models/burgers.onnx", 1e-4),
                                           ("tests/fixtures/torch_siren.onnx", 1e-3),
                                           ("tests/fixtures/torch_gelu.onnx", 1e-3)])
def test_snntorch_stream_identical_spikes_float32(source, theta):
    """On float32 networks (a shipped model; Sin; Erf, which has no specified algorithm and runs the numpy
    kernel in torch) snnTorch's stream sends the numpy reference's spike tensors and outputs bit for bit:
    both compute the stream in float64 with ``stream_math``'s arithmetic.  With each library's float32
    MatMul and tanh instead, 102 of 3.6e7 events differed on this burgers stream (θ = 1e-4, 900 points)."""
    pytest.importorskip("torch")
    pytest.importorskip("snntorch")
    from conftest import ROOT
    from runtimes.snntorch_stream import TorchStreamOps
    imported = import_model(ROOT / source)
    assert imported.dtype == np.float32
    structure = analyse(imported.model)
    model = _with_layer_outputs(build_delta_artifact(
        imported.model, structure, [np.full(layer.width, theta) for layer in structure.layers],
        [np.zeros(layer.width) for layer in structure.layers], {spec.META_TIMESTEPS: "1"}))
    name, = (i for i in imported.input_shapes)
    d = imported.input_shapes[name][-1]
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, 30)] * d, indexing="ij"), -1).reshape(-1, d)
    x = {name: g[:900].astype(np.float32)}
    reference = StreamRuntime(model).run(x)
    got = StreamRuntime(model, ops=TorchStreamOps()).run(x)
    assert reference.outputs.keys() == got.outputs.keys()
    for key, value in reference.outputs.items():
        np.testing.assert_array_equal(got.outputs[key], value, err_msg=key)
        assert got.outputs[key].dtype == value.dtype
    for layer, counts in reference.spikes.items():
        assert got.spikes[layer].events == counts.events > 0
        np.testing.assert_array_equal(got.spikes[layer].per_row, counts.per_row)
    assert reference.outputs[model.graph.output[0].name].dtype == np.float32
    ann = run_ann(imported.model, x)[model.graph.output[0].name]
    y = reference.outputs[model.graph.output[0].name]
    assert np.linalg.norm(y - ann) / np.linalg.norm(ann) < 2e-2



@pytest.fixture(scope="module")
def converted():
    """torch_tanh_gemm (binary and graded events) and the separable fixture converted for 1e-2 on grids of
    4,096 points."""
    import onnx2snn
    from onnx2snn.delta import convert as delta_convert
    saved, delta_convert.MIN_POINTS = delta_convert.MIN_POINTS, 4096
    try:
        return {key: onnx2snn.convert(FIXTURES / key.split("/")[0], coding="delta", target_error=1e-2,
                                      samples=4096, validation_points=4096, graded=key.endswith("graded"))
                for key in ("torch_tanh_gemm.onnx", "torch_separable.onnx", "torch_tanh_gemm.onnx/graded")}
    finally:
        delta_convert.MIN_POINTS = saved


def test_converted_artifact_meets_its_target_on_fresh_ordered_points(converted):
    for key, result in converted.items():
        report = result.report
        assert report["coding"] == "delta" and report["timesteps"] == 1
        assert report["validation"]["rel_l2_snn_vs_ann"] <= 1e-2, key
        assert report["calibration_output_error"] <= 0.8e-2, key
        codings = {a.s.decode() for n in result.model.graph.node if n.op_type == spec.IF_OP
                   for a in n.attribute if a.name == spec.IF_CODING}
        assert codings == {spec.CODING_DELTA}
        assert report["startup"]["spikes_first_point"] > report["startup"]["spikes_per_later_point"] > 0


def test_graded_snn_costs_what_the_delta_ann_costs(converted):
    """A graded event multiplies its payload into every target, which is the delta ANN's arithmetic: on
    every cost table the graded SNN's energy is the delta ANN's; binary events cost less on 45 nm."""
    graded, binary = converted["torch_tanh_gemm.onnx/graded"].report, converted["torch_tanh_gemm.onnx"].report
    for name, e in graded["energy"].items():
        assert e["snn_pj"] == pytest.approx(graded["delta_ann"]["energy"][name]["pj"], rel=1e-9)
    fp32 = binary["energy"]["45nm_fp32"]
    assert fp32["snn_pj"] < binary["delta_ann"]["energy"]["45nm_fp32"]["pj"] < fp32["ann_pj"]


@pytest.mark.parametrize("order", ["boustrophedon", "hilbert", "random", "keep"])
def test_stream_returns_outputs_in_the_users_order(converted, order):
    """Points in a shuffled order come back in that order: the error against the ANN at the user's points
    is the stream's, not that of a permutation (a grid of a separable network: each axis)."""
    from onnx2snn.delta.stream import stream
    for key in ("torch_tanh_gemm.onnx", "torch_separable.onnx"):
        result = converted[key]
        rng = np.random.default_rng(3)
        if key == "torch_separable.onnx":
            x = {"x": rng.permutation(np.linspace(-1, 1, 80))[:, None].astype(np.float32),
                 "t": rng.permutation(np.linspace(0, 1, 60))[:, None].astype(np.float32)}
        else:
            g = np.stack(np.meshgrid(np.linspace(-1, 1, 70), np.linspace(0, 1, 70), indexing="ij"), -1)
            x = {"x": rng.permutation(g.reshape(-1, 2)).astype(np.float32)}
        streamed = stream(result.network(), x, order)
        ann = run_ann(import_model(FIXTURES / key).model, x)["u"]
        y = streamed.outputs["u"]
        assert y.shape == ann.shape
        assert np.linalg.norm(y - ann) / np.linalg.norm(ann) < 2e-2, (key, order)


def test_paths_step_to_neighbours():
    from onnx2snn.delta.order import path_order
    rng = np.random.default_rng(0)
    for n, d in ((16, 2), (8, 3), (50, 1)):
        grid = np.stack(np.meshgrid(*[np.arange(n)] * d, indexing="ij"), -1).reshape(-1, d)
        grid = grid[rng.permutation(len(grid))]
        for order in ("boustrophedon", "hilbert"):
            visit = path_order(grid.astype(float), order)
            np.testing.assert_array_equal(np.sort(visit), np.arange(len(grid)))
            assert np.all(np.abs(np.diff(grid[visit], axis=0)).sum(1) == 1), (n, d, order)
        shuffled = path_order(grid.astype(float), "random")
        assert np.abs(np.diff(grid[shuffled], axis=0)).sum(1).mean() > n / 4


def test_delta_refuses_what_does_not_apply():
    from onnx2snn.calibration import ConversionOptions
    from onnx2snn.errors import CalibrationError
    with pytest.raises(CalibrationError, match="--pieces 2"):
        ConversionOptions(coding="delta", pieces=2)
    _, model = _artifact("torch_tanh_gemm.onnx", 1e-2)
    from runtimes.errors import ArtifactError
    from runtimes.network import SpikingNetwork
    with pytest.raises(ArtifactError, match="one step per point"):
        SpikingNetwork(model, timesteps=8)
    with pytest.raises(ArtifactError, match="does not run delta"):
        SpikingNetwork(model, backend="onnxruntime")


def test_cli_convert_and_run_stream(tmp_path, monkeypatch):
    """``convert --coding delta`` and ``run --order keep --report-json``: outputs in the user's order, the
    report's energy keys, the delta-ANN baseline and the start-up; -T is refused."""
    import json
    import shutil
    from onnx2snn.cli import main
    from onnx2snn.delta import convert as delta_convert
    monkeypatch.setattr(delta_convert, "MIN_POINTS", 1024)
    shutil.copy(FIXTURES / "torch_tanh_gemm.onnx", tmp_path / "m.onnx")
    assert main([str(tmp_path / "m.onnx"), "--coding", "delta", "-T", "8", "-q"]) == 2
    assert main([str(tmp_path / "m.onnx"), "--coding", "delta", "--target-error", "1e-2", "--samples", "1024",
                 "--validation-points", "1024", "-q"]) == 0
    x = _line(300, np.float32, 2)[::-1].copy()
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(tmp_path / "m.snn.onnx"), "--input", str(tmp_path / "x.npy"), "--order", "hilbert",
                 "-o", str(tmp_path / "y.npy"), "--report-json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["order"] == "hilbert" and report["validation"]["points"] == 300
    assert {"energy", "energy_breakdown_pj", "spikes_per_sample", "synops_per_sample", "delta_ann",
            "startup"} <= set(report)
    ann = run_ann(import_model(tmp_path / "m.onnx").model, {"x": x})["u"]
    y = np.load(tmp_path / "y.npy")
    assert np.linalg.norm(y - ann) / np.linalg.norm(ann) == pytest.approx(report["validation"]["rel_l2_snn_vs_ann"],
                                                                          rel=1e-4)
