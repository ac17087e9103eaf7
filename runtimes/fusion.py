"""Fusion of ``[Add(b) →] IF → Mul(w) → ReduceSum(-1) → Add(c)`` (an IF layer, its decode and the bias
of the affine feeding it) into one compact kernel.

The converter writes every spiking layer in this form; executing it as one ``compact.CompactLayer`` skips
padding neurons and the [N, n, K] temporaries.  It computes what the nodes compute, but sums each unit's
K decoded pieces in its own order (the nodes' ReduceSum sums pairwise), so decoded values may differ from
the unfused run in the last bits (Burgers, T=32, float32: 408 of 512 outputs, by at most 3.6e-7) and a
spike downstream moves only where a membrane lands within those bits of its threshold (the same run: equal
spike counts in every layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from . import spec
from .compact import CompactLayer
from .neuron import NeuronParams
from .schedule import if_attributes, if_coding


@dataclass
class FusedLayer:
    name: str                       # the IF node's name (spike counts are reported under it)
    current: str                    # input tensor [..., n] (before ``pre_bias``)
    output: str                     # decoded unit values [..., n]
    nodes: list[onnx.NodeProto]     # the fused nodes, the IF node first
    params: NeuronParams
    decode_weight: np.ndarray
    decode_offset: np.ndarray
    pre_bias: np.ndarray | None = None      # [n]: the fused bias Add before the IF node, if any

    def compact(self, dtype) -> CompactLayer:
        return CompactLayer(self.params, self.decode_weight, self.decode_offset, dtype)

    def bias(self, dtype) -> np.ndarray | None:
        return None if self.pre_bias is None else self.pre_bias.astype(dtype)


def find_fusable(nodes: list[onnx.NodeProto], initializers: dict[str, np.ndarray],
                 graph_outputs: set[str]) -> list[FusedLayer]:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producer = {name: node for node in nodes for name in node.output}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    only = lambda t: consumers.get(t, [None])[0] if len(consumers.get(t, [])) == 1 and t not in graph_outputs else None
    found = []
    for node in nodes:
        if node.domain != spec.DOMAIN or node.op_type != spec.IF_OP or if_coding(node) != spec.CODING_RATE:
            continue                # phase-coded layers run unfused (numpy_ref)
        params = [initializers.get(node.input[k]) for k in (spec.IF_MEMBRANE, spec.IF_BIAS, spec.IF_THETA_POS,
                                                             spec.IF_THETA_NEG)]
        if any(p is None for p in params) or (len(node.output) > 1 and node.output[1] in consumers) \
                or (len(node.output) > 1 and node.output[1] in graph_outputs):
            continue
        mul = only(node.output[0])
        if mul is None or mul.op_type != "Mul" or mul.input[0] != node.output[0] or mul.input[1] not in initializers:
            continue
        reduce = only(mul.output[0])
        if reduce is None or reduce.op_type != "ReduceSum" or not _last_axis(reduce, initializers):
            continue
        add = only(reduce.output[0])
        if add is None or add.op_type != "Add" or add.input[0] != reduce.output[0] or add.input[1] not in initializers:
            continue
        signed, fire_fraction, leak = if_attributes(node)
        v0, bias, theta_pos, theta_neg = params
        shape = theta_pos.shape
        weight, offset = initializers[mul.input[1]], initializers[add.input[1]]
        if len(shape) != 2 or any(np.shape(p) not in (shape, ()) for p in (v0, bias, theta_neg, weight)) \
                or np.shape(offset) not in ((shape[0],), ()):
            continue
        current, fused, pre_bias = node.input[0], [node, mul, reduce, add], None
        bias_add = _bias_add(producer.get(current), shape[0], initializers)
        if bias_add is not None and only(current) is node:
            current, pre_bias = bias_add
            fused.append(producer[node.input[0]])
        found.append(FusedLayer(
            name=node.name or node.output[0], current=current, output=add.output[0], nodes=fused,
            params=NeuronParams(bias=bias, theta_pos=theta_pos, theta_neg=theta_neg, v0=v0, signed=signed,
                                fire_fraction=fire_fraction, leak=leak),
            decode_weight=np.broadcast_to(weight, shape), decode_offset=np.broadcast_to(offset, (shape[0],)),
            pre_bias=pre_bias))
    return found


def _bias_add(node: onnx.NodeProto | None, n: int,
              initializers: dict[str, np.ndarray]) -> tuple[str, np.ndarray] | None:
    """(x, b) if ``node`` is ``Add(x, b)`` or ``Add(b, x)`` with b a constant [n] (the affine's bias)."""
    if node is None or node.op_type != "Add" or node.domain not in ("", "ai.onnx"):
        return None
    for k in (0, 1):
        b = initializers.get(node.input[1 - k])
        if b is not None and node.input[k] not in initializers and b.shape == (n,):
            return node.input[k], b
    return None


def _last_axis(node: onnx.NodeProto, initializers: dict[str, np.ndarray]) -> bool:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("keepdims", 1) != 0:
        return False
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1:
        axes = initializers.get(node.input[1])
    return axes is not None and list(np.ravel(axes)) == [-1]
