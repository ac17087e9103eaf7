"""The conversion report: accuracy on fresh domain points, spikes, synaptic operations, energy.

Measures (DESIGN §5):

* relative L2 ``‖y_SNN - y_ANN‖₂ / ‖y_ANN‖₂`` over all outputs at validation points (not calibration points);
* spike rate of a layer: non-zero events / (neurons × T × rows), negative spikes included;
* spikes and synaptic operations (SOPs = Σ events × fan-out) per sample; ANN MACs per sample;
* compute-only energy of both sides under each cost table, with what the SNN spends it on (``energy.py``:
  synaptic operations, neuron updates, the first layer's MACs, nodes left analog).

Timing (``timing_s``, seconds): ``convert`` import to artifact (``calibrate`` its calibration; ``search`` the
``--target-error`` search instead), ``validate`` the report's own measurement on fresh points, ``total`` the
whole call, validation included: the time the CLI prints.

A "sample" is one point of the domain where the model is evaluated: a row of a plain PINN's output, one
grid point of a separable PINN's output.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .ann import ann_session, run_ann
from .energy import DEFAULT_MODEL, LayerSpikes, account, layer_fan_out, load_tables
from .errors import CalibrationError, ModelError, first_line
from .exact import EXACT, exact_solution
from .inputs import is_grid_model

META_PROBLEM = "onnx2snn.problem"
SHAPE_ROWS = 64       # rows of the ANN run that counts a row-wise model's operations (exact per row)


def relative_l2(y: np.ndarray, reference: np.ndarray) -> float:
    y, reference = np.asarray(y, np.float64).ravel(), np.asarray(reference, np.float64).ravel()
    norm = np.linalg.norm(reference)
    return float(np.linalg.norm(y - reference) / (norm if norm > 0 else 1.0))


def flatten_outputs(outputs: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    return np.concatenate([np.asarray(outputs[n], np.float64).ravel() for n in names])


def count_points(model, outputs: dict[str, np.ndarray]) -> int:
    """Domain points behind the first output: its size over its (fixed) feature width."""
    first = model.graph.output[0]
    dims = first.type.tensor_type.shape.dim
    array = outputs[first.name]
    features = dims[-1].dim_value if len(dims) >= 2 and dims[-1].HasField("dim_value") else 1
    return max(int(array.size // max(features, 1)), 1)


def exact_reference(imported, points: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                    names: list[str]) -> np.ndarray | None:
    """The exact solution at ``points``, flattened like ``flatten_outputs``, for a model whose metadata
    names a known problem (``onnx2snn.problem``, optionally suffixed ``_separable``) and that maps one
    input [N, d] (or, separable, d inputs [N_a, 1] spanning a grid, axes in input order) to outputs whose
    sizes add up to the solution's [N, m]; else None."""
    problem = imported.metadata.get(META_PROBLEM, "")
    problem = problem if problem in EXACT else problem.removesuffix("_separable")
    if problem not in EXACT:
        return None
    if len(points) == 1:
        x = next(iter(points.values()))
        x = x.reshape(-1, x.shape[-1])
    elif is_grid_model(imported) and all(p.size == p.shape[0] for p in points.values()):
        axes = np.meshgrid(*[p.ravel() for p in points.values()], indexing="ij")   # separable: Π_a N_a points
        x = np.stack([a.ravel() for a in axes], axis=1)
    else:
        return None
    solution = exact_solution(problem, x)
    if sum(outputs[n].size for n in names) != solution.size:
        return None
    if len(names) == 1:
        return solution.reshape(outputs[names[0]].shape).ravel()
    return np.concatenate([solution[:, k] for k in range(solution.shape[1])])


def build_report(imported, result, points: dict[str, np.ndarray], timing: dict[str, float],
                 energy_table: str | None = None) -> dict:
    """The report of a conversion ``result`` measured at ``points`` (``measure``) with the options it used;
    energy under the shipped cost tables and those of the JSON file ``energy_table``."""
    options = result.options
    pieces = {layer.name: float(np.mean(p)) for layer, p in zip(result.structure.layers, result.calibration.pieces)}
    steps = [r.quantisation_step(options.timesteps) for r in result.calibration.readouts.values()]
    measured = measure(imported, result.structure, result.network(), points, options.timesteps, pieces,
                       energy_table)
    if any(steps):
        measured["validation"]["readout_quantisation_step"] = max(steps)
    return {
        "model": imported.path.name,
        "timesteps": options.timesteps,
        "pieces": options.pieces,
        "calibration": "+".join(options.methods) or "none",
        **({"finetune_iterations": options.finetune_iterations,
            "finetune_analog_iterations": options.finetune_analog_iterations}
           if options.end_to_end else {}),
        "neuron": options.neuron,
        "readout": options.readout,
        "coding": options.coding,
        "first_layer": options.first_layer,
        "gates": options.gates,
        "rest": options.rest,
        **({"spike_penalty": options.spike_penalty} if options.spike_penalty else {}),
        # --pieces auto: the output error the kept pass measured on the calibration points (pipeline.calibrate)
        **({"calibration_output_error": result.calibration.measured_error}
           if result.calibration.measured_error is not None else {}),
        **measured,
        "timing_s": {k: round(v, 4) for k, v in timing.items()},
    }


def measure(imported, structure, network, points: dict[str, np.ndarray], timesteps: int,
            pieces: dict[str, float], energy_table: str | None = None, run=None) -> dict:
    """Run the ANN (``imported``, analysed as ``structure``: its graph or a rewriting of it,
    ``structure.model``, whose analog nodes the energy account prices) and the SNN (``network``, a
    ``runtimes.SpikingNetwork``) for ``timesteps`` steps at ``points``: the report's ``validation``
    (errors against the ANN and, where known, the exact solution), ``layers`` (one row per IF layer whose
    name is a layer of ``structure``, or a spiking readout's output neurons; ``pieces[name]`` its mean
    neurons per unit), spike totals and the energy keys (``energy.py``).  ``run``: the network's
    ``RunResult`` at these points if it has been run already (by any backend)."""
    ann = run_ann(imported.model, points, [a.input for a in structure.affines], source=imported.path)
    if run is None:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # non-finite outputs: checked below
            run = network.run_with_stats(points, timesteps=timesteps)
    names = [o.name for o in imported.model.graph.output]
    for name in names:
        y = np.asarray(run.outputs[name])
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise CalibrationError(
                f"{imported.path}: the SNN computes NaN or Inf in output '{name}' at "
                f"{int(np.count_nonzero(~np.isfinite(y)))} of {y.size} validation values where the ANN is "
                f"finite: an analog node after the spiking layers amplifies the spike-rate error (see "
                f"'onnx2snn inspect'); a larger -T or more --pieces may help")
    y_ann, y_snn = flatten_outputs(ann, names), flatten_outputs(run.outputs, names)
    samples = count_points(imported.model, ann)
    layers, spiking, counted = [], [], []

    def record(name: str, activation: str, units: int, counts, pieces_mean: float, fan_out: int) -> None:
        """One IF layer's row of the report and its counts per sample for the energy account."""
        layers.append({"name": name, "activation": activation, "neurons": units, "spiking_neurons": counts.neurons,
                       "pieces_mean": pieces_mean, "spike_rate": counts.rate,
                       "spikes_per_sample": counts.events / samples, "fan_out": fan_out,
                       "synops_per_sample": counts.events * fan_out / samples})
        updates = counts.neurons * counts.timesteps * counts.batch      # a separable axis' rows serve a grid
        spiking.append(LayerSpikes(name, counts.events / samples, updates / samples, fan_out, counts.neurons))
        counted.append(counts)

    for layer in structure.layers:
        if layer.name in run.spikes:       # absent: a first layer the artifact computes once per point
            record(layer.name, layer.activation.kind, layer.width, run.spikes[layer.name],
                   pieces.get(layer.name, 1.0), layer_fan_out(layer))
    validation = {"points": samples, "rel_l2_snn_vs_ann": relative_l2(y_snn, y_ann),
                  "max_abs_snn_vs_ann": float(np.max(np.abs(y_snn - y_ann))) if y_ann.size else 0.0}
    exact = exact_reference(imported, points, ann, names)
    if exact is not None:
        validation["rel_l2_snn_vs_exact"] = relative_l2(y_snn, exact)
        validation["rel_l2_ann_vs_exact"] = relative_l2(y_ann, exact)
    for readout in structure.readouts:
        counts = run.spikes.get(f"{readout.name}/output_neurons")
        if counts is not None:     # spiking readout: its output neurons are counted too (fan-out 1)
            record(f"{readout.name}/output_neurons", "Identity", readout.width, counts, 1.0, 1)
    events_total = sum(c.events for c in counted)
    slots_total = sum(c.neurons * c.timesteps * c.batch for c in counted)
    analysed = imported if structure.model is None else replace(imported, model=structure.model)
    shapes, rows = tensor_shapes(analysed, points)
    readout_values = sum(float(np.prod(shapes[a.output])) for a in structure.readouts) / rows
    energy = account(imported.model, structure, shapes, rows, spiking, readout_values)
    tables = load_tables(energy_table)
    by_model = energy.by_model(tables)
    return {
        "validation": validation,
        "layers": layers,
        "analog_nodes": [{"name": a.name, "op": a.op, "reason": a.reason} for a in structure.analog],
        "activations": structure.activations(),
        "spike_rate": events_total / slots_total if slots_total else 0.0,
        "spikes_per_sample": events_total / samples,
        "synops_per_sample": energy.snn.synops,
        "ann_macs_per_sample": energy.ann.macs,
        **energy.report(tables),
        "energy_pj_per_sample": {"snn_45nm": by_model[DEFAULT_MODEL]["snn_pj"],
                                 "ann_45nm": by_model[DEFAULT_MODEL]["ann_pj"]},
    }


def finish_timing(report: dict, started: float, validating_since: float) -> dict:
    """Add ``validate`` (since ``validating_since``) and ``total`` (since ``started``) to the report's
    ``timing_s`` (``time.perf_counter`` values; module docstring)."""
    now = time.perf_counter()
    report["timing_s"].update(validate=round(now - validating_since, 4), total=round(now - started, 4))
    return report


def tensor_shapes(imported, points: dict[str, np.ndarray]) -> tuple[dict[str, tuple[int, ...]], int]:
    """The shape of every tensor in an ANN run, and the samples that run covers: on the validation grid for
    a separable network, else on its first ``SHAPE_ROWS`` rows (a row-wise network's work is the same per
    row).  Values are not checked: an overflow a ``Where`` discards is no error here."""
    feeds = points if is_grid_model(imported) else {k: v[:SHAPE_ROWS] for k, v in points.items()}
    names = list(dict.fromkeys(o for n in imported.model.graph.node for o in n.output if o))
    session = ann_session(imported.model, names, source=imported.path)
    outputs = [o.name for o in session.get_outputs()]
    try:
        with np.errstate(all="ignore"):
            values = dict(zip(outputs, session.run(outputs, feeds)))
    except Exception as e:  # onnxruntime raises its own exception types
        raise ModelError(f"{imported.path}: onnxruntime cannot run the model: {first_line(e)}") from None
    shapes = {k: np.shape(v) for k, v in values.items()}
    shapes.update({k: v.shape for k, v in feeds.items()})
    return shapes, count_points(imported.model, values)
