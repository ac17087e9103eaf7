"""Write a delta-coded (streaming) artifact: the ANN's own graph with a sigma-delta layer after every
spiking layer's activation (``runtimes.spec``, coding "delta").

Per spiking layer (``structure``), the activation's output h is renamed h/value and::

    x ─(the ANN's affine)─▶ z ─(the ANN's activation)─▶ a ─IF(r0, β=0, θ, θ; coding=delta)─▶ s, r
                                                              r [..., n, 1] ─ReduceSum(-1)─▶ h

so every reader of h (the next affine layer, a readout, an analog node, a graph output) reads r, the value
the unit has sent so far; nothing else of the graph changes.  One point is one step (``timesteps`` 1).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from runtimes import spec

from ..structure import Structure

AXES = "onnx2snn/axes_last"


def build_delta_artifact(model: onnx.ModelProto, structure: Structure, thresholds: list[np.ndarray],
                         rest: list[np.ndarray], metadata: dict[str, str], graded: bool = False,
                         fire_fraction: float = 0.5) -> onnx.ModelProto:
    """The artifact of ``model`` (canonical, ``importer``) with the delta layers of ``structure``:
    ``thresholds[l]`` [n_l] the event sizes θ of layer l, ``rest[l]`` [n_l] its r(0); ``graded``: one graded
    event per sending unit (``spec``).  The model is copied, never changed."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    opset = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), 13)
    kept = [onnx.NodeProto() for _ in graph.node]
    for copy, node in zip(kept, graph.node):
        copy.CopyFrom(node)
    producers = {o: n for n in kept for o in n.output}
    dtype = next(iter(structure.layers)).affine.weight.dtype if structure.layers else np.float32
    inits, inserted = [], {}
    if opset >= 13:
        inits.append(numpy_helper.from_array(np.array([-1], np.int64), AXES))
    for layer, theta, r0 in zip(structure.layers, thresholds, rest):
        h, name = layer.activation.output, layer.name
        value = f"{h}/value"
        producer = producers[h]
        producer.output[list(producer.output).index(h)] = value
        column = lambda x: np.ascontiguousarray(np.asarray(x, dtype).reshape(-1, 1))
        params = {"v0": column(r0), "bias": column(np.zeros(layer.width)), "theta_pos": column(theta),
                  "theta_neg": column(theta)}
        inits += [numpy_helper.from_array(v, f"{name}/{k}") for k, v in params.items()]
        attributes = {spec.IF_CODING: spec.CODING_DELTA, **({spec.IF_GRADED: 1} if graded else {})}
        inserted[value] = [
            helper.make_node(spec.IF_OP, [value] + [f"{name}/{k}" for k in params], [f"{name}/spikes", f"{name}/sent"],
                             name=name, domain=spec.DOMAIN, signed=1, fire_fraction=float(fire_fraction),
                             **attributes),
            helper.make_node("ReduceSum", [f"{name}/sent"] + ([AXES] if opset >= 13 else []), [h],
                             name=f"{name}/sent_sum", keepdims=0, **({} if opset >= 13 else {"axes": [-1]}))]
    order = []
    for node in kept:
        order.append(node)
        order.extend(new for o in node.output for new in inserted.get(o, []))
    del graph.node[:]
    graph.node.extend(order)
    graph.initializer.extend(inits)
    if not any(o.domain == spec.DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(spec.DOMAIN, spec.DOMAIN_VERSION))
    out.producer_name = "onnx2snn"
    out.ir_version = spec.IR_VERSION if opset <= 21 else model.ir_version
    merged = {**{m.key: m.value for m in model.metadata_props}, **metadata}
    del out.metadata_props[:]
    for key, value in merged.items():
        out.metadata_props.add(key=key, value=value)
    return out
