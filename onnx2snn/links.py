"""Links: the linear operations that carry spiking signals between layers (residual sums, static gates).

A *step* tensor is the decoded output u_s(t) of a spiking layer, or the output of a *link op* applied to
step tensors and *static* tensors (values fixed for the point: inputs, constants, analog nodes' outputs)::

    Add, Sub, Sum        y = Σ ±x_i                 (any operands step or static)
    Neg, Identity        y = ±x
    Mul                  y = x·g                     (one step operand x, the other g static)
    Div                  y = x / g                   (step numerator, static denominator)
    Concat, Slice        rearrange columns           (step data; constant starts, ends, axes)

Each is affine in its step operands with coefficients fixed for the point, so it commutes with the time
average: (1/T)·Σ_t L(u(t)) = L((1/T)·Σ_t u(t)).  A *link* is the subgraph of link ops between the outputs of
some spiking layers (its ``sources``) and one tensor read by an affine layer (its ``output``): that affine's
synapses receive the layers' events through it, every step (the residual H + tanh(H·W + b), the modified
MLP's (1 - Z)·U + Z·V with U, V static).  A product of two step tensors is not a link (the mean of a
product is not the product of the means): it stays analog, on decoded values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from runtimes.ops import make_kernel

SUMS = ("Add", "Sub", "Sum")
UNARY = ("Neg", "Identity")
REARRANGE = ("Concat", "Slice")
LINK_OPS = SUMS + UNARY + REARRANGE + ("Mul", "Div")


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
        tiled alike), so every op acts on it as the model's graph does."""
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


def link_op_output_is_step(node: onnx.NodeProto, step: set[str], constants: dict) -> bool | None:
    """Whether ``node`` (reading at least one step tensor) is a link op on these operands: True (its output
    is a step tensor), or None (not linear in its step operands: analog, on decoded values)."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in LINK_OPS:
        return None
    stepped = [i for i in node.input if i in step]
    if node.op_type == "Mul" and len(stepped) > 1:
        return None
    if node.op_type == "Div" and node.input[1] in step:
        return None
    if node.op_type == "Slice" and any(i in step or (i and i not in constants) for i in node.input[1:]):
        return None
    return True
