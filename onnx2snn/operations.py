"""Arithmetic of an ONNX graph, node by node, counted from the tensors of one run.

Each node's work falls in one of three classes, counted per run of the graph on a batch:

* ``macs``: multiply-accumulates of ``MatMul`` / ``Gemm`` (output elements × inner dimension K) and
  ``Einsum`` (the product of the sizes of all its index letters: one MAC per term of the full sum);
* ``activations``: evaluations of a nonlinear pointwise function (``Tanh``, ``Sin``, ``Exp``, ...), one per
  output element;
* ``mults``: ``Mul`` and ``Div``, one per output element;
* ``adds``: other arithmetic (``Add``, ``Sub``, comparisons, ``Where``, ``Max``, reductions ...), one per
  output element (per input element for reductions), and a ``Gemm``'s bias.

Data movement (``Reshape``, ``Concat``, ``Slice``, ``Gather``, ``Transpose``, ``Cast``, constants) counts 0.
The counts are exact for the batch the tensors come from; divided by the number of samples they are the
per-sample figures of ``energy.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

ACTIVATION_OPS = {"Tanh", "Sin", "Cos", "Sigmoid", "Exp", "Log", "Erf", "Softplus", "Gelu", "Elu", "Relu",
                  "LeakyRelu", "Sqrt", "Pow", "Reciprocal", "Atan", "Asinh", "Sinh", "Cosh", "Selu",
                  "HardSigmoid", "Softsign", "Mish", "Celu"}
FREE_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Slice", "Split", "Gather", "Transpose",
            "Identity", "Cast", "CastLike", "Shape", "Size", "Constant", "ConstantOfShape", "Expand", "Tile",
            "Range", "Dropout"}
REDUCTIONS = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceSumSquare"}


@dataclass
class Work:
    """Operations of one kind each (module docstring); an SNN also spends ``synops`` (a weight accumulated
    per spike and target) and ``neuron_updates`` (one integrate-and-compare per neuron and step)."""

    macs: float = 0.0
    activations: float = 0.0
    adds: float = 0.0
    mults: float = 0.0
    synops: float = 0.0
    neuron_updates: float = 0.0

    def __add__(self, other: "Work") -> "Work":
        return Work(**{k: v + getattr(other, k) for k, v in vars(self).items()})

    def scaled(self, factor: float) -> "Work":
        return Work(**{k: v * factor for k, v in vars(self).items()})


def node_key(node: onnx.NodeProto) -> str:
    """A node's identity across copies of a graph: its first output's name (unique in ONNX)."""
    return node.output[0]


def node_work(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> Work:
    """The arithmetic of ``node`` given the shapes of its tensors in one run (``shapes`` by tensor name;
    a missing shape counts its tensor as a scalar)."""
    out = shapes.get(node.output[0], ())
    size = float(np.prod(out)) if out else 1.0
    op = node.op_type
    if node.domain not in ("", "ai.onnx") or op in FREE_OPS:
        return Work()
    if op in ("MatMul", "Gemm"):
        a = shapes.get(node.input[0], (1,))
        trans_a = op == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute)
        inner = a[0] if trans_a and len(a) == 2 else a[-1]
        bias = size if op == "Gemm" and len(node.input) > 2 and node.input[2] else 0.0
        return Work(macs=size * inner, adds=bias)
    if op == "Einsum":
        return Work(macs=_einsum_terms(node, shapes))
    if op in ACTIVATION_OPS:
        return Work(activations=size)
    if op in REDUCTIONS:
        first = shapes.get(node.input[0], ())
        return Work(adds=float(np.prod(first)) if first else 1.0)
    if op in ("Mul", "Div"):
        return Work(mults=size)
    return Work(adds=size)


def _einsum_terms(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> float:
    """Π over the index letters of their sizes: the multiply-adds of the sum as written (no reordering)."""
    equation = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "equation")
    equation = equation.decode() if isinstance(equation, bytes) else equation
    operands = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for letters, name in zip(operands, node.input):
        shape = shapes.get(name, ())
        if "..." in letters:                     # broadcast dims: count them as one extra letter
            head, tail = letters.split("...")
            extra = len(shape) - len(head) - len(tail)
            sizes["…"] = max(sizes.get("…", 1), int(np.prod(shape[len(head):len(head) + extra])))
            letters = head + tail
            shape = shape[:len(head)] + shape[len(head) + extra:]
        for letter, dim in zip(letters, shape):
            sizes[letter] = max(sizes.get(letter, 1), int(dim))
    return float(np.prod(list(sizes.values()))) if sizes else 0.0


def graph_work(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]],
               keys: set[str] | None = None) -> Work:
    """The summed arithmetic of the graph's nodes (only those whose ``node_key`` is in ``keys``, if given)."""
    total = Work()
    for node in model.graph.node:
        if keys is None or node_key(node) in keys:
            total = total + node_work(node, shapes)
    return total
