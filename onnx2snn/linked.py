"""The structure of a network whose spiking layers are joined by links (``structure``, ``links``).

1. Candidates: every affine layer followed by a pointwise activation (``activation_after``), and every
   activation node whose input is an analog node's output (an identity affine: LayerNorm → tanh).
2. Flow, in graph order: candidates' outputs are step tensors; a link op reading step tensors makes a step
   tensor (``link_op_output_is_step``); anything else reading them is analog (on decoded values).  Link
   ops that reach no affine layer through further link ops stay analog too (nothing gains from running
   them every step).
3. Demotions, until none applies: a candidate computed from static values whose output is one factor of a
   product with another step tensor is a *static gate* (``STATIC_GATE``); a candidate whose output reaches
   no affine layer through link ops is an output activation, or one behind a node that is not a link op
   (``BEHIND_ANALOG``: a product of two step tensors); with ``analog_first``, a static candidate whose
   output reaches only spiking layers is computed once per point (``True``: every affine layer fed by the
   inputs alone in the undemoted flow, so the demotion does not cascade down the chain; a dict: the layers
   it names, for the reason it gives); "only spiking layers" counts an affine whose output reaches a layer's
   input through analog nodes (a range-reduced sine's argument, ``sine_range.py``), since computed once per
   point it encodes that layer.  Each demotion changes the flow, so it is recomputed.  With
   ``static_gates=False`` (``--gates spiking``, ``gates.py``) neither the static-gate nor the
   behind-a-product demotion applies: gates spike and products of two step tensors read decoded values.
4. The layers (graph order), their input links, the readouts (affines fed by step tensors that are not a
   layer's), the step tensors analog nodes or graph outputs read (decoded), and every analog node's reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from .activations import activation_after
from .affine import Affine
from .graph_index import GraphIndex
from .links import RESHAPES, Link, link_op_output_is_step
from .structure import (ACTIVATION_OPS, FIRST_ANALOG, ONCE, OUTPUT_ACTIVATION, STATIC_GATE, SpikingLayer, Structure,
                        _reaches_einsum, first_reached, record_analog, shared_affine_output)

NOT_LINEAR = "{op} reads spiking signals but is not linear in them (evaluated on decoded values)"
UNUSED_LINK = ("{op} is linear in spiking signals but reaches no affine layer through linear operations "
               "(evaluated on decoded values)")
# a reshape (links.RESHAPES) that moves points across rows (folds the batch into the features, moves it off
# axis 0, or names the batch size): linear, but not point by point
MIXES_POINTS = ("{op} reads spiking signals but does not keep each point's values in its row (evaluated on decoded "
                "values)")
BEHIND_ANALOG = ("affine layer and activation '{activation}' whose output reaches the next affine layer only through "
                 "'{node}' ({op}), which is not linear in spiking signals (evaluated on decoded values)")
BEHIND_MIXING = ("affine layer and activation '{activation}' whose output reaches the next affine layer only through "
                 "'{node}' ({op}), which does not keep each point's values in its row (evaluated on decoded values)")


@dataclass
class _Flow:
    """Step tensors (→ the layers they carry), the useful link nodes, and the products of two step tensors."""

    step: dict[str, set[int]] = field(default_factory=dict)
    links: list[onnx.NodeProto] = field(default_factory=list)
    products: list[tuple[set[int], ...]] = field(default_factory=list)   # the layers behind each factor
    unused: set[int] = field(default_factory=set)     # ids of link ops that reach no affine layer


def analyse_linked(model: onnx.ModelProto, g: GraphIndex, affines: list[Affine],
                   analog_first: bool | dict[str, str], static_gates: bool = True) -> Structure:
    layers = _candidates(model, g, affines)
    if analog_first is True:            # the layers fed by the inputs alone, not those a demotion leaves static
        step = _flow(g, layers).step
        analog_first = {l.name: FIRST_ANALOG for l in layers if not l.identity and l.affine.input not in step}
    reasons: dict[int, str] = {}
    while True:
        flow = _flow(g, layers)
        demoted = _demotions(g, layers, flow, affines, analog_first, static_gates)
        if not demoted:
            break
        for k in sorted(demoted, reverse=True):
            for node in layers[k].affine.nodes + layers[k].activation.nodes:
                reasons[id(node)] = demoted[k]
            del layers[k]
    return _structure(g, affines, layers, flow, reasons)


def _candidates(model: onnx.ModelProto, g: GraphIndex, affines: list[Affine]) -> list[SpikingLayer]:
    affine_outputs = {a.output for a in affines}
    layers, used = [], set()
    for affine in affines:
        activation = activation_after(affine.output, affine_outputs, g)
        if activation is not None:
            layers.append(SpikingLayer(affine, activation))
            used |= {id(n) for n in activation.nodes}
    widths = None
    for node in g.nodes:
        t = node.input[0] if node.input else ""
        if node.op_type not in ACTIVATION_OPS or id(node) in used or t in affine_outputs or t not in g.producer:
            continue
        activation = activation_after(t, affine_outputs | {t}, g)
        if activation is None or id(node) not in {id(n) for n in activation.nodes}:
            continue
        widths = widths if widths is not None else _last_dims(model)
        if not widths.get(t):
            continue
        n = widths[t]
        identity = Affine(name=f"{activation.name}/identity", nodes=[], input=t, output=t,
                          weight=np.eye(n, dtype=activation.dtype), bias=np.zeros(n, activation.dtype))
        layers.append(SpikingLayer(identity, activation))
        used |= {id(n) for n in activation.nodes}
    return sorted(layers, key=lambda l: g.order[id((l.affine.nodes or l.activation.nodes)[0])])


def _last_dims(model: onnx.ModelProto) -> dict[str, int]:
    """The fixed last dimension of each tensor whose shape inference knows it."""
    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[-1].HasField("dim_value"):
            out[value.name] = dims[-1].dim_value
    return out


def _flow(g: GraphIndex, layers: list[SpikingLayer]) -> _Flow:
    """Step tensors and link ops (module docstring, 2)."""
    inside = {id(n) for l in layers for n in l.affine.nodes + l.activation.nodes}
    affine_nodes = {id(n) for l in layers for n in l.affine.nodes}
    step = {l.activation.output: {k} for k, l in enumerate(layers)}
    candidates, products = [], []
    for node in g.nodes:
        if id(node) in inside or not any(i in step for i in node.input):
            continue
        if link_op_output_is_step(node, step, g):
            candidates.append(node)
            carried = set().union(*(step[i] for i in node.input if i in step))
            step.update({o: set(carried) for o in node.output})
        elif node.op_type == "Mul" and sum(i in step for i in node.input) > 1:
            products.append(tuple(step[i] for i in node.input if i in step))
    # keep the link ops from which an affine layer's input is reached through link ops
    read_by_affine = {l.affine.input for l in layers} | {
        n.input[0] for n in g.nodes if n.op_type in ("Gemm", "MatMul") and id(n) not in affine_nodes and n.input}
    useful, producers = set(), {o: n for n in candidates for o in n.output}
    todo = [t for t in read_by_affine if t in producers]
    while todo:
        node = producers[todo.pop()]
        if id(node) not in useful:
            useful.add(id(node))
            todo.extend(i for i in node.input if i in producers)
    flow = _Flow(products=products, unused={id(n) for n in candidates if id(n) not in useful})
    flow.step = {l.activation.output: {k} for k, l in enumerate(layers)}
    for node in candidates:
        if id(node) in useful:
            flow.links.append(node)
            flow.step.update({o: step[o] for o in node.output})
    return flow


def _demotions(g: GraphIndex, layers: list[SpikingLayer], flow: _Flow, affines: list[Affine],
               analog_first: bool | dict[str, str], static_gates: bool = True) -> dict[int, str]:
    """Layers to keep analog and why (module docstring, 3); the first rule that applies wins.  Without
    ``static_gates`` neither ``STATIC_GATE`` nor ``BEHIND_ANALOG`` applies: gates spike, and a layer whose
    output reaches the next affine layer only through a product of two step tensors spikes and is decoded
    there."""
    static = {k for k, l in enumerate(layers) if l.affine.input not in flow.step}
    demoted: dict[int, str] = {}
    for operands in flow.products if static_gates else []:
        gates = [o for o in operands if o <= static]
        for gate in gates[1:] if len(gates) == len(operands) else gates:
            demoted.update({k: STATIC_GATE for k in gate})
    if demoted:
        return demoted
    reached = _reached_affines(g, layers, flow, affines)
    demoted = {k: _unreached(g, layers[k], flow, affines) for k in range(len(layers)) if not reached[k]}
    if not static_gates:
        demoted = {k: reason for k, reason in demoted.items() if reason == OUTPUT_ACTIVATION}
    if demoted or not analog_first:
        return demoted
    layer_inputs = {l.affine.input for l in layers}
    chosen = {l.name: FIRST_ANALOG for l in layers} if analog_first is True else analog_first
    return {k: chosen[layers[k].name] for k in static if layers[k].name in chosen and reached[k]
            and all(a.input in layer_inputs or _reaches(g, a.output, layer_inputs) for a in reached[k])
            and not _read_by_analog(g, layers, flow, affines, k)}


def _reaches(g: GraphIndex, name: str, targets: set[str]) -> bool:
    """Whether tensor ``name`` is, or flows (through any nodes) into, one of ``targets``."""
    todo, seen = [name], set()
    while todo:
        t = todo.pop()
        if t in targets:
            return True
        if t not in seen:
            seen.add(t)
            todo.extend(o for node in g.consumers.get(t, []) for o in node.output)
    return False


def _unreached(g: GraphIndex, layer: SpikingLayer, flow: _Flow, affines: list[Affine]) -> str:
    """Why a candidate whose output reaches no affine layer through link ops stays analog: it is an output
    activation (``OUTPUT_ACTIVATION``), or its output reaches an affine layer only through a node that is
    not a link op (a product of two spiking signals, a normalisation, ...): named in ``BEHIND_ANALOG``."""
    firsts = {id(a.nodes[0]) for a in affines if a.nodes}
    if first_reached(layer.activation.output, g, lambda node: id(node) in firsts) is None:
        return OUTPUT_ACTIVATION
    links = {id(n) for n in flow.links}
    blocker = first_reached(layer.activation.output, g, lambda node: id(node) not in links | firsts)
    behind = BEHIND_MIXING if blocker.op_type in RESHAPES else BEHIND_ANALOG
    return behind.format(activation=layer.name, node=blocker.name, op=blocker.op_type)


def _reached_affines(g: GraphIndex, layers: list[SpikingLayer], flow: _Flow,
                     affines: list[Affine]) -> list[list[Affine]]:
    """Per layer, the affines (layers' and readouts') that its output reaches directly or through links."""
    by_input: dict[str, list[Affine]] = {}
    for affine in affines + [l.affine for l in layers if l.identity]:
        by_input.setdefault(affine.input, []).append(affine)
    link_ids = {id(n) for n in flow.links}
    out = []
    for layer in layers:
        found, todo, seen = [], [layer.activation.output], set()
        while todo:
            t = todo.pop()
            if t not in seen:
                seen.add(t)
                found += [a for a in by_input.get(t, []) if all(a is not f for f in found)]
                todo += [o for n in g.consumers.get(t, []) if id(n) in link_ids for o in n.output]
        out.append(found)
    return out


def _read_by_analog(g: GraphIndex, layers: list[SpikingLayer], flow: _Flow, affines: list[Affine], k: int) -> bool:
    """Whether layer k's output is a graph output or is read by a node other than an affine or a link op."""
    t = layers[k].activation.output
    ours = {id(a.nodes[0]) for a in affines if a.input == t} | {id(n) for n in flow.links}
    return t in g.outputs or any(id(n) not in ours for n in g.consumers.get(t, []))


def _link(g: GraphIndex, layers: list[SpikingLayer], flow: _Flow, output: str) -> Link:
    """The link that computes step tensor ``output``: the link ops behind it, its source layers, its statics."""
    producers = {o: n for n in flow.links for o in n.output}
    layer_of = {l.activation.output: k for k, l in enumerate(layers)}
    nodes, todo, sources, statics = {}, [output], {}, []
    while todo:
        t = todo.pop()
        if t in layer_of:
            sources[t] = layer_of[t]
        elif t in producers and id(producers[t]) not in nodes:
            node = producers[t]
            nodes[id(node)] = node
            for i in node.input:
                if i in flow.step:
                    todo.append(i)
                elif i and i not in g.constants and i not in statics:
                    statics.append(i)
    ordered = sorted(nodes.values(), key=lambda n: g.order[id(n)])
    names = sorted(sources, key=lambda t: sources[t])
    constants = {i: g.constants[i] for n in ordered for i in n.input if i in g.constants}
    return Link(output, [sources[t] for t in names], names, ordered, statics, constants, g.opset)


def _structure(g: GraphIndex, affines: list[Affine], layers: list[SpikingLayer], flow: _Flow,
               reasons: dict[int, str]) -> Structure:
    structure = Structure(layers=layers, readouts=[], analog=[], affines=affines, link_nodes=flow.links)
    layer_affines = {id(l.affine) for l in layers}
    for layer in layers:
        if layer.affine.input in flow.step:
            layer.link = _link(g, layers, flow, layer.affine.input)
            layer.upstream = layer.link.sources[0] if layer.link.identity else None
    for affine in affines:
        if id(affine) not in layer_affines and affine.input in flow.step:
            structure.readouts.append(affine)
            structure.readout_links[affine.name] = _link(g, layers, flow, affine.input)
    reached = _reached_affines(g, layers, flow, affines)
    for k, layer in enumerate(layers):
        layer.consumers = reached[k]
        layer.read_directly = _read_by_analog(g, layers, flow, affines, k)
    structure.contracted = {a.name for a in structure.readouts if _reaches_einsum(a.output, g)}
    ours = {id(n) for l in layers for n in l.affine.nodes + l.activation.nodes} | {id(n) for n in flow.links}
    ours |= {id(n) for a in structure.readouts for n in a.nodes}
    read = {i for n in g.nodes if id(n) not in ours for i in n.input} | set(g.outputs)
    structure.decoded = [_link(g, layers, flow, t) for t in sorted(read & set(flow.step), key=_order(g, layers))]
    affine_of = {id(n) for a in affines for n in a.nodes}
    affine_outputs = {a.output for a in affines}

    def specific(node: onnx.NodeProto, on: str) -> str | None:
        if id(node) in reasons:
            return reasons[id(node)]
        if id(node) in affine_of:
            return f"affine layer on static values ({ONCE})" if on == ONCE else \
                f"affine layer on analog nodes' outputs ({on})"
        if id(node) in flow.unused:
            return UNUSED_LINK.format(op=node.op_type)
        if any(i in flow.step for i in node.input):
            return (MIXES_POINTS if node.op_type in RESHAPES else NOT_LINEAR).format(op=node.op_type)
        return shared_affine_output(node, g, affine_outputs, on)

    record_analog(structure, g, ours, specific)
    return structure


def _order(g: GraphIndex, layers: list[SpikingLayer]):
    """Sort key of a step tensor: the graph position of its producer."""
    def key(t: str) -> int:
        return g.order[id(g.producer[t])]
    return key
