"""What in a model becomes spiking and what stays analog.

A *spiking layer* is an affine layer followed by a pointwise activation whose output feeds at least one
affine layer.  The affine layers fed by a spiking layer run every time step on decoded spikes; those
that feed no further spiking layer are *readouts* (their outputs are decoded: analog readout).  Every
other node stays analog, evaluated once on decoded values, with the reason recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from .activations import Activation, find_activation
from .affine import Affine, match_affine
from .graph_index import GraphIndex

ACTIVATION_OPS = ("Tanh", "Sin", "Sigmoid", "Relu", "Softplus", "Gelu", "Erf", "Elu", "LeakyRelu")
OUTPUT_ACTIVATION = "activation not between two affine layers (evaluated on decoded values)"
READOUT_NEURONS = "/output_neurons"     # suffix of a spiking readout's output neurons (rewrite, report)


@dataclass
class SpikingLayer:
    """``affine`` produces the current z of ``activation``'s units; ``consumers`` read h(z) per step."""

    affine: Affine
    activation: Activation
    consumers: list[Affine] = field(default_factory=list)
    upstream: int | None = None     # index of the spiking layer that feeds ``affine``, if any
    read_directly: bool = False     # h(z) is also read by a non-affine node or is a graph output

    @property
    def name(self) -> str:
        return self.activation.name

    @property
    def width(self) -> int:
        return self.affine.width


@dataclass
class AnalogNode:
    name: str
    op: str
    reason: str


@dataclass
class Structure:
    layers: list[SpikingLayer]
    readouts: list[Affine]
    analog: list[AnalogNode]
    affines: list[Affine]
    contracted: set[str] = field(default_factory=set)   # readouts whose columns an Einsum contracts

    def relative_scale(self, affine: Affine, y) -> np.ndarray:
        """The scale of a readout's relative error, per column [width], from its ANN values y [N, width]:
        each column's RMS (every output field counts relative to its own size), or for a ``contracted``
        readout (the features f_r of a separable network, y = Σ_r f_r(x)·g_r(t)) the RMS over all columns,
        since a feature's error reaches the output weighted by its partner's size, not by its own."""
        squares = np.mean(np.square(y, dtype=np.float64), axis=0)
        if affine.name in self.contracted:
            squares = np.full_like(squares, squares.mean())
        return np.sqrt(squares) + 1e-12

    def upstream_of(self, affine: Affine) -> int | None:
        """Index of the spiking layer whose activation output is ``affine``'s input, if any."""
        return next((k for k, l in enumerate(self.layers) if l.activation.output == affine.input), None)


def analyse(model: onnx.ModelProto, analog_first: bool = False) -> Structure:
    """The model's spiking layers, readouts and analog nodes.  With ``analog_first``, a layer fed by no
    spiking layer (the first hidden layer under direct encoding) whose output feeds only further spiking
    layers stays analog: h(x·W + b) is computed once per point and the next layer's constant current
    h·W' + b' directly encodes it, as the network input does for the first layer (its cost: the two
    affines' MACs and one activation per unit, instead of T steps of neurons and their spikes)."""
    g = GraphIndex(model)
    affines = []
    for node in g.nodes:
        found = match_affine(node, g)
        if found is not None:
            affines.append(found)
    by_output = {a.output: a for a in affines}
    layers_by_z: dict[str, SpikingLayer] = {}
    rejected: dict[str, str] = {}
    for consumer in affines:
        if consumer.input in g.inputs or consumer.input in g.constants:
            continue
        activation, reason = find_activation(consumer.input, set(by_output), g)
        if activation is None:
            producer = g.producer.get(consumer.input)
            if producer is not None and consumer.input not in by_output:
                rejected.setdefault(producer.name, f"not a pointwise activation before '{consumer.name}': {reason}")
            continue
        layer = layers_by_z.setdefault(activation.input, SpikingLayer(by_output[activation.input], activation))
        layer.consumers.append(consumer)
    layers = sorted(layers_by_z.values(), key=lambda l: g.order[id(l.affine.nodes[0])])
    structure = Structure(layers=layers, readouts=[], analog=[], affines=affines)
    for layer in layers:
        first_nodes = {id(c.nodes[0]) for c in layer.consumers}
        layer.read_directly = layer.activation.output in g.outputs or any(
            id(n) not in first_nodes for n in g.consumers.get(layer.activation.output, []))
    kept_analog = {}
    if analog_first:
        encoded = {id(l.affine) for l in layers}
        firsts = [l for l in layers if structure.upstream_of(l.affine) is None and not l.read_directly
                  and all(id(c) in encoded for c in l.consumers)]
        for layer in firsts:
            layers.remove(layer)
            kept_analog.update({id(n): "first hidden layer computed once per point and encoded into the next "
                                "layer (--first-layer analog)" for n in layer.affine.nodes + layer.activation.nodes})
    for layer in layers:
        layer.upstream = structure.upstream_of(layer.affine)
    layer_affines = {id(l.affine) for l in layers}
    seen = set()
    for layer in layers:
        for c in layer.consumers:
            if id(c) not in layer_affines and id(c) not in seen:
                structure.readouts.append(c)
                seen.add(id(c))
    structure.contracted = {a.name for a in structure.readouts if _reaches_einsum(a.output, g)}
    spiking_nodes = {id(n) for l in layers for n in l.affine.nodes + l.activation.nodes}
    spiking_nodes |= {id(n) for a in structure.readouts for n in a.nodes}
    affine_of = {id(n): a for a in affines for n in a.nodes}
    for node in g.nodes:
        if id(node) in spiking_nodes:
            continue
        if id(node) in kept_analog:
            reason = kept_analog[id(node)]
        elif node.name in rejected:
            reason = rejected[node.name]
        elif id(node) in affine_of:
            reason = "affine layer not fed by a spiking layer and not followed by an activation"
        elif node.op_type in ACTIVATION_OPS:
            reason = OUTPUT_ACTIVATION
        else:
            reason = f"{node.op_type} is not an affine layer or a pointwise activation (evaluated on decoded values)"
        structure.analog.append(AnalogNode(node.name, node.op_type, reason))
    return structure


def _reaches_einsum(name: str, g: GraphIndex) -> bool:
    """Whether tensor ``name`` flows into an ``Einsum`` node (through any nodes)."""
    todo, seen = [name], set()
    while todo:
        for node in g.consumers.get(todo.pop(), []):
            if node.op_type == "Einsum":
                return True
            if id(node) not in seen:
                seen.add(id(node))
                todo.extend(node.output)
    return False


def hidden_layers(report: dict) -> tuple[int, int]:
    """(spiking, all) hidden layers of a conversion report: the spiking layers (its ``layers``, less a
    spiking readout's output neurons) and, besides them, each analog node that is an activation
    (``ACTIVATION_OPS``; one per layer, as GELU's Erf or swish's Sigmoid) other than one after the last
    affine layer (``OUTPUT_ACTIVATION``): a hidden layer kept analog, behind a normalisation or by
    ``--first-layer analog``."""
    spiking = sum(1 for layer in report["layers"] if not layer["name"].endswith(READOUT_NEURONS))
    analog = sum(1 for node in report["analog_nodes"]
                 if node["op"] in ACTIVATION_OPS and node["reason"] != OUTPUT_ACTIVATION)
    return spiking, spiking + analog
