"""Stream points through a delta-coded artifact in a chosen order, and measure what it cost per point.

``stream(network, inputs, order)`` visits the points along ``order`` (``order.path_order``: a row-wise
network's rows as points [N, Σ features]; a separable network's inputs each along their own axis),
returns the outputs in the user's order, and keeps the run's counts (``runtimes.stream.DeltaCounts``).

``stream_report`` adds the convert report's measurement (``report.measure``: errors against the ANN,
layers, spikes and synaptic operations per point) with the energy of a stream, per point, start-up
included (the first point sends every unit's whole value from r(0)), and the delta-ANN baseline:

SNN        first-layer MACs (x·W + b recomputed for every point: the input changes every point), Σ_l events_l
           × fan-out_l synaptic operations (one accumulate per binary event and target; a graded event is a
           multiply-accumulate), one neuron update (the change's subtract-and-compare) and one activation
           h(z) per unit and point, readout adds, every analog node as in the ANN;
delta ANN  the same change-only trick on a CPU (Neil et al. 2017, "Delta networks"): each unit whose value
           moved by a·θ or more sends its change once, and each target multiplies-accumulates it: Σ_l changes_l
           × fan-out_l MACs, the same compares, activations, first layer, readouts and analog nodes.

So ``energy[m]["ratio"]`` = E_SNN / E_ANN splits into E_deltaANN / E_ANN (what ordering the points buys
any hardware: algorithmic) times E_SNN / E_deltaANN (what binary events buy over multiply-accumulates:
spiking).  Both sides use the same cost table and the same thresholds, hence the same outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtimes.network import SpikingNetwork
from runtimes.numpy_ref import RunResult

from ..energy import LayerSpikes, account, energy_pj, layer_fan_out, load_tables
from ..errors import DomainError
from ..operations import Work
from ..report import measure, tensor_shapes
from .order import DEFAULT_ORDER, visiting_order


@dataclass
class Stream:
    """One streamed run: ``outputs`` in the user's order, the run in visiting order (``run``: its outputs
    and counts), the visiting ``permutations`` per input, and the ``order`` used."""

    outputs: dict[str, np.ndarray]
    run: RunResult
    permutations: dict[str, np.ndarray]
    order: str


def _grid_network(network: SpikingNetwork) -> bool:
    """Whether the network's inputs are the axes of its output grid (distinct or unnamed leading dims, as
    ``inputs.is_grid_model``)."""
    leading = [i.type.tensor_type.shape.dim[0] for i in network.inputs.values()]
    named = [d.dim_param for d in leading if d.dim_param]
    return len(leading) > 1 and len(set(named)) == len(named) and not any(d.HasField("dim_value") for d in leading)


def stream(network: SpikingNetwork, inputs: dict[str, np.ndarray] | np.ndarray, order: str = DEFAULT_ORDER,
           seed: int = 0) -> Stream:
    """Run ``inputs`` through the delta-coded ``network`` in ``order`` (module docstring)."""
    feeds = network.check_inputs(inputs)
    grid = _grid_network(network)
    permutations = visiting_order(feeds, order, seed, grid=grid)
    run = network.run_with_stats({name: a[permutations[name]] for name, a in feeds.items()})
    outputs = {}
    for name, y in run.outputs.items():
        y = np.asarray(y)
        if grid:
            outputs[name] = _unpermute_grid(y, list(permutations.values()), name)
        else:
            restored = np.empty_like(y)
            restored[next(iter(permutations.values()))] = y
            outputs[name] = restored
    return Stream(outputs=outputs, run=run, permutations=permutations, order=order)


def _unpermute_grid(y: np.ndarray, permutations: list[np.ndarray], name: str) -> np.ndarray:
    """A separable network's output on the grid of its permuted axes, back on the user's grid (output axis
    k is input k's axis)."""
    sizes = tuple(len(p) for p in permutations)
    if y.shape[:len(sizes)] != sizes:
        raise DomainError(f"output '{name}' of shape {list(y.shape)} is not the grid {list(sizes)} of the inputs' "
                          f"axes; stream it with order 'keep'")
    for axis, p in enumerate(permutations):
        restored = np.empty_like(y)
        index = [slice(None)] * y.ndim
        index[axis] = p
        restored[tuple(index)] = y
        y = restored
    return y


def stream_report(imported, structure, network: SpikingNetwork, points: dict[str, np.ndarray],
                  order: str = DEFAULT_ORDER, seed: int = 0, energy_table: str | None = None,
                  streamed: Stream | None = None) -> dict:
    """The report of streaming ``points`` through ``network`` (a delta artifact of ``imported``, analysed
    as ``structure``) in ``order``: ``report.measure``'s keys with the stream's energy (module docstring),
    ``delta_ann`` (its energy and ratio per cost table), ``order`` and ``startup`` (the first point's
    spikes).  ``streamed``: the ``stream`` of these points, if run already."""
    streamed = streamed or stream(network, points, order, seed)
    visited = {name: a[streamed.permutations[name]] for name, a in network.check_inputs(points).items()}
    measured = measure(imported, structure, network, visited, 1, {}, energy_table, run=streamed.run)
    samples = measured["validation"]["points"]
    tables = load_tables(energy_table)
    snn, delta_ann = stream_energy(imported, structure, streamed.run, visited, samples)
    measured.update(snn.report(tables))
    measured["synops_per_sample"] = snn.snn.synops
    by_table = snn.by_model(tables)
    measured["energy_pj_per_sample"] = {"snn_45nm": by_table["45nm_fp32"]["snn_pj"],
                                        "ann_45nm": by_table["45nm_fp32"]["ann_pj"]}
    measured["delta_ann"] = {
        "macs_per_sample": delta_ann.macs,
        "energy": {name: {"pj": energy_pj(delta_ann, t), "ratio": energy_pj(delta_ann, t) / by_table[name]["ann_pj"]}
                   for name, t in tables.items()}}
    counts = streamed.run.spikes.values()
    measured["order"] = streamed.order
    measured["startup"] = {"spikes_first_point": int(sum(c.per_row[0] for c in counts if len(c.per_row))),
                           "spikes_per_later_point": float(np.mean(np.sum([c.per_row[1:] for c in counts], axis=0)))
                           if samples > 1 else 0.0}
    return measured


def stream_energy(imported, structure, run: RunResult, points: dict[str, np.ndarray], samples: int):
    """(``energy.EnergyAccount`` of the stream, the delta ANN's ``Work``), per point (module docstring)."""
    layers, changes = [], 0.0
    for layer in structure.layers:
        counts = run.spikes.get(layer.name)
        if counts is None:
            continue
        fan_out = layer_fan_out(layer)
        layers.append(LayerSpikes(layer.name, counts.events / samples, counts.neurons * counts.batch / samples,
                                  fan_out, counts.neurons))
        changes += counts.changes * fan_out / samples
    graded = [l for l, c in zip(layers, (run.spikes[l.name] for l in layers)) if c.graded]
    shapes, rows = tensor_shapes(imported, points)
    readout_values = sum(float(np.prod(shapes[a.output])) for a in structure.readouts) / rows
    energy = account(imported.model, structure, shapes, rows, layers, readout_values)
    units = Work(activations=sum(l.updates for l in layers))      # h(z) of every unit at every point
    graded_macs = sum(l.synops for l in graded)                   # a graded event multiplies its payload
    graded_work = Work(macs=graded_macs, synops=-graded_macs)
    energy.analog = energy.analog + units
    energy.snn = energy.snn + units + graded_work
    delta_ann = energy.snn + Work(synops=-(energy.snn.synops), macs=changes - graded_macs)
    return energy, delta_ann


def summary_lines(report: dict) -> list[str]:
    """What a stream report adds, as text: the order, the start-up and the delta-ANN baseline per table."""
    startup = report["startup"]
    lines = [f"streamed in {report['order']} order: {startup['spikes_first_point']:,} spikes at the first point "
             f"(start-up, included above), {startup['spikes_per_later_point']:.1f} per later point"]
    for name, e in report["delta_ann"]["energy"].items():
        snn = report["energy"][name]
        lines.append(f"  {name:<10} delta ANN (changes only, MACs) {e['ratio']:7.3f}x the ANN; the SNN "
                     f"{snn['snn_pj'] / e['pj'] if e['pj'] else float('inf'):.3f}x the delta ANN")
    return lines


def artifact_report(path, network: SpikingNetwork, inputs: dict[str, np.ndarray], streamed: Stream,
                    ann=None, energy_table: str | None = None) -> dict:
    """``stream_report`` of a run of the delta artifact at ``path`` on ``inputs``, against its ANN (``ann``,
    else its source beside it: ``evaluate.find_ann``), with ``model``, ``ann`` and ``coding`` named."""
    from pathlib import Path
    from ..evaluate import find_ann
    from ..importer import import_model
    from ..structure import analyse
    imported = import_model(find_ann(network.model, Path(path), ann))
    report = stream_report(imported, analyse(imported.model), network, inputs, streamed.order,
                           energy_table=energy_table, streamed=streamed)
    return {"model": Path(path).name, "ann": imported.path.name, "coding": "delta", "timesteps": 1, **report}
