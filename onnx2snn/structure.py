"""What in a model becomes spiking and what stays analog.

A *spiking layer* is a pointwise activation h whose output reaches at least one affine layer, fed by an
affine layer (z = x·W + b) or, where an analog node produces its input (a LayerNorm, a product), by that
node's output itself (an identity affine: the activation is encoded directly, as the first layer is).  Its
output reaches affine layers directly or through *links* (``links.py``: sums with other spiking layers'
outputs or static tensors, products with static gates, Concat, Slice), which run every step.  A layer whose
input depends on no spiking layer is *static* (direct encoding: the same current every step); otherwise its
input is a link of earlier layers.  The affine layers fed by spiking layers that feed no further spiking
layer are *readouts* (analog readout).  Every other node stays analog, evaluated once on decoded values,
with the reason recorded.

A layer computed only from the inputs whose output multiplies a spiking signal (the modified MLP's gates U,
V) is kept analog, computed once per point: spiking it would need a Decode before the product (a product of
two time-varying signals does not commute with the time average), adding spikes for no accuracy (modified MLP
fixture, T = 32: 3.8e-3 at 34.6x the ANN's energy against 3.6e-3 at 28.0x, ``benchmarks/results/architectures.md``).
``analyse(static_gates=False)`` spikes the gates too (each product then reads decoded values, the layer
after it directly encoded); ``--gates auto`` converts both and keeps one by accuracy and energy (``gates.py``).
``analyse(links=False)`` is the plain-chain analysis (each layer fed by one layer, nothing between); the
conversions use the linked one (the end-to-end fits read inputs through links: ``calibration/wiring.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from .activations import ELEMENTWISE, Activation, activation_after, find_activation
from .affine import Affine, match_affine
from .graph_index import GraphIndex
from .links import Link

ACTIVATION_OPS = ("Tanh", "Sin", "Sigmoid", "Relu", "Softplus", "Gelu", "Erf", "Elu", "LeakyRelu")
ON_DECODED = "evaluated on decoded values"     # what an analog node is computed from (record_analog)
ONCE = "computed once per point"
NOT_BETWEEN = "activation not between two affine layers"
OUTPUT_ACTIVATION = f"{NOT_BETWEEN} ({ON_DECODED})"
STATIC_GATE = ("gate computed once per point: its input is static and it multiplies a spiking signal (spiking it "
               "would need a Decode before the product)")
FIRST_ANALOG = "first hidden layer computed once per point and encoded into the next layer (--first-layer analog)"
RANGE_REDUCTION = ("range reduction of a static sine's argument, computed once per point: the spiking layer "
                   "sees one monotone branch (sine_range.py)")
NOT_PLAIN = ("affine layer and activation '{activation}' whose output reaches the next affine layer through "
             "'{between}' ({op}): the end-to-end fits and the phase code convert plain chains only (each layer "
             "fed directly by one layer)")
READOUT_NEURONS = "/output_neurons"     # suffix of a spiking readout's output neurons (rewrite, report)


@dataclass
class SpikingLayer:
    """``affine`` produces the current z of ``activation``'s units; ``consumers`` read h(z) per step."""

    affine: Affine
    activation: Activation
    consumers: list[Affine] = field(default_factory=list)
    upstream: int | None = None     # index of the spiking layer that feeds ``affine`` directly, if any
    read_directly: bool = False     # h(z) is also read by a non-affine node or is a graph output
    link: Link | None = None        # how ``affine``'s input is computed from earlier layers (None: static)

    @property
    def static(self) -> bool:
        """Whether the layer's input depends on no spiking layer (direct encoding)."""
        return self.link is None

    @property
    def identity(self) -> bool:
        """Whether the activation reads an analog node's output itself (no affine nodes: W = I, b = 0)."""
        return not self.affine.nodes

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
    readout_links: dict[str, Link] = field(default_factory=dict)   # by readout name: how its input is made
    decoded: list[Link] = field(default_factory=list)    # step tensors that analog nodes or outputs read
    link_nodes: list[onnx.NodeProto] = field(default_factory=list)  # the link ops, run every step
    model: onnx.ModelProto | None = None                 # the model analysed

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

    def input_link(self, affine: Affine) -> Link:
        """How readout ``affine``'s input is computed from the spiking layers."""
        if affine.name in self.readout_links:
            return self.readout_links[affine.name]
        k = self.upstream_of(affine)
        return Link(affine.input, [k], [affine.input])

    def activations(self) -> list[dict]:
        """Per activation of the model, in graph order when known: its ``name``, ``op`` (the activation's
        kind), whether it ``spikes``, and for one that does not the ``reason`` (activation nodes kept analog:
        ``ACTIVATION_OPS``)."""
        rows = [{"name": l.name, "op": l.activation.kind, "spikes": True, "reason": ""} for l in self.layers]
        rows += [{"name": a.name, "op": a.op, "spikes": False, "reason": a.reason} for a in self.analog
                 if a.op in ACTIVATION_OPS]
        return rows

    @property
    def plain(self) -> bool:
        """Every layer and readout fed directly by one layer or by static values, nothing analog in between."""
        return all(l.link is None or l.link.identity for l in self.layers) and not any(
            l.identity for l in self.layers) and all(link.identity for link in self.readout_links.values())


def analyse(model: onnx.ModelProto, analog_first: bool | dict[str, str] = False, links: bool = True,
            static_gates: bool = True) -> Structure:
    """The model's spiking layers, readouts and analog nodes (module docstring); ``links=False``: the
    plain-chain analysis.  With ``analog_first``, a layer fed by no spiking layer (the first hidden layer
    under direct encoding) whose output feeds only further spiking layers stays analog: h(x·W + b) is
    computed once per point and the next layer's constant current h·W' + b' directly encodes it, as the
    network input does for the first layer (its cost: the two affines' MACs and one activation per unit,
    instead of T steps of neurons and their spikes); a dict {layer name: reason} (links only) does so for
    the static layers it names."""
    g = GraphIndex(model)
    affines = []
    for node in g.nodes:
        found = match_affine(node, g)
        if found is not None:
            affines.append(found)
    if links:
        from .linked import analyse_linked
        structure = analyse_linked(model, g, affines, analog_first, static_gates)
        structure.model = model
        return structure
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
    structure = Structure(layers=layers, readouts=[], analog=[], affines=affines, model=model)
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
            kept_analog.update({id(n): FIRST_ANALOG for n in layer.affine.nodes + layer.activation.nodes})
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
    structure.decoded = [Link(l.activation.output, [k], [l.activation.output]) for k, l in enumerate(layers)
                         if l.read_directly]
    for k, layer in enumerate(layers):
        if layer.upstream is not None:
            layer.link = Link(layer.affine.input, [layer.upstream], [layer.affine.input])
    spiking_nodes = {id(n) for l in layers for n in l.affine.nodes + l.activation.nodes}
    spiking_nodes |= {id(n) for a in structure.readouts for n in a.nodes}
    affine_of = {id(n): a for a in affines for n in a.nodes}

    beside_chain = _beside_chain(g, affines, layer_affines)

    def specific(node: onnx.NodeProto, on: str) -> str | None:
        if id(node) in kept_analog:
            return kept_analog[id(node)]
        if node.name in rejected:
            return rejected[node.name]
        if id(node) in beside_chain:
            return beside_chain[id(node)]
        if id(node) in affine_of:
            readers = len(g.consumers.get(affine_of[id(node)].output, []))
            return f"affine layer whose output feeds {readers} nodes, not one activation ({on})" if readers > 1 else \
                f"affine layer not fed directly by a spiking layer and not followed by an activation ({on})"
        return shared_affine_output(node, g, {a.output for a in affines}, on)

    record_analog(structure, g, spiking_nodes, specific)
    return structure


def record_analog(structure: Structure, g: GraphIndex, converted: set[int], specific) -> None:
    """Every node not in ``converted`` (ids) is analog: with ``specific(node, on)``'s reason if it gives
    one, else that of an activation after the last affine layer, else that of any other op.  ``on`` says
    what the node is computed from: ``ON_DECODED`` where one of its inputs depends on a converted node (it
    waits for the decoded spikes), else ``ONCE`` (static: inputs and constants only)."""
    converted_outputs = {o for n in g.nodes if id(n) in converted for o in n.output}
    dynamic = set(converted_outputs)
    for node in g.nodes:                # topological order (canonical model)
        if id(node) not in converted and any(i in dynamic for i in node.input):
            dynamic.update(node.output)
    for node in g.nodes:
        if id(node) in converted:
            continue
        on = ON_DECODED if any(i in dynamic for i in node.input) else ONCE
        reason = specific(node, on)
        if reason is None and node.doc_string == RANGE_REDUCTION:
            reason = RANGE_REDUCTION
        if reason is None:
            reason = f"{NOT_BETWEEN} ({on})" if node.op_type in ACTIVATION_OPS else \
                f"{node.op_type} is not an affine layer or a pointwise activation ({on})"
        structure.analog.append(AnalogNode(node.name, node.op_type, reason))


def shared_affine_output(node: onnx.NodeProto, g: GraphIndex, affine_outputs: set[str], on: str) -> str | None:
    """The reason of an elementwise ``node`` reading an affine layer's output that other nodes read too
    (Fourier features sin(x·B), cos(x·B)), or None."""
    shared = node.input[0] if node.input and node.input[0] in affine_outputs else None
    others = [n.name for n in g.consumers.get(shared, []) if n is not node]
    if node.op_type in ELEMENTWISE and others:
        return f"its affine layer's output also feeds '{others[0]}', so it is not one pointwise activation ({on})"
    return None


def first_reached(name: str, g: GraphIndex, wanted) -> onnx.NodeProto | None:
    """The first node (breadth first) that reads tensor ``name``, or reads what it flows into through any
    nodes, and for which ``wanted(node)`` holds; None if none does."""
    todo, seen = [name], set()
    while todo:
        for node in g.consumers.get(todo.pop(0), []):
            if wanted(node):
                return node
            if id(node) not in seen:
                seen.add(id(node))
                todo.extend(node.output)
    return None


def _reaches_einsum(name: str, g: GraphIndex) -> bool:
    """Whether tensor ``name`` flows into an ``Einsum`` node (through any nodes)."""
    return first_reached(name, g, lambda node: node.op_type == "Einsum") is not None


def _beside_chain(g: GraphIndex, affines: list[Affine], layer_affines: set[int]) -> dict[int, str]:
    """The plain-chain analysis' reasons for an affine layer followed by an activation that is not a layer:
    by node id, ``NOT_PLAIN`` for the affine's and the activation's nodes when the activation's output
    reaches an affine layer through other nodes (a residual sum, a gate, ...); none for a layer that feeds
    affine layers only directly (kept analog by ``analog_first``, which says so)."""
    firsts = {id(a.nodes[0]) for a in affines}
    outputs = {a.output for a in affines}
    reasons = {}
    for affine in affines:
        activation = None if id(affine) in layer_affines else activation_after(affine.output, outputs, g)
        if activation is None:
            continue
        between = next((n for n in g.consumers.get(activation.output, []) if id(n) not in firsts), None)
        if between is not None and first_reached(activation.output, g, lambda node: id(node) in firsts) is not None:
            reason = NOT_PLAIN.format(activation=activation.name, between=between.name, op=between.op_type)
            reasons.update({id(n): reason for n in affine.nodes + activation.nodes})
    return reasons


def hidden_layers(report: dict) -> tuple[int, int]:
    """(spiking, all) hidden layers of a conversion report: the spiking layers (its ``layers``, less a
    spiking readout's output neurons) and, besides them, each analog node that is an activation
    (``ACTIVATION_OPS``; one per layer, as GELU's Erf or swish's Sigmoid) other than one after the last
    affine layer (``OUTPUT_ACTIVATION``): a hidden layer kept analog, behind a normalisation or by
    ``--first-layer analog``."""
    spiking = sum(1 for layer in report["layers"] if not layer["name"].endswith(READOUT_NEURONS))
    analog = sum(1 for node in report["analog_nodes"]
                 if node["op"] in ACTIVATION_OPS and not node["reason"].startswith(NOT_BETWEEN))
    return spiking, spiking + analog
