"""Compute-only energy of a converted SNN and of its ANN, priced with one table for both sides.

Counting rules (``../shared/ENERGY.md`` §2), per sample (a row of a plain PINN, a grid point of a separable
one), from the tensors and spike counts of one run on fresh points:

ANN   every node of the original graph (``operations.py``): MACs of its affine layers, one activation per
      unit (``ann_work``: however the exporter spelled it), adds and mults of the other nodes.
SNN   * synaptic operations: Σ_l events_l × fan-out_l, fan-out_l = the widths of the affine layers fed by
        layer l, directly or through links (a residual sum routes an event to the synapses of both
        paths; a static gate scales it, counted within the synaptic operation), +1 when analog nodes
        read its decoded value (one accumulate per event); a phase-coded event (``runtimes.spec``)
        carries the weight 2^(1-t)·θ, a power of two times the layer's constant: its target adds that weight shifted by an exponent, counted as one accumulate too (Kim et al. 2018);
      * neuron updates: every live neuron, every step (n_l × T × its rows per sample), whether or not it
        fires;
      * static affines: a spiking layer fed by no spiking layer (the first layer under direct encoding) has
        its current z = x·W + b computed once per sample, at MAC cost (``first_layer_macs``);
      * readouts: one add per output (the bias; 1/T folds into the weights);
      * every node left analog, counted as in the ANN (``analog_macs`` and its activations, adds, mults).

    E_side = Σ_kind count_kind × e_kind,        ratio = E_SNN / E_ANN   (same table e on both sides)

Tables (``energy_models.json``, pJ per operation; a user file of the same form adds or replaces models):
``45nm_fp32`` (Horowitz 2014), ``45nm_int8`` (int8 weights, int32 accumulators on both sides), ``loihi``
(Davies et al. 2018, the ANN mapped onto the same chip as a one-step graded network).  Memory traffic is
excluded from all: every figure is "compute only".  ``spikes_per_synapse`` = synaptic operations /
synapses (Σ_l live neurons_l × fan-out_l), the memory-aware models' variable (Dampfhoffer et al. 2023).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .activations import find_activation
from .errors import ModelError
from .graph_index import GraphIndex
from .operations import Work, graph_work, node_key

TABLES_FILE = Path(__file__).with_name("energy_models.json")
DEFAULT_MODEL = "45nm_fp32"
PRICED = ("mac", "synop", "neuron_update", "activation", "add", "mult")


def load_tables(extra: str | Path | None = None) -> dict[str, dict]:
    """The cost tables by name: the shipped ones, updated by ``extra`` (a JSON file of the same form)."""
    tables = {k: v for k, v in json.loads(TABLES_FILE.read_text()).items() if not k.startswith("_")}
    if extra is not None:
        try:
            added = json.loads(Path(extra).read_text())
        except (OSError, ValueError) as e:
            raise ModelError(f"{extra}: cannot read the energy table: {e}") from None
        for name, table in added.items():
            if name.startswith("_"):
                continue
            missing = [k for k in PRICED if not isinstance(table, dict) or k not in table]
            if missing:
                raise ModelError(f"{extra}: energy model '{name}' lacks {', '.join(missing)} (pJ per operation)")
            tables[name] = table
    return tables


def energy_pj(work: Work, table: dict) -> float:
    return (work.macs * table["mac"] + work.synops * table["synop"] + work.neuron_updates * table["neuron_update"]
            + work.activations * table["activation"] + work.adds * table["add"] + work.mults * table["mult"])


@dataclass
class LayerSpikes:
    """One spiking layer's counts per sample: ``spikes``, ``updates`` (live neurons × T × the rows it ran
    on, per sample: a separable network's axis rows serve a whole grid), its ``fan_out`` and its live
    ``neurons`` (for the synapse count)."""

    name: str
    spikes: float
    updates: float
    fan_out: int
    neurons: int

    @property
    def synops(self) -> float:
        return self.spikes * self.fan_out


@dataclass
class EnergyAccount:
    """Per-sample work of both sides (module docstring) and the pieces a report shows."""

    ann: Work
    snn: Work
    first_layer: Work           # the static affines of spiking layers fed by no spiking layer
    analog: Work                # the nodes left analog
    layers: list[LayerSpikes] = field(default_factory=list)

    @property
    def first_layer_macs(self) -> float:
        return self.first_layer.macs

    @property
    def synapses(self) -> int:
        return sum(l.neurons * l.fan_out for l in self.layers)

    @property
    def spiking_mac_fraction(self) -> float:
        """The fraction of the ANN's MACs that the SNN replaced by spikes (the rest runs as MACs)."""
        return 1.0 - (self.first_layer_macs + self.analog.macs) / self.ann.macs if self.ann.macs else 0.0

    def by_model(self, tables: dict[str, dict]) -> dict[str, dict]:
        out = {}
        for name, table in tables.items():
            snn, ann = energy_pj(self.snn, table), energy_pj(self.ann, table)
            out[name] = {"snn_pj": snn, "ann_pj": ann, "ratio": snn / ann if ann else float("inf")}
        return out

    def breakdown(self, table: dict) -> dict[str, float]:
        """The SNN's energy (pJ per sample) by what it is spent on."""
        return {"synops": self.snn.synops * table["synop"],
                "neuron_updates": self.snn.neuron_updates * table["neuron_update"],
                "first_layer": energy_pj(self.first_layer, table), "analog": energy_pj(self.analog, table),
                "readout": energy_pj(self.snn, table) - energy_pj(self.first_layer + self.analog, table)
                - (self.snn.synops * table["synop"] + self.snn.neuron_updates * table["neuron_update"])}

    def report(self, tables: dict[str, dict]) -> dict:
        """The report's energy keys (CONTRACT.md)."""
        synapses = self.synapses
        return {
            "energy": self.by_model(tables),
            "energy_breakdown_pj": {name: self.breakdown(table) for name, table in tables.items()},
            "energy_models": {k: f"compute only: {t.get('source', k)}; {t.get('note', '')}".rstrip("; ")
                              for k, t in tables.items()},
            "neuron_updates_per_sample": self.snn.neuron_updates,
            "first_layer_macs_per_sample": self.first_layer_macs,
            "analog_macs_per_sample": self.analog.macs,
            "analog_ops_per_sample": {"activations": self.analog.activations, "adds": self.analog.adds,
                                      "mults": self.analog.mults},
            "spikes_per_synapse": self.snn.synops / synapses if synapses else 0.0,
            "spiking_mac_fraction": self.spiking_mac_fraction,
        }


def account(model, structure, shapes: dict[str, tuple[int, ...]], rows: float,
            layers: list[LayerSpikes], readout_outputs: float) -> EnergyAccount:
    """The per-sample account of one run.  ``model``: the ANN; the SNN's analog nodes are those of the graph
    the structure analysed (``structure.model``: the ANN, or its rewriting by ``sine_range``).  ``shapes``:
    every tensor's shape in a run of that graph on ``rows`` samples' worth of inputs
    (``operations.node_work``); ``layers``: spike counts per sample of every IF layer (hidden and spiking
    readout neurons); ``readout_outputs``: readout values per sample."""
    spiking = {node_key(n) for l in structure.layers for n in l.affine.nodes + l.activation.nodes}
    spiking |= {node_key(n) for a in structure.readouts for n in a.nodes}
    spiking |= {node_key(n) for n in structure.link_nodes}
    static = {node_key(n) for l in structure.layers if l.static for n in l.affine.nodes}
    graph = structure.model if structure.model is not None else model
    analog_keys = {node_key(n) for n in graph.graph.node} - spiking
    per_sample = 1.0 / rows
    ann = ann_work(model, structure, shapes, rows)
    analog = graph_work(graph, shapes, analog_keys).scaled(per_sample)
    first = graph_work(graph, shapes, static).scaled(per_sample)
    spikes = Work(synops=float(sum(l.synops for l in layers)),
                  neuron_updates=float(sum(l.updates for l in layers)),
                  adds=readout_outputs)
    return EnergyAccount(ann=ann, snn=analog + first + spikes, first_layer=first, analog=analog, layers=layers)


def ann_work(model, structure, shapes: dict[str, tuple[int, ...]], rows: float) -> Work:
    """The ANN's operations per sample: every node of its graph, except that the activation of a layer the
    SNN replaces counts one activation per unit however the exporter spelled it (GELU as ``Erf`` and four
    elementwise ops, swish as ``Sigmoid`` and ``Mul``), so the ANN's price does not depend on the spelling
    (``ann_activations``)."""
    replaced = ann_activations(model, structure)
    activation = {node_key(n) for nodes, _ in replaced for n in nodes}
    units = sum(float(np.prod(shapes[output])) for _, output in replaced)
    others = {node_key(n) for n in model.graph.node} - activation
    return (graph_work(model, shapes, others) + Work(activations=units)).scaled(1.0 / rows)


def ann_activations(model, structure) -> list[tuple[list, str]]:
    """(nodes, output tensor) in the ANN ``model`` of each layer of ``structure``: the layer's activation, or
    for a layer of a rewritten graph (``structure.model``: a range-reduced sine, ``sine_range``) the ANN's
    activation ending at the node of the layer's name, the nodes it replaces."""
    keys = {node_key(n) for n in model.graph.node}
    out, g = [], None
    for layer in structure.layers:
        if all(node_key(n) in keys for n in layer.activation.nodes):
            out.append((layer.activation.nodes, layer.activation.output))
            continue
        g = g or GraphIndex(model)
        node = next((n for n in g.nodes if n.name == layer.name), None)
        found = None if node is None else find_activation(node.output[0], {a.output for a in structure.affines}, g)[0]
        if found is not None:
            out.append((found.nodes, found.output))
    return out


def layer_fan_out(layer) -> int:
    """Targets of one event of a spiking layer: the widths of the affine layers it feeds, directly or
    through links (``links.py``), +1 when analog nodes read its decoded value
    (``SpikingLayer.read_directly``)."""
    return int(sum(c.width for c in layer.consumers) + (1 if layer.read_directly else 0))


def ann_budget(model, structure, shapes: dict[str, tuple[int, ...]], rows: float, tables: dict[str, dict]) -> dict:
    """What the ANN costs per sample and what that buys an SNN of one neuron per unit, before converting:
    ``work`` (the ANN's operations), ``energy_pj`` per table, ``spiking_mac_fraction`` (the share of its
    MACs in affine layers fed by spiking layers, which become synaptic operations) and, per table, the
    break-even spikes per neuron E_ANN / (e_synop · Σ_l n_l·fan-out_l): the mean spikes per inference each
    hidden neuron may send before the SNN's synaptic operations alone cost as much as the ANN."""
    work = ann_work(model, structure, shapes, rows)
    fed = {node_key(n) for l in structure.layers if not l.static for n in l.affine.nodes}
    fed |= {node_key(n) for a in structure.readouts for n in a.nodes}
    spiking_macs = graph_work(model, shapes, fed).macs / rows
    synapses = sum(l.width * layer_fan_out(l) for l in structure.layers)
    return {"work": work, "energy_pj": {k: energy_pj(work, t) for k, t in tables.items()},
            "spiking_mac_fraction": spiking_macs / work.macs if work.macs else 0.0,
            "break_even_spikes_per_neuron": {k: energy_pj(work, t) / (t["synop"] * synapses) if synapses else 0.0
                                             for k, t in tables.items()}}
