"""Links: the linear operations that carry spiking signals between layers (residual sums, static gates).

A *step* tensor is the decoded output u_s(t) of a spiking layer, or the output of a *link op* applied to
step tensors and *static* tensors (values fixed for the point: inputs, constants, analog nodes' outputs)::

    Add, Sub, Sum        y = Σ ±x_i                 (any operands step or static)
    Neg, Identity        y = ±x
    Mul                  y = x·g                     (one step operand x, the other g static)
    Div                  y = x / g                   (step numerator, static denominator)
    Concat, Slice        rearrange columns           (step data; constant starts, ends, axes)
    Reshape, Flatten,    rearrange each point's      (step data; constant shape, axes; the batch axis kept:
    Squeeze, Unsqueeze,  values                       input and output row tensors, ``batch_rows``)
    Transpose

Each is affine in its step operands with coefficients fixed for the point, so it commutes with the time
average: (1/T)·Σ_t L(u(t)) = L((1/T)·Σ_t u(t)).  A *link* is the subgraph of link ops between the outputs of
some spiking layers (its ``sources``) and one tensor read by an affine layer (its ``output``): that affine's
synapses receive the layers' events through it, every step (the residual H + tanh(H·W + b), the modified
MLP's (1 - Z)·U + Z·V with U, V static).  Every step tensor is a row tensor (the layers' outputs are, and
every link op keeps the rows), so a series of T steps is laid out as T copies of the batch along axis 0.  A
Reshape of a row tensor is given a constant shape when the model is imported (``importer``: [0, *F], or
[-1, *F] where the model computes it from ``Shape``).  A product of two step tensors is not a link
(the mean of a product is not the product of the means): it stays analog, on decoded values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from runtimes.chain import REARRANGING as RESHAPES     # the ops that rearrange each point's values
from runtimes.ops import make_kernel

from .batch_rows import keeps_rows
from .graph_index import GraphIndex

SUMS = ("Add", "Sub", "Sum")
UNARY = ("Neg", "Identity")
REARRANGE = ("Concat", "Slice")
LINK_OPS = SUMS + UNARY + REARRANGE + RESHAPES + ("Mul", "Div")


@dataclass
class Link:
    """``output`` computed per step from the decoded outputs of spiking layers ``sources`` (indices, their
    output tensors ``source_tensors``) and the static tensors ``statics`` by ``nodes`` (topological order;
    none: ``output`` is the single source's output itself)."""

    output: str
    sources: list[int]
    source_tensors: list[str]
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    statics: list[str] = field(default_factory=list)
    constants: dict[str, np.ndarray] = field(default_factory=dict)   # the initializers the nodes read
    opset: int = 17

    @property
    def identity(self) -> bool:
        return not self.nodes

    def evaluate(self, sources: list[np.ndarray], ann: dict[str, np.ndarray]) -> np.ndarray:
        """L on source values [T, N, n_s] (a series) or [N, n_s] (means) → [T, N, m] or [N, m].

        ``ann``: the ANN's tensors at the same points, in the model's shapes [N₀, ...]: the statics' values,
        and the model's shape of each source.  A series is laid out as T copies of the batch (the statics
        tiled alike), so every op acts on it as the model's graph does (a reshape's constant shape names the
        batch by -1 or 0, never by its size: ``link_op_output_is_step``)."""
        if self.identity:
            return sources[0]
        series = sources[0].ndim == 3
        T = sources[0].shape[0] if series else 1
        values: dict[str, np.ndarray | None] = {"": None, **self.constants}
        for name, value in zip(self.source_tensors, sources):
            shape = ann[name].shape
            values[name] = value.reshape((T * shape[0],) + tuple(shape[1:]))
        for name in self.statics:
            values[name] = np.concatenate([ann[name]] * T, axis=0) if T > 1 else ann[name]
        for node in self.nodes:
            kernel = make_kernel(node, {"": self.opset})
            values.update(zip(node.output, kernel([values.get(i) for i in node.input])))
        out = values[self.output]
        out = out.reshape(T, -1, out.shape[-1])
        return out if series else out[0]

    def tangent(self, tangents: list[np.ndarray], ann: dict[str, np.ndarray]) -> np.ndarray:
        """The linear part of L: L(u̇) - L(0) [N, m] for source tangents u̇ [N, n_s] (L is affine in them)."""
        if self.identity:
            return tangents[0]
        return self.evaluate(tangents, ann) - self.evaluate([np.zeros_like(t) for t in tangents], ann)

    def backward(self, grad: np.ndarray, ann: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Lᵀ: the gradient g [N, m] of a loss with respect to ``output`` carried back to each source [N, n_s].

        Reverse through ``nodes``, per step operand x of y = op(...):  Add, Sum, Identity: ∂x = ∂y;  Sub: ±∂y;
        Neg: -∂y;  Mul: ∂y·g (g the static factor);  Div: ∂y / g;  Concat, Slice: ∂y's entries back to the
        positions they were taken from;  Reshape, Flatten, Squeeze, Unsqueeze: ∂y reshaped to x's shape;
        Transpose(perm): ∂y transposed by the inverse permutation; each summed over the axes along which x was
        broadcast.  ``ann`` as for ``evaluate`` (its rows the same points as ``grad``'s)."""
        if self.identity:
            return [grad]
        N = grad.shape[0]
        values = {"": None, **self.constants, **{name: ann[name] for name in self.statics}}
        for name in self.source_tensors:
            values[name] = np.zeros((N,) + ann[name].shape[1:], grad.dtype)
        step = set(self.source_tensors)
        for node in self.nodes:                     # the shapes (and static operands) of every tensor
            values.update(zip(node.output, make_kernel(node, {"": self.opset})([values.get(i) for i in node.input])))
            step.update(node.output)
        out = values[self.output]
        grads = {self.output: grad.reshape(out.shape)}
        for node in reversed(self.nodes):
            g = grads.pop(node.output[0], None)
            if g is None:
                continue
            for k, name in enumerate(node.input):
                if name in step:
                    part = _operand_gradient(node, k, g, values, self.opset)
                    part = _unbroadcast(part, values[name].shape)
                    grads[name] = grads[name] + part if name in grads else part
        return [grads.get(name, np.zeros_like(values[name])).reshape(N, -1) for name in self.source_tensors]


def _operand_gradient(node: onnx.NodeProto, k: int, g: np.ndarray, values: dict, opset: int) -> np.ndarray:
    """∂loss/∂(input k) of link op ``node`` from ∂loss/∂output ``g`` (``Link.backward``), before unbroadcasting."""
    op = node.op_type
    if op in ("Add", "Sum", "Identity"):
        return g
    if op == "Sub":
        return g if k == 0 else -g
    if op == "Neg":
        return -g
    if op == "Mul":
        return g * values[node.input[1 - k]]
    if op == "Div":
        return g / values[node.input[1]]
    if op == "Transpose":
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), list(range(g.ndim))[::-1])
        return g.transpose(np.argsort(perm))
    if op in RESHAPES:
        return g.reshape(values[node.input[k]].shape)
    # Concat, Slice: run the op on positions (input k's flat indices, -1 for every other operand)
    shape = values[node.input[k]].shape
    operands = [values.get(i) for i in node.input]
    for j, name in enumerate(node.input):
        if op == "Concat" or j == 0:
            operands[j] = (np.arange(int(np.prod(shape))).reshape(shape) if j == k
                           else np.full(values[name].shape, -1, np.int64))
    taken = make_kernel(node, {"": opset})(operands)[0]
    out = np.zeros(int(np.prod(shape)), g.dtype)
    np.add.at(out, taken[taken >= 0], g[taken >= 0])
    return out.reshape(shape)


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """g summed over the axes along which an operand of ``shape`` was broadcast to g's shape."""
    g = g.sum(axis=tuple(range(g.ndim - len(shape)))) if g.ndim > len(shape) else g
    axes = tuple(a for a, d in enumerate(shape) if d == 1 and g.shape[a] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def link_op_output_is_step(node: onnx.NodeProto, step: set[str], g: GraphIndex) -> bool | None:
    """Whether ``node`` (reading at least one step tensor) is a link op on these operands: True (its output
    is a step tensor), or None (not linear in its step operands: analog, on decoded values).  A reshape
    (``RESHAPES``) is one when its only step operand is its data, its other operands are constants, and it
    maps a row tensor to a row tensor of as many features (``batch_rows.keeps_rows``): a Reshape that
    folds the batch into the features, or moves it off axis 0, stays analog."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in LINK_OPS:
        return None
    stepped = [i for i in node.input if i in step]
    if node.op_type == "Mul" and len(stepped) > 1:
        return None
    if node.op_type == "Div" and node.input[1] in step:
        return None
    if node.op_type in ("Slice",) + RESHAPES and any(i in step or (i and i not in g.constants)
                                                     for i in node.input[1:]):
        return None
    if node.op_type == "Squeeze" and len(node.input) < 2 and not any(a.name == "axes" for a in node.attribute):
        return None                 # every axis of size 1: the batch axis too, at one point
    if node.op_type in RESHAPES and not keeps_rows(node, g.row_features):
        return None
    return True
