"""Affine layers in every exporter spelling, as ``y = x·W + b`` with W [in, out], b [out].

Patterns (DESIGN §3): ``Gemm`` (transB 0 or 1, alpha, beta, with or without C), ``MatMul`` with a
constant rank-2 right operand, either followed by an ``Add`` of a constant bias broadcastable to [out]
(in either operand order; ``Gemm(beta=0) + Add`` from jax2onnx included).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from .errors import ModelError
from .graph_index import GraphIndex


@dataclass
class Affine:
    """An affine layer: ``nodes`` (the matched nodes), ``input`` → ``output`` tensor names, W [in, out], b [out]."""

    name: str
    nodes: list[onnx.NodeProto]
    input: str
    output: str
    weight: np.ndarray
    bias: np.ndarray

    @property
    def fan_in(self) -> int:
        return self.weight.shape[0]

    @property
    def width(self) -> int:
        return self.weight.shape[1]


def match_affine(node: onnx.NodeProto, g: GraphIndex) -> Affine | None:
    """The affine layer that starts at ``node``, or None."""
    if node.op_type == "Gemm":
        found = _gemm(node, g)
    elif node.op_type == "MatMul":
        found = _matmul(node, g)
    else:
        return None
    if found is None:
        return None
    x, w, b = found
    nodes, output = [node], node.output[0]
    add = g.only_consumer(output)
    if add is not None and add.op_type == "Add":
        other = add.input[1] if add.input[0] == output else add.input[0]
        extra = _bias(g.constant(other), w.shape[1])
        if extra is not None:
            nodes, output, b = nodes + [add], add.output[0], b + extra
    return Affine(name=node.name, nodes=nodes, input=x, output=output, weight=w, bias=b.astype(w.dtype))


def _gemm(node: onnx.NodeProto, g: GraphIndex):
    at = g.attrs(node)
    w = g.constant(node.input[1])
    if at.get("transA", 0) or w is None or w.ndim != 2 or w.dtype.kind != "f" or w.size == 0:
        return None
    alpha, beta = at.get("alpha", 1.0), at.get("beta", 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        w = (w.T if at.get("transB", 0) else w) * np.asarray(alpha, w.dtype)
        b = np.zeros(w.shape[1], w.dtype)
        if len(node.input) > 2 and node.input[2]:
            c = _bias(g.constant(node.input[2]), w.shape[1])
            if c is None:
                return None
            b = (b + beta * c).astype(w.dtype)
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
        raise ModelError(f"node '{node.name}' (Gemm): alpha={alpha:g} and beta={beta:g} times its weights are "
                         f"not finite in {w.dtype}")
    return node.input[0], np.ascontiguousarray(w), b


def _matmul(node: onnx.NodeProto, g: GraphIndex):
    w = g.constant(node.input[1])
    if w is None or w.ndim != 2 or w.dtype.kind != "f" or w.size == 0 or node.input[0] in g.constants:
        return None
    return node.input[0], np.ascontiguousarray(w), np.zeros(w.shape[1], w.dtype)


def _bias(c: np.ndarray | None, width: int) -> np.ndarray | None:
    """A constant broadcastable to [width] along the last axis only, as [width]; else None."""
    if c is None or c.dtype.kind != "f" or c.size not in (1, width):
        return None
    if c.ndim and c.shape[-1] != c.size:
        return None
    return np.broadcast_to(c.reshape(-1), (width,)).copy()
