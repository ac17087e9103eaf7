"""Measure an existing spiking artifact against its ANN: error (and against the exact solution where the
model names its problem), spikes, synaptic operations and energy, at one or several T.

The ANN is the file given, else the artifact's source (metadata ``onnx2snn.source``) beside the artifact.
The ANN is analysed as the converter analysed it (``structure.analyse``, with the first hidden layer analog
when the artifact has no IF layer of that name, as ``--first-layer analog`` writes it), so the report's
energy account is the convert report's (``report.measure``).  Points: ``inputs`` if given, else
``points`` fresh uniform points of the artifact's domain (seeded).  Running an artifact at another T than
it was calibrated for is what the SNN does when run longer or shorter; it is not a new conversion.

The report (``Evaluation.report``) is the convert report's measurement at the first T of ``timesteps``
(the artifact's own T when it is among them), plus ``sweep``: one row per T with its errors, spikes and
energy ratios, plus ``neuron_spikes``: per IF layer, the spikes per sample of every live neuron on the
first ``NEURON_POINTS`` points (the reference runtime, unfused).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path

import numpy as np
import onnx

from runtimes import spec
from runtimes.loading import load_onnx
from runtimes.network import SpikingNetwork, if_layers, metadata
from runtimes.stream import is_delta

from .domain import Domain, parse_domain
from .errors import DomainError, ModelError
from .importer import ImportedModel, import_model
from .inputs import check_arrays, is_grid_model, load_arrays, validation_inputs
from .progress import Progress, silent
from .report import measure
from .sine_range import reduce_sines, sines_reduced_in
from .structure import Structure, analyse

NEURON_POINTS = 256


@dataclass
class Evaluation:
    """An artifact measured against its ANN (module docstring)."""

    report: dict
    network: SpikingNetwork
    imported: ImportedModel
    structure: Structure
    domain: Domain | None
    points: dict[str, np.ndarray] = dataclass_field(default_factory=dict)


def find_ann(artifact: onnx.ModelProto, path: Path | None, ann: str | os.PathLike | None) -> Path:
    """The ANN of ``artifact`` (read from ``path``): ``ann`` if given, else its source beside it."""
    if ann is not None:
        if not Path(ann).is_file():
            raise ModelError(f"{ann}: no such file (the ANN to compare against)")
        return Path(ann)
    source = metadata(artifact).get(spec.META_SOURCE)
    if path is not None and source and (path.parent / source).is_file():
        return path.parent / source
    where = f"'{source}' is not beside {path}" if source else "the artifact does not name its source"
    raise ModelError(f"{path or 'the artifact'}: no ANN to compare against ({where}); give --ann MODEL.onnx")


def evaluate(artifact: str | os.PathLike | onnx.ModelProto, ann: str | os.PathLike | None = None,
             timesteps: list[int] | None = None, points: int = 2048,
             inputs: dict[str, np.ndarray] | np.ndarray | str | None = None, seed: int = 0,
             energy_table: str | None = None, progress: Progress | None = None, run=None) -> Evaluation:
    """Measure ``artifact`` (a path or an in-memory artifact, then with ``ann`` given) against its ANN at
    each of ``timesteps`` (default: the artifact's T); see the module docstring.  ``progress``:
    ``onnx2snn.progress``; ``run``: the artifact's ``RunResult`` at ``inputs`` for the first T, if it was
    run already (``onnx2snn run``)."""
    say = progress or silent
    path = None if isinstance(artifact, onnx.ModelProto) else Path(artifact)
    model = artifact if path is None else load_onnx(path, ModelError)
    if not any(node.domain == spec.DOMAIN for node in model.graph.node):
        raise ModelError(f"{path}: not a spiking artifact (no onnx2snn.IF node); convert it first")
    if is_delta(model):
        raise ModelError(f"{path}: a delta-coded artifact is measured on a stream of points: use "
                         f"'onnx2snn run --report-json' (onnx2snn.delta.stream)")
    network = SpikingNetwork(model, source=str(path or "artifact"))
    imported = import_model(find_ann(model, path, ann))
    _check_matches(network, imported, path)
    names = {layer["name"] for layer in if_layers(model)}
    reduced = sines_reduced_in(model, imported.model)      # the graph the conversion analysed (sine_range.py)
    graph = reduce_sines(imported.model, reduced, imported.dtype) if reduced else imported.model
    structure = analyse(graph)
    if structure.layers and structure.layers[0].name not in names:
        structure = analyse(graph, analog_first=True)
    box = _domain(network, path)
    if inputs is not None:
        if isinstance(inputs, (str, os.PathLike)):
            inputs = load_arrays(Path(inputs), list(imported.input_shapes))
        if not isinstance(inputs, dict):
            inputs = {next(iter(imported.input_shapes)): inputs}
        feeds = check_arrays(imported, inputs, "evaluation inputs")
    elif box is None:
        raise DomainError(f"{path}: no '{spec.META_DOMAIN}' metadata to sample points from; give --input X.npy")
    else:
        feeds = validation_inputs(imported, box, points, np.random.default_rng(seed + 2_000_003))
    pieces = {layer["name"]: layer["neurons"] / max(layer["units"], 1) for layer in if_layers(model)}
    steps = list(dict.fromkeys(timesteps or [network.timesteps]))
    sweep, first = [], None
    for k, T in enumerate(steps):
        say("evaluating", k, len(steps), f"T={T}")
        measured = measure(imported, structure, network, feeds, T, pieces, energy_table, run if k == 0 else None)
        first = first or measured
        sweep.append(_sweep_row(T, measured))
    say("evaluating", len(steps), len(steps), "spikes per neuron")
    report = {"model": str(path.name) if path else "artifact", "ann": imported.path.name, "timesteps": steps[0],
              "calibrated_timesteps": network.timesteps,
              "coding": "+".join(sorted({layer["coding"] for layer in if_layers(model)})), **first, "sweep": sweep,
              "neuron_spikes": neuron_spikes(network, feeds, steps[0], is_grid_model(imported))}
    return Evaluation(report=report, network=network, imported=imported, structure=structure, domain=box,
                      points=feeds)


def neuron_spikes(network: SpikingNetwork, feeds: dict[str, np.ndarray], timesteps: int,
                  grid: bool) -> dict[str, list[float]]:
    """Per IF layer, the spikes per sample of each live neuron (4 significant digits) on the first
    ``NEURON_POINTS`` rows, or for a separable (``grid``) network on its whole grid."""
    rows = feeds if grid else {name: a[:NEURON_POINTS] for name, a in feeds.items()}
    run = network.run_with_stats(rows, timesteps=timesteps, per_neuron=True)
    samples = int(np.prod([a.shape[0] for a in rows.values()])) if grid else next(iter(rows.values())).shape[0]
    return {name: [float(f"{x:.4g}") for x in np.asarray(c.per_neuron, np.float64) / max(samples, 1)]
            for name, c in run.spikes.items() if c.per_neuron is not None}


def _sweep_row(T: int, measured: dict) -> dict:
    v = measured["validation"]
    return {"timesteps": T, **{k: v[k] for k in ("rel_l2_snn_vs_ann", "rel_l2_snn_vs_exact", "rel_l2_ann_vs_exact")
                               if k in v},
            "spikes_per_sample": measured["spikes_per_sample"], "synops_per_sample": measured["synops_per_sample"],
            "neuron_updates_per_sample": measured["neuron_updates_per_sample"],
            "energy_ratio": {name: e["ratio"] for name, e in measured["energy"].items()}}


def _check_matches(network: SpikingNetwork, imported: ImportedModel, path: Path | None) -> None:
    ann_inputs, ann_outputs = set(imported.input_shapes), {o.name for o in imported.model.graph.output}
    if set(network.inputs) != ann_inputs or set(network.output_names) != ann_outputs:
        raise ModelError(f"{path or 'the artifact'}: inputs {sorted(network.inputs)} and outputs "
                         f"{sorted(network.output_names)} differ from {imported.path}'s {sorted(ann_inputs)} and "
                         f"{sorted(ann_outputs)}: not the network it was converted from")


def _domain(network: SpikingNetwork, path: Path | None) -> Domain | None:
    text = network.metadata.get(spec.META_DOMAIN)
    if text is None:
        return None
    try:
        return parse_domain(text)
    except DomainError as e:
        raise DomainError(f"{path}: metadata '{spec.META_DOMAIN}': {e}") from None
