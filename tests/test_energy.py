"""Energy accounting: graph arithmetic counted by hand, and a report's energy recomputed independently from
the artifact's weights, neurons and a separate run's spike counts."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import FIXTURES
from onnx2snn import convert
from onnx2snn.energy import load_tables
from onnx2snn.errors import ModelError
from onnx2snn.inputs import validation_inputs
from onnx2snn.operations import graph_work
from runtimes.network import neuron_counts

FP32 = {"mac": 4.6, "synop": 0.9, "neuron_update": 1.8, "activation": 4.6, "add": 0.9, "mult": 3.7}


def test_graph_work_counts_each_kind_of_node():
    """N=7 rows: MatMul [7,3]x[3,5] (105 MACs), Gemm with bias [7,5]x[5,4] (140 MACs, 28 adds), Tanh (28
    activations), Mul (28 mults), Reshape (free), Einsum 'ri,rj->ij' with r=4, i=7, j=6 (168 MACs)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
             for n, s in [("W1", (3, 5)), ("W2", (4, 5)), ("b2", (4,)), ("G", (4, 6)), ("shape", None)] if s]
    inits.append(numpy_helper.from_array(np.array([4, 7], np.int64), "shape"))
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h1"]),
             helper.make_node("Gemm", ["h1", "W2", "b2"], ["h2"], transB=1),
             helper.make_node("Tanh", ["h2"], ["h3"]),
             helper.make_node("Mul", ["h3", "h3"], ["h4"]),
             helper.make_node("Transpose", ["h4"], ["h5"], perm=[1, 0]),
             helper.make_node("Einsum", ["h5", "G"], ["y"], equation="ri,rj->ij")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [7, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [7, 6])], inits)
    model = helper.make_model(graph)
    shapes = {"x": (7, 3), "h1": (7, 5), "h2": (7, 4), "h3": (7, 4), "h4": (7, 4), "h5": (4, 7), "G": (4, 6),
              "y": (7, 6)}
    work = graph_work(model, shapes)
    assert (work.macs, work.adds, work.activations, work.mults) == (105 + 140 + 168, 28, 28, 28)
    only = graph_work(model, shapes, {"y"})
    assert (only.macs, only.adds) == (168, 0)


@pytest.mark.parametrize("pieces", [1, "auto"])
def test_report_energy_matches_an_independent_count(pieces):
    """ANN: MACs from the ONNX weights, tanh per unit, bias adds.  SNN: spikes from a second run of the
    artifact on the same validation points, fan-out from the next layer's weights, neuron updates from the
    artifact's live thresholds, the first layer's MACs and bias adds; one readout add per output."""
    path = FIXTURES / "torch_tanh_gemm.onnx"
    T = 16
    result = convert(path, timesteps=T, pieces=pieces, samples=512, validation_points=300,
                     finetune_iterations=20)
    report = result.report
    model = onnx.load(path)
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer if t.dims and len(t.dims) == 2]
    widths = [w.shape[0] for w in weights]                       # Gemm(transB=1): [out, in]
    ann_macs = sum(w.size for w in weights)
    hidden = widths[:-1]
    ann_pj = ann_macs * 4.6 + sum(hidden) * 4.6 + sum(widths) * 0.9
    assert report["ann_macs_per_sample"] == ann_macs
    assert report["energy"]["45nm_fp32"]["ann_pj"] == pytest.approx(ann_pj, rel=1e-9)

    from onnx2snn.importer import import_model
    imported = import_model(path)
    points = validation_inputs(imported, result.domain, 300, np.random.default_rng(0 + 1_000_003))
    run = result.network().run_with_stats(points)
    fan_out = widths[1:]                                         # layer l feeds layer l+1 (or the readout)
    names = [layer["name"] for layer in report["layers"]]
    synops = sum(run.spikes[n].events * f for n, f in zip(names, fan_out)) / 300
    live, _ = neuron_counts(result.model)
    first = weights[0].size * 4.6 + widths[0] * 0.9              # x·W1 + b1, once per point
    snn_pj = synops * 0.9 + live * T * 1.8 + first + widths[-1] * 0.9
    assert report["synops_per_sample"] == pytest.approx(synops, rel=1e-12)
    assert report["neuron_updates_per_sample"] == live * T
    assert report["first_layer_macs_per_sample"] == weights[0].size
    assert report["energy"]["45nm_fp32"]["snn_pj"] == pytest.approx(snn_pj, rel=1e-9)
    for e in report["energy"].values():
        assert e["ratio"] == pytest.approx(e["snn_pj"] / e["ann_pj"])
    synapses = sum(n * f for n, f in zip([run.spikes[n].neurons for n in names], fan_out))
    assert report["spikes_per_synapse"] == pytest.approx(synops / synapses)


def test_analog_nodes_cost_on_both_sides():
    """A hard boundary-condition network: the nodes after the readout (and the input normalisation) run
    analog in the SNN; their work is the same as in the ANN, and the breakdown shows it."""
    report = convert(FIXTURES / "torch_normalised_hardbc.onnx", samples=512, validation_points=128).report
    ops = report["analog_ops_per_sample"]
    assert ops["adds"] + ops["mults"] > 0
    breakdown = report["energy_breakdown_pj"]["45nm_fp32"]
    assert breakdown["analog"] == pytest.approx(ops["adds"] * 0.9 + ops["mults"] * 3.7 + ops["activations"] * 4.6
                                                + report["analog_macs_per_sample"] * 4.6)
    assert sum(breakdown.values()) == pytest.approx(report["energy"]["45nm_fp32"]["snn_pj"])


def test_energy_tables_extend_and_refuse_bad_files(tmp_path):
    tables = load_tables()
    assert set(tables) >= {"45nm_fp32", "45nm_int8", "loihi"}
    assert {k: tables["45nm_fp32"][k] for k in FP32} == FP32
    extra = tmp_path / "chip.json"
    extra.write_text(json.dumps({"mychip": {"mac": 1, "synop": 0.1, "neuron_update": 0.5, "activation": 1,
                                            "add": 0.1, "mult": 0.5}}))
    assert load_tables(extra)["mychip"]["synop"] == 0.1
    extra.write_text(json.dumps({"broken": {"mac": 1}}))
    with pytest.raises(ModelError, match="chip.json.*broken.*synop"):
        load_tables(extra)


def test_the_anns_price_does_not_depend_on_how_gelu_is_spelled():
    """The same network exported with GELU as Mul/Erf/Add/Mul and as one Gelu op: same ANN energy."""
    from onnx2snn.energy import ann_work
    from onnx2snn.importer import import_model
    from onnx2snn.inputs import resolve_domain
    from onnx2snn.report import tensor_shapes
    from onnx2snn.structure import analyse
    works = []
    for name in ("jax_raw_gelu", "jax_raw_gelu_opset21"):
        imported = import_model(FIXTURES / f"{name}.onnx")
        points = validation_inputs(imported, resolve_domain(imported, None), 16, np.random.default_rng(0))
        shapes, rows = tensor_shapes(imported, points)
        works.append(ann_work(imported.model, analyse(imported.model), shapes, rows))
    assert works[0] == works[1] and works[0].mults == 0


def test_a_separable_networks_neurons_serve_the_whole_grid():
    """Per-axis networks run on N_a rows each and serve Π_a N_a grid points: neuron updates per sample are
    Σ_l n_l·T·N_(axis of l) / Π N_a, counted from the artifact's live neurons per IF node."""
    path = FIXTURES / "torch_separable.onnx"
    T = 8
    result = convert(path, timesteps=T, pieces=1, samples=512, validation_points=400, finetune_iterations=20)
    report = result.report
    from onnx2snn.importer import import_model
    imported = import_model(path)
    points = validation_inputs(imported, result.domain, 400, np.random.default_rng(1_000_003))
    rows = {name: p.shape[0] for name, p in points.items()}
    grid = float(np.prod(list(rows.values())))
    assert report["validation"]["points"] == grid
    run = result.network().run_with_stats(points)
    expected = sum(c.neurons * T * c.batch for c in run.spikes.values()) / grid
    assert report["neuron_updates_per_sample"] == pytest.approx(expected)
    assert expected < sum(c.neurons * T for c in run.spikes.values()) / 10       # amortised over the grid
