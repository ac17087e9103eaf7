"""NIR export (``onnx2snn.nir_export``): export, write, ``nir.read``, execute, compare with the artifact.

The exact form must reproduce every spike of the artifact's numpy reference run (stepped one step at a
time, in float64, the export's precision) in onnx2snn's NIR executor and through nirtorch with our node
map, for one neuron per unit, the piecewise-linear default, rounding (a = 1/2, v0 = 0) and floor
(a = 1, v0 = θ/2) neurons and a spiking readout.  The ON/OFF form is lossy: its error is measured, and its
mapping is checked where it is exact (unsigned neurons driven by a constant current, subtractive reset).
Through sinabs (an optional extra that pins an older nir: in this environment, or in the one whose python
``ONNX2SNN_SINABS_PYTHON`` names) the ON/OFF file must run as the executor's sinabs reading, spike count for
spike count.
"""

import dataclasses
import os
import sys

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnx2snn
from onnx2snn.cli import main
from onnx2snn.errors import ModelError
from onnx2snn.nir_check import ArtifactStepper, check_exact, check_onoff, check_sinabs, domain_points
from onnx2snn.nir_export import export_nir, write_nir
from runtimes import spec
from runtimes.errors import ArtifactError
from runtimes.nir_executor import NirExecutor, back_edges
from runtimes.nir_sinabs import run_sinabs
from artifact_graph import artifact_model

nir = pytest.importorskip("nir")

T, POINTS = 8, 24
CONVERSIONS = {
    "pwl-default": {},
    "one-per-unit": {"pieces": 1, "calibration": "finetune", "finetune_iterations": 20},
    "floor-spiking-readout": {"pieces": 1, "neuron": "floor", "calibration": "advanced", "readout": "spiking"},
}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """The test fixture converted three ways (small: T = 8, 256 calibration points)."""
    folder = tmp_path_factory.mktemp("nir")
    paths = {}
    for name, options in CONVERSIONS.items():
        result = onnx2snn.convert("tests/fixtures/torch_tanh_gemm.onnx", timesteps=T, samples=256,
                                  validation_points=64, **options)
        paths[name] = result.save(folder / f"{name}.snn.onnx")
    return paths


def _read_back(exported, path):
    write_nir(exported, path)
    return dataclasses.replace(exported, graph=nir.read(path))


def _if_attributes(model):
    return [{a.name: helper.get_attribute_value(a) for a in n.attribute} for n in model.graph.node
            if n.op_type == spec.IF_OP]


@pytest.mark.parametrize("kind", list(CONVERSIONS))
def test_exact_form_reproduces_every_spike(artifacts, kind, tmp_path):
    model = onnx.load(artifacts[kind])
    points = domain_points(model, POINTS, seed=3)
    exported = _read_back(export_nir(model), tmp_path / "model.nir")
    check = check_exact(exported, model, points)
    assert check.events > 1000                        # the layers do fire
    assert check.mismatches == 0, check.per_layer
    assert check.rel_l2 < 1e-12                       # decoded outputs: float64 folding only
    assert check.rel_l2_shipped < 1e-4                # against the float32 run as shipped
    if kind.startswith("floor"):                      # the floor neuron really is a = 1 with v0 = θ/2 ≠ 0
        assert all(a["fire_fraction"] == 1.0 for a in _if_attributes(model))
        v0 = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name.endswith("v0")))
        assert np.any(v0 != 0)
        assert len(exported.layers) == 3              # the spiking readout is a layer of its own


def test_exact_form_through_nirtorch(artifacts, tmp_path):
    pytest.importorskip("nirtorch", minversion="2.6")     # the nir_to_torch of runtimes.nir_torch
    from runtimes.nir_torch import run_nirtorch
    model = onnx.load(artifacts["pwl-default"])
    x = domain_points(model, POINTS, seed=4)
    exported = _read_back(export_nir(model), tmp_path / "model.nir")
    nodes = tuple(layer.node for layer in exported.layers)
    decoded, steps = run_nirtorch(exported.graph, x["x"], T, record=nodes)
    stepper, mismatches, events = ArtifactStepper(model, np.float64), 0, 0
    for t in range(T):
        spikes = stepper.step(x)
        for layer in exported.layers:
            expected = layer.signs * spikes[layer.artifact_node][:, layer.neurons] > 0
            events += int(expected.sum())
            mismatches += int(np.count_nonzero(expected != (steps[layer.node][t] > 0)))
    assert events > 1000 and mismatches == 0
    reference = onnx2snn.nir_check._reference(model, x, T)["u"]
    assert np.max(np.abs(decoded - reference)) < 1e-5


def test_onoff_form_round_trip_and_error(artifacts, tmp_path):
    model = onnx.load(artifacts["pwl-default"])
    x = domain_points(model, POINTS, seed=5)
    exported = export_nir(model, "onoff")
    path = tmp_path / "onoff.nir"
    read = _read_back(exported, path)
    import h5py
    with h5py.File(path) as f:                        # nir 1.0.4 (sinabs) reads IF only without v_reset
        kinds = {k: g["type"][()] for k, g in f["node"]["nodes"].items()}
        assert [k for k, v in kinds.items() if v == b"IF" and "v_reset" in f["node"]["nodes"][k]] == []
    assert sum(v == b"IF" for v in kinds.values()) == 2
    memory, disk = check_onoff(exported, model, x), check_onoff(read, model, x)
    assert memory == disk
    assert 0 < disk.rel_l2_subtract < disk.rel_l2 < 2      # lossy, and the reset to 0 loses more


def test_onoff_form_through_nirtorch(artifacts, tmp_path):
    pytest.importorskip("nirtorch", minversion="2.6")     # the nir_to_torch of runtimes.nir_torch
    from runtimes.nir_torch import run_nirtorch
    model = onnx.load(artifacts["pwl-default"])
    x = domain_points(model, POINTS, seed=6)["x"]
    read = _read_back(export_nir(model, "onoff"), tmp_path / "onoff.nir")
    for reset in ("value", "subtract"):
        decoded, _ = run_nirtorch(read.graph, x, T, if_reset=reset)
        ours = NirExecutor(read.graph, if_reset=reset).run({"x": x}, T).outputs["u"]
        np.testing.assert_allclose(decoded, ours, rtol=0, atol=1e-12)


def _through_sinabs(artifacts, python):
    """sinabs with one spike per step runs the file as the executor's sinabs reading: the same spike count
    in every layer, outputs within float32 rounding (sinabs's affine maps are float32); sinabs's default
    MultiSpike fires several spikes where the drive exceeds θ, which the artifact's neuron never does."""
    model = onnx.load(artifacts["pwl-default"])
    check = check_sinabs(export_nir(model, "onoff"), model, domain_points(model, POINTS, seed=7), python)
    assert check.spikes > 1000 and check.spike_mismatches == 0
    assert check.vs_executor["sinabs"] < 1e-5
    assert check.rel_l2 == pytest.approx(check.executor_rel_l2["sinabs"], rel=1e-3)
    assert 0 < check.rel_l2 < check.executor_rel_l2["value"]          # lossy; NIR's reset to 0 loses more
    assert check.rel_l2_multi > 1


def test_onoff_form_through_sinabs(artifacts):
    pytest.importorskip("sinabs")
    _through_sinabs(artifacts, None)


@pytest.mark.skipif(not os.environ.get("ONNX2SNN_SINABS_PYTHON"),
                    reason="ONNX2SNN_SINABS_PYTHON (the python of an environment with sinabs) not set")
def test_onoff_form_through_sinabs_environment(artifacts):
    _through_sinabs(artifacts, os.environ["ONNX2SNN_SINABS_PYTHON"])


def test_sinabs_missing_is_one_line(artifacts, tmp_path):
    """Run through an interpreter without sinabs (this one, unless it has it): sinabs's import error."""
    try:
        import sinabs  # noqa: F401
        pytest.skip("sinabs is importable here")
    except ImportError:
        pass
    path = write_nir(export_nir(onnx.load(artifacts["pwl-default"]), "onoff"), tmp_path / "onoff.nir")
    with pytest.raises(ArtifactError, match=r"sinabs run of .*onoff\.nir with .*: ModuleNotFoundError.*sinabs"):
        run_sinabs(path, np.zeros((2, 1)), T, python=sys.executable)
    with pytest.raises(ArtifactError, match="sinabs is not importable here"):
        run_sinabs(path, np.zeros((2, 1)), T)


def _one_layer(fire_fraction, v0_fraction, signed=1, inputs=2, units=3, k=2):
    """x → MatMul → Add → IF (unsigned or signed, some padding) → decode → MatMul → Decode → y."""
    rng = np.random.default_rng(7)
    theta = rng.uniform(0.3, 1.0, (units, k))
    theta[0, 1] = np.inf                               # padding
    p = {"W1": rng.normal(0, 0.4, (inputs, units)), "b1": np.full(units, 0.5),
         "v0": v0_fraction * np.where(np.isfinite(theta), theta, 0.0),
         "beta": rng.uniform(0, 0.2, (units, k)), "theta_pos": theta, "theta_neg": theta * 1.3,
         "w": rng.normal(0, 1, (units, k)), "c": rng.normal(0, 0.1, units), "W2": rng.normal(0, 1, (units, 1))}
    p = {key: value.astype(np.float32) for key, value in p.items()}
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["xw"], name="l1/MatMul"),
             helper.make_node("Add", ["xw", "b1"], ["z"], name="l1/Add"),
             helper.make_node(spec.IF_OP, ["z", "v0", "beta", "theta_pos", "theta_neg"], ["s", "v"], name="if1",
                              domain=spec.DOMAIN, signed=signed, fire_fraction=fire_fraction),
             helper.make_node("Mul", ["s", "w"], ["sw"], name="if1/decode_mul"),
             helper.make_node("ReduceSum", ["sw", "axes"], ["h"], name="if1/decode_sum", keepdims=0),
             helper.make_node("Add", ["h", "c"], ["hc"], name="if1/decode_add"),
             helper.make_node("MatMul", ["hc", "W2"], ["y/step"], name="out/MatMul"),
             helper.make_node(spec.DECODE_OP, ["y/step"], ["y"], name="y/decode", domain=spec.DOMAIN)]
    return artifact_model(nodes, p, [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", inputs])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 1])], 40, "one_layer")


@pytest.mark.parametrize("fire_fraction,v0", [(0.5, 0.0), (1.0, 0.5), (1.0, 0.0), (0.75, 0.3)])
@pytest.mark.parametrize("signed", [0, 1])
def test_exact_form_of_hand_built_neurons(fire_fraction, v0, signed):
    """Rounding, floor and other (a, v0): asymmetric thresholds, padding, unsigned and signed layers."""
    model = _one_layer(fire_fraction, v0, signed)
    x = {"x": np.random.default_rng(8).uniform(-2, 2, (40, 2)).astype(np.float32)}
    exported = export_nir(model)
    assert len(exported.layers[0].neurons) == (5 + 5 * signed)      # padding dropped, - channels if signed
    check = check_exact(exported, model, x)
    assert check.events > 500 and check.mismatches == 0
    assert back_edges(exported.graph) == {("layer1_reset", "layer1_integrator")}


def test_onoff_form_is_exact_count_for_constant_unsigned_drive():
    """Unsigned neurons under a constant current z, reset by subtraction: the artifact's neuron fires
    floor(T·z/θ + 1/2) times in T steps (a = 1/2 from v0 = 0), the ON neuron, fed z + θ/(2T), as often."""
    model = _one_layer(0.5, 0.0, signed=0)
    x = {"x": np.random.default_rng(9).uniform(-2, 2, (40, 2)).astype(np.float32)}
    exported = export_nir(model, "onoff")
    executor = NirExecutor(exported.graph, if_reset="subtract")
    stepper, ours, theirs = ArtifactStepper(model, np.float64), 0, 0
    for _ in range(40):
        ours = ours + executor.step(x)["layer1_neurons"]
        theirs = theirs + (stepper.step(x)["if1"][:, exported.layers[0].neurons] > 0)
    assert theirs.sum() > 500
    np.testing.assert_array_equal(ours, theirs)


def _with_node(model, op_type, **attrs):
    """``model`` with the IF node's attributes replaced, or an analog op inserted before the readout."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    node = next(n for n in copy.graph.node if n.op_type == spec.IF_OP)
    if op_type == spec.IF_OP:
        for key, value in attrs.items():
            node.attribute.append(helper.make_attribute(key, value))
    else:
        out = next(n for n in copy.graph.node if n.name == "out/MatMul")
        out.input[0] = "squashed"
        copy.graph.node.insert(list(copy.graph.node).index(out), helper.make_node(op_type, ["hc"], ["squashed"],
                                                                                  name="analog/op", **attrs))
    return copy


@pytest.mark.parametrize("change,words", [
    ({"op_type": spec.IF_OP, "coding": "phase"}, "node 'if1': phase coding"),
    ({"op_type": spec.IF_OP, "leak": 0.9}, "node 'if1': leak 0.9"),
    ({"op_type": "Tanh"}, "node 'analog/op' (Tanh): an analog op"),
    ({"op_type": "Transpose", "perm": [1, 0]}, "node 'analog/op' (Transpose): moves values across the batch axis"),
    ({"op_type": "Flatten", "axis": 0}, "node 'analog/op' (Flatten): moves values across the batch axis"),
])
def test_what_nir_cannot_carry_is_refused_naming_the_node(change, words):
    with pytest.raises(ModelError, match=words.replace("(", r"\(").replace(")", r"\)")):
        export_nir(_with_node(_one_layer(0.5, 0.0), **change))


def test_executor_semantics_by_hand():
    """0.3 per step into an IF of threshold 1: spikes at t = 4, 8 with the reset to 0; at 4, 7 with the
    subtractive reset (1.2 → 0.2, 0.5, 0.8, 1.1) and sinabs's.  -3, -3, then 0.25 per step: the subtractive
    reset climbs from -6 and fires at t = 31 (v = 1.25 > 1); sinabs's floors v at -1 and fires from v = 1.0
    at t = 10 (>=), then every 4 steps."""
    graph = nir.NIRGraph(nodes={"x": nir.Input(input_type={"input": np.array([1])}),
                                "w": nir.Affine(weight=np.array([[1.0]]), bias=np.array([0.0])),
                                "n": nir.IF(r=np.array([1.0]), v_threshold=np.array([1.0])),      # v_reset = 0
                                "y": nir.Output(output_type={"output": np.array([1])})},
                         edges=[("x", "w"), ("w", "n"), ("n", "y")])
    for reset, fired in (("value", [4, 8]), ("subtract", [4, 7]), ("sinabs", [4, 7])):
        executor = NirExecutor(graph, if_reset=reset)
        steps = [executor.step({"x": np.array([[0.3]])})["n"][0, 0] for _ in range(8)]
        assert [t + 1 for t, s in enumerate(steps) if s] == fired
    # sinabs fires at v >= θ and floors v at -θ: -3, -3, then 0.25 per step
    drive = [-3.0, -3.0] + [0.25] * 30
    for reset, fired in (("subtract", [31]), ("sinabs", [10, 14, 18, 22, 26, 30])):
        executor = NirExecutor(graph, if_reset=reset)
        steps = [executor.step({"x": np.array([[d]])})["n"][0, 0] for d in drive]
        assert [t + 1 for t, s in enumerate(steps) if s] == fired


def test_cli_export_nir(artifacts, tmp_path, capsys):
    out = tmp_path / "model.nir"
    assert main(["export-nir", str(artifacts["one-per-unit"]), "-o", str(out), "--points", "16"]) == 0
    printed = capsys.readouterr().out
    assert "exact form" in printed and "spikes of the artifact" in printed and out.is_file()
    before = out.read_bytes()
    assert main(["export-nir", str(artifacts["one-per-unit"]), "-o", str(out)]) == 1     # never overwritten
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    onoff = tmp_path / "onoff.nir"
    assert main(["export-nir", str(artifacts["one-per-unit"]), "-o", str(onoff), "--form", "onoff",
                 "--points", "16"]) == 0
    assert "lossy" in capsys.readouterr().err and nir.read(onoff).metadata["onnx2snn.form"] == "onoff"
    refused = tmp_path / "phase.snn.onnx"
    onnx.save(_with_node(_one_layer(0.5, 0.0), spec.IF_OP, coding="phase"), refused)
    assert main(["export-nir", str(refused), "-o", str(tmp_path / "phase.nir")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "node 'if1'" in err and not (tmp_path / "phase.nir").exists()


def test_cli_export_nir_through_sinabs(artifacts, tmp_path, capsys):
    """``export-nir --sinabs-python``: the exact form is refused (usage), the ON/OFF form runs through the
    given interpreter's sinabs and prints its error (skipped without ONNX2SNN_SINABS_PYTHON)."""
    assert main(["export-nir", str(artifacts["one-per-unit"]), "-o", str(tmp_path / "x.nir"),
                 "--sinabs-python", sys.executable]) == 2
    assert "--form onoff" in capsys.readouterr().err and not (tmp_path / "x.nir").exists()
    python = os.environ.get("ONNX2SNN_SINABS_PYTHON")
    if not python:
        pytest.skip("ONNX2SNN_SINABS_PYTHON (the python of an environment with sinabs) not set")
    assert main(["export-nir", str(artifacts["pwl-default"]), "-o", str(tmp_path / "onoff.nir"), "--form", "onoff",
                 "--points", "16", "--sinabs-python", python]) == 0
    printed = capsys.readouterr().out
    assert "through sinabs" in printed and "SingleSpike" in printed
