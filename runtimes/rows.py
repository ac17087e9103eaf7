"""Row-wise analysis: may a computation run on chunks of the batch (rows of axis 0) independently?

Backends use it to split a large batch into chunks that stay in cache; every value is unchanged except
for the summation order inside MatMul (BLAS blocking may depend on the number of rows).

A *row* tensor carries the batch on axis 0 (rank >= 2): the inputs, and everything computed from them.
A *parameter* is anything else (initializers, constants), known by its shape.  A node is row-wise when its
row outputs, restricted to a set of rows, depend only on the same rows of its row inputs:

* elementwise ops (Add, Sub, Mul, Div, Pow, Max, Min, Where, unary activations) whose row inputs all have
  the output's rank and whose parameters do not broadcast along axis 0 (lower rank, or first dim 1);
* MatMul / Gemm (no transA) of a row tensor by a parameter matrix (Gemm's C: rank <= 1 or first dim 1);
* ReduceSum / ReduceMean / Squeeze / Unsqueeze / Concat / Slice / Softmax / Flatten away from axis 0
  (constant axes), Transpose fixing axis 0, Reshape to a constant shape [0, ...] (``allowzero`` 0: axis 0
  copied, each row's values reshaped among themselves);
* ``onnx2snn.IF`` of a row current with parameter neuron tensors, and ``onnx2snn.Decode``.

Anything else (Einsum, Gather, any other Reshape or Transpose, …) is treated as not row-wise.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import spec

_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Where", "Equal", "Less", "Greater",
                "LessOrEqual", "GreaterOrEqual", "And", "Or", "Not", "Tanh", "Sin", "Cos", "Exp", "Log",
                "Neg", "Abs", "Sqrt", "Relu", "Sigmoid", "Softplus", "Erf", "Elu", "LeakyRelu", "Selu",
                "HardSigmoid", "Reciprocal", "Identity", "Cast", "Clip", "Gelu", "Mish", "Sign", "Floor",
                "Ceil", "Round", "Atan", "Asinh", "Sinh", "Cosh", "IsNaN", "IsInf", "HardSwish", "Celu"}
_AXES_OPS = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "Squeeze", "Unsqueeze"}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def out_rank(node: onnx.NodeProto, ranks: list[int | None], shape: Callable[[str], tuple | None],
             value: Callable[[str], np.ndarray | None], opset: int) -> int | None | bool:
    """Rank of the row outputs of ``node``; ``ranks[i]`` is input i's rank if it is a row tensor, else None.

    Returns None when no input is a row tensor (the outputs are parameters), False when the node is not
    row-wise.  ``shape(name)`` gives a parameter's shape, ``value(name)`` a constant's value (or None)."""
    ins = list(node.input)
    rows = [r for r, name in zip(ranks, ins) if name and r is not None]
    if not rows:
        return None
    op, at = node.op_type, _attrs(node)
    if node.domain == spec.DOMAIN:
        if op == spec.IF_OP:
            ok = ranks[spec.IF_CURRENT] is not None and all(r is None for r in ranks[1:])
            return ranks[spec.IF_CURRENT] + 1 if ok else False
        return ranks[0] if op == spec.DECODE_OP and ranks[0] is not None else False
    if op in _ELEMENTWISE:
        rank = max(rows)
        for name, r in zip(ins, ranks):
            if not name:
                continue
            if r is not None and r != rank:
                return False
            if r is None:
                s = shape(name)
                if s is None or len(s) > rank or (len(s) == rank and s[0] != 1):
                    return False
        return rank
    if op in ("MatMul", "Gemm"):
        w = shape(ins[1]) if len(ins) > 1 else None
        if ranks[0] is None or ranks[0] < 2 or ranks[1] is not None or w is None or len(w) != 2:
            return False
        if op == "Gemm":
            if ranks[0] != 2 or at.get("transA", 0):
                return False
            if len(ins) > 2 and ins[2]:
                c = shape(ins[2])
                if ranks[2] is not None or c is None or (len(c) == 2 and c[0] != 1):
                    return False
        return ranks[0]
    if op == "Concat":
        rank = max(rows)
        return rank if all(r == rank for r, name in zip(ranks, ins) if name) and at.get("axis", 0) % rank != 0 \
            else False
    rank = ranks[0]
    if rank is None or any(r is not None for r in ranks[1:]):
        return False
    if op in _AXES_OPS:
        axes = at.get("axes")
        if axes is None and len(ins) > 1 and ins[1]:
            a = value(ins[1])
            axes = None if a is None else [int(x) for x in np.ravel(a)]
        if not axes:
            return False
        if op == "Unsqueeze":
            rank_out = rank + len(axes)
            return rank_out if all(a % rank_out != 0 for a in axes) else False
        if any(a % rank == 0 for a in axes):
            return False
        keep = op != "Squeeze" and bool(at.get("keepdims", 1))
        rank_out = rank if keep else rank - len({a % rank for a in axes})
        return rank_out if rank_out >= 1 else False
    if op == "Slice":
        if opset < 10:
            axes = at.get("axes")
        else:
            a = value(ins[3]) if len(ins) > 3 and ins[3] else None
            axes = None if a is None else [int(x) for x in np.ravel(a)]
            if any(ins[k] and value(ins[k]) is None for k in range(1, min(len(ins), 5))):
                return False
        return rank if axes is not None and all(a % rank != 0 for a in axes) else False
    if op in ("Softmax", "LogSoftmax"):
        return rank if at.get("axis", -1) % rank != 0 else False
    if op == "Flatten":
        return 2 if at.get("axis", 1) == 1 else False
    if op == "Transpose":
        perm = at.get("perm")
        return rank if perm is not None and len(perm) == rank and perm[0] == 0 else False
    if op == "Reshape":
        target = value(ins[1]) if len(ins) > 1 and ins[1] else None
        copied = target is not None and np.ndim(target) == 1 and len(target) >= 2 and int(target[0]) == 0
        return len(target) if copied and not at.get("allowzero", 0) else False
    return False


def row_inputs(model: onnx.ModelProto) -> list[str] | None:
    """The graph inputs to split into chunks of rows if the whole artifact is row-wise, else None.

    Every non-initializer input must have rank >= 2 (their first dimensions must agree at run time), and
    every node must be row-wise in the sense of ``out_rank``."""
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    inits = {t.name: t for t in graph.initializer}
    shapes = {name: tuple(t.dims) for name, t in inits.items()}
    values: dict[str, np.ndarray] = {}
    ranks: dict[str, int] = {}
    inputs = [i for i in graph.input if i.name not in inits]
    for i in inputs:
        t = i.type.tensor_type
        if not t.HasField("shape") or len(t.shape.dim) < 2:
            return None
        ranks[i.name] = len(t.shape.dim)

    def value(name):
        if name in values:
            return values[name]
        if name in inits:
            values[name] = numpy_helper.to_array(inits[name])
            return values[name]
        return None

    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            at = _attrs(node)
            if "value" not in at:
                return None
            array = numpy_helper.to_array(at["value"])
            values[node.output[0]], shapes[node.output[0]] = array, array.shape
            continue
        r = out_rank(node, [ranks.get(i) if i else None for i in node.input], shapes.get, value, opset)
        if r is False:
            return None
        if r is None:      # parameters only: row-wise chunking cannot tell its shape; give up
            return None
        ranks.update({o: r for o in node.output if o})
    if any(o.name not in ranks for o in graph.output):
        return None
    return [i.name for i in inputs]


def chunks(total: int, size: int) -> list[slice]:
    """Consecutive slices of ``size`` rows covering ``range(total)``."""
    size = max(1, int(size))
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


def chunk_size(states: int, blocks: int, target: int, min_op: int) -> int:
    """Rows per chunk for a loop over ``states`` neuron states per row held in ``blocks`` dense tensors:
    about ``target`` states per chunk (cache), but at least ``min_op`` elements per block on average (so
    that per-op overheads stay small)."""
    states, blocks = max(1, int(states)), max(1, int(blocks))
    return max(1, max(target, min_op * blocks) // states)
