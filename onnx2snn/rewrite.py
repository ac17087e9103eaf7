"""Write the spiking artifact: the canonical model with every spiking layer replaced (``runtimes.spec``).

Per spiking layer::

    x ─MatMul(W)─Add(b)─▶ z ─IF(v0, β, θ+, θ-)─▶ s ─Mul(w)─ReduceSum(-1)─Add(c)─▶ h

(a phase-coded layer's ``h`` through a ``Decode``: the next layer reads its decoded value, ``spec``; a
layer on an analog node's output has no affine: ``x ─IF─▶ ...``); per readout ``x ─MatMul(W)─Add(b)─▶ y``.
The link ops between layers (``links.py``) stay as they are and run every step.  Then a ``Decode`` is
inserted wherever a step tensor reaches an analog node, a graph output or a static layer's affine, so those
see decoded values and the graph's names are unchanged.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from runtimes import spec
from runtimes.neuron import NeuronParams

from .calibration import Calibration
from .structure import Structure

STEP_SUFFIX = "/step"


def build_artifact(model: onnx.ModelProto, structure: Structure, calibration: Calibration,
                   metadata: dict[str, str]) -> onnx.ModelProto:
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    removed = {id(n) for l in structure.layers for n in l.affine.nodes + l.activation.nodes}
    removed |= {id(n) for a in structure.readouts for n in a.nodes}
    emitted: list[onnx.NodeProto] = []
    entries: set[int] = set()       # the first node of each static layer's affine: it reads decoded values
    inits: list[onnx.TensorProto] = []
    axes_name = "onnx2snn/axes_last"
    if opset >= 13:
        inits.append(numpy_helper.from_array(np.array([-1], np.int64), axes_name))

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def affine(prefix: str, x: str, out: str, weight: np.ndarray, bias: np.ndarray) -> None:
        emitted.append(helper.make_node("MatMul", [x, const(f"{prefix}/W", weight)], [f"{prefix}/xW"],
                                        name=f"{prefix}/MatMul"))
        emitted.append(helper.make_node("Add", [f"{prefix}/xW", const(f"{prefix}/b", bias)], [out],
                                        name=f"{prefix}/Add"))

    def neurons(name: str, current: str, out: str, p, decode_weight: np.ndarray, decode_offset: np.ndarray) -> None:
        phase = p.coding == spec.CODING_PHASE        # decoded at once: the next layer reads a static value
        emitted.extend(if_layer_nodes(name, current, out + STEP_SUFFIX if phase else out, p, decode_weight,
                                      decode_offset, const, axes_name if opset >= 13 else None))
        if phase:
            emitted.append(helper.make_node(spec.DECODE_OP, [out + STEP_SUFFIX], [out], name=f"{out}/decode",
                                            domain=spec.DOMAIN))

    for layer, params in zip(structure.layers, calibration.layers):
        if not layer.identity:      # an identity layer's neurons read the analog node's output itself
            affine(layer.affine.name, layer.affine.input, layer.activation.input, params.weight, params.bias)
            if layer.static:
                entries.add(id(emitted[-2]))
        neurons(layer.name, layer.activation.input, layer.activation.output, params.neurons,
                params.decode_weight, params.decode_offset)
    for readout in structure.readouts:
        fitted = calibration.readouts[readout.name]
        if fitted.neurons is None:
            affine(readout.name, readout.input, readout.output, fitted.weight, fitted.bias)
        else:   # spiking readout: one signed output neuron per output
            current = f"{readout.name}/current"
            affine(readout.name, readout.input, current, fitted.weight, fitted.bias)
            width = fitted.weight.shape[1]
            neurons(f"{readout.name}/output_neurons", current, readout.output, fitted.neurons,
                    np.ones((width, 1), fitted.weight.dtype), np.zeros(width, fitted.weight.dtype))

    links = {id(n) for n in structure.link_nodes}
    kept, link_copies = [], set()
    for node in graph.node:
        if id(node) in links:           # renamed below where a Decode follows: a copy, not the model's node
            node = _copy(node)
            link_copies.add(id(node))
        if id(node) not in removed:
            kept.append(node)
    nodes = _insert_decodes(kept, emitted, [o.name for o in graph.output], link_copies, entries)
    used = {i for n in nodes for i in n.input}
    initializers = [t for t in graph.initializer if t.name in used] + [t for t in inits if t.name in used]
    new_graph = helper.make_graph(_toposort(nodes, [i.name for i in graph.input] + [t.name for t in initializers]),
                                  graph.name or "snn", list(graph.input), list(graph.output), initializers)
    opsets = [o for o in model.opset_import if o.domain != spec.DOMAIN]
    opsets.append(helper.make_opsetid(spec.DOMAIN, spec.DOMAIN_VERSION))
    out = helper.make_model(new_graph, opset_imports=opsets, producer_name="onnx2snn")
    out.ir_version = spec.IR_VERSION if opset <= 21 else model.ir_version
    for key, value in {**{p.key: p.value for p in model.metadata_props}, **metadata}.items():
        out.metadata_props.add(key=key, value=value)
    return out


def if_layer_nodes(name: str, current: str, out: str, p: NeuronParams, decode_weight: np.ndarray,
                   decode_offset: np.ndarray, const: Callable[[str, np.ndarray], str],
                   axes: str | None) -> list[onnx.NodeProto]:
    """One spiking layer's nodes ``IF(v0, β, θ+, θ-) → Mul(w) → ReduceSum(-1) → Add(c)`` from ``current`` to
    ``out``, the IF node named ``name`` (spike counts are reported so) and its constants registered by
    ``const(name, value) -> name``; ``axes``: the initializer holding [-1] (opset >= 13), or None for the
    attribute form.  No ``leak`` attribute when λ = 1, no ``coding`` for the rate code."""
    leak = {} if p.leak == 1 else {spec.IF_LEAK: float(p.leak)}
    if p.coding != spec.CODING_RATE:
        leak[spec.IF_CODING] = p.coding
    reduce_axes = {} if axes is not None else {"axes": [-1]}
    return [
        helper.make_node(spec.IF_OP, [current, const(f"{name}/v0", p.v0), const(f"{name}/bias", p.bias),
                                      const(f"{name}/theta_pos", p.theta_pos), const(f"{name}/theta_neg", p.theta_neg)],
                         [f"{name}/spikes", f"{name}/membrane"], name=name, domain=spec.DOMAIN,
                         signed=int(p.signed), fire_fraction=float(p.fire_fraction), **leak),
        helper.make_node("Mul", [f"{name}/spikes", const(f"{name}/decode_w", decode_weight)],
                         [f"{name}/weighted"], name=f"{name}/decode_mul"),
        helper.make_node("ReduceSum", [f"{name}/weighted"] + ([axes] if axes is not None else []),
                         [f"{name}/summed"], name=f"{name}/decode_sum", keepdims=0, **reduce_axes),
        helper.make_node("Add", [f"{name}/summed", const(f"{name}/decode_c", decode_offset)], [out],
                         name=f"{name}/decode_add"),
    ]


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


def _insert_decodes(kept: list[onnx.NodeProto], emitted: list[onnx.NodeProto], graph_outputs: list[str],
                    links: set[int], entries: set[int]) -> list[onnx.NodeProto]:
    """Decode each step tensor read by an analog node, a graph output or a static layer's affine
    (``entries``), keeping its name for them; ``links``: the ids of the kept nodes that are link ops (run
    every step, never decoded before)."""
    stepping = emitted + [n for n in kept if id(n) in links]
    step: set[str] = set()
    for node in _toposort(stepping, None):     # only these run per step; a Decode ends them
        if node.domain == spec.DOMAIN and node.op_type == spec.DECODE_OP:
            continue
        if node.domain == spec.DOMAIN or (id(node) not in entries and any(i in step for i in node.input)):
            step.update(node.output)
    analog_reads = {i for n in kept if id(n) not in links for i in n.input} | set(graph_outputs)
    analog_reads |= {i for n in emitted if id(n) in entries for i in n.input}
    decoded = sorted(step & analog_reads)
    rename = {t: t + STEP_SUFFIX for t in decoded}
    for node in stepping:
        if id(node) not in entries:
            node.input[:] = [rename.get(i, i) for i in node.input]
        node.output[:] = [rename.get(o, o) for o in node.output]
    decodes = [helper.make_node(spec.DECODE_OP, [rename[t]], [t], name=f"{t}/decode", domain=spec.DOMAIN)
               for t in decoded]
    return kept + emitted + decodes


def _toposort(nodes: list[onnx.NodeProto], available: list[str] | None) -> list[onnx.NodeProto]:
    """Kahn's order, stable with respect to ``nodes``; with ``available`` None, unknown inputs are free."""
    produced = {o for n in nodes for o in n.output}
    known = set(available or []) | ({""} if available is not None else set())
    order, remaining = [], list(nodes)
    while remaining:
        progress = []
        for node in remaining:
            if all(i in known or (available is None and i not in produced) for i in node.input):
                progress.append(node)
                known.update(node.output)
        if not progress:    # a cycle or a missing input: keep the rest in their order
            return order + remaining
        ids = {id(n) for n in progress}
        order += progress
        remaining = [n for n in remaining if id(n) not in ids]
    return order
