"""Write the spiking artifact: the canonical model with every spiking layer replaced (``runtimes.spec``).

Per spiking layer::

    x ─MatMul(W)─Add(b)─▶ z ─IF(v0, β, θ+, θ-)─▶ s ─Mul(w)─ReduceSum(-1)─Add(c)─▶ h

(a phase-coded layer's ``h`` through a ``Decode``: the next layer reads its decoded value, ``spec``; a
layer on an analog node's output has no affine: ``x ─IF─▶ ...``); per readout ``x ─MatMul(W)─Add(b)─▶ y``.
The new nodes produce the replaced nodes' tensors ``z``, ``h``, ``y`` (``graph_surgery``: readers stay
connected), and the replaced nodes are dropped.  The link ops between layers (``links.py``) stay as they
are and run every step.  Then a ``Decode`` is inserted wherever a step tensor reaches an analog node, a
graph output or a static layer's affine, so those see decoded values and the graph's names are unchanged.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from runtimes import spec
from runtimes.neuron import NeuronParams

from .calibration import Calibration
from .graph_surgery import GraphEditor, export_artifact
from .structure import Structure

STEP_SUFFIX = "/step"
AXES_LAST = "onnx2snn/axes_last"


def build_artifact(model: onnx.ModelProto, structure: Structure, calibration: Calibration,
                   metadata: dict[str, str]) -> onnx.ModelProto:
    """The artifact of ``model`` (canonical, ``importer``) converted as ``structure`` with ``calibration``;
    ``metadata`` is added to the model's.  The model is not changed."""
    editor = GraphEditor(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    axes = editor.const(AXES_LAST, np.array([-1], np.int64)) if opset >= 13 else None
    replaced = [n for l in structure.layers for n in l.affine.nodes + l.activation.nodes]
    for node in replaced + [n for a in structure.readouts for n in a.nodes]:
        editor.detach(editor.nodes[node.name])      # the nodes below produce its tensors; cleanup drops it
    entries = []        # the first node of each static layer's affine: it reads decoded values

    def affine(prefix: str, x: str, out: str, weight: np.ndarray, bias: np.ndarray) -> gs.Node:
        first = editor.node("MatMul", [x, editor.const(f"{prefix}/W", weight)], [f"{prefix}/xW"],
                            f"{prefix}/MatMul")
        editor.node("Add", [f"{prefix}/xW", editor.const(f"{prefix}/b", bias)], [out], f"{prefix}/Add")
        return first

    def neurons(name: str, current: str, out: str, p, decode_weight: np.ndarray, decode_offset: np.ndarray) -> None:
        phase = p.coding == spec.CODING_PHASE        # decoded at once: the next layer reads a static value
        add_if_layer(editor, name, current, out + STEP_SUFFIX if phase else out, p, decode_weight, decode_offset,
                     axes)
        if phase:
            editor.node(spec.DECODE_OP, [out + STEP_SUFFIX], [out], f"{out}/decode", domain=spec.DOMAIN)

    for layer, params in zip(structure.layers, calibration.layers):
        if not layer.identity:      # an identity layer's neurons read the analog node's output itself
            first = affine(layer.affine.name, layer.affine.input, layer.activation.input, params.weight, params.bias)
            if layer.static:
                entries.append(first)
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
    links = [editor.nodes[n.name] for n in structure.link_nodes]
    _insert_decodes(editor, editor.added + links, entries)
    return export_artifact(editor, model, metadata)


class NodeBuilder(Protocol):
    """Where a layer's nodes go: ``graph_surgery.GraphEditor``, or a builder of a new graph."""

    def node(self, op: str, inputs: list[str], outputs: list[str], name: str, **attributes): ...

    def const(self, name: str, value: np.ndarray) -> str: ...


def add_if_layer(builder: NodeBuilder, name: str, current: str, out: str, p: NeuronParams,
                 decode_weight: np.ndarray, decode_offset: np.ndarray, axes: str | None) -> None:
    """One spiking layer's nodes ``IF(v0, β, θ+, θ-) → Mul(w) → ReduceSum(-1) → Add(c)`` from ``current`` to
    ``out``, the IF node named ``name`` (spike counts are reported so) and its constants named
    ``name/v0``, ``name/bias``, ...; ``axes``: the initializer holding [-1] (opset >= 13), or None for the
    attribute form.  No ``leak`` attribute when λ = 1, no ``coding`` for the rate code."""
    leak = {} if p.leak == 1 else {spec.IF_LEAK: float(p.leak)}
    if p.coding != spec.CODING_RATE:
        leak[spec.IF_CODING] = p.coding
    reduce_axes = {} if axes is not None else {"axes": [-1]}
    const = builder.const
    builder.node(spec.IF_OP, [current, const(f"{name}/v0", p.v0), const(f"{name}/bias", p.bias),
                              const(f"{name}/theta_pos", p.theta_pos), const(f"{name}/theta_neg", p.theta_neg)],
                 [f"{name}/spikes", f"{name}/membrane"], name, domain=spec.DOMAIN,
                 signed=int(p.signed), fire_fraction=float(p.fire_fraction), **leak)
    builder.node("Mul", [f"{name}/spikes", const(f"{name}/decode_w", decode_weight)], [f"{name}/weighted"],
                 f"{name}/decode_mul")
    builder.node("ReduceSum", [f"{name}/weighted"] + ([axes] if axes is not None else []), [f"{name}/summed"],
                 f"{name}/decode_sum", keepdims=0, **reduce_axes)
    builder.node("Add", [f"{name}/summed", const(f"{name}/decode_c", decode_offset)], [out], f"{name}/decode_add")


def _insert_decodes(editor: GraphEditor, stepping: list[gs.Node], entries: list[gs.Node]) -> None:
    """Decode each step tensor read by an analog node, a graph output or a static layer's affine
    (``entries``), keeping its name for them: its producer and its stepping readers take ``name/step``.
    ``stepping``: the nodes that run every step (the new layers' and the link ops); a Decode ends them."""
    ours, entry = {id(n) for n in stepping}, {id(n) for n in entries}
    step: set[str] = set()
    for node in editor.graph.toposort().nodes:      # in topological order, so a node's step inputs are known
        if id(node) not in ours or (node.domain == spec.DOMAIN and node.op == spec.DECODE_OP):
            continue
        if node.domain == spec.DOMAIN or (id(node) not in entry and any(t.name in step for t in node.inputs)):
            step.update(t.name for t in node.outputs)
    outputs = {t.name for t in editor.graph.outputs}
    decoded = sorted(t for t in step if t in outputs or any(
        id(n) not in ours or id(n) in entry for n in editor.tensors[t].outputs))
    for t in decoded:
        tensor = editor.tensors[t]
        readers = [n for n in tensor.outputs if id(n) in ours and id(n) not in entry]
        editor.rename_output(tensor.inputs[0], t, t + STEP_SUFFIX)
        for reader in readers:
            editor.reroute(reader, t, t + STEP_SUFFIX)
        editor.node(spec.DECODE_OP, [t + STEP_SUFFIX], [t], f"{t}/decode", domain=spec.DOMAIN)
