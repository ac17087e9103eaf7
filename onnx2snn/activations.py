"""Pointwise activations between affine layers, found as elementwise subgraphs and evaluated numerically.

Given the input tensor ``e`` of an affine layer, the activation is the set S of nodes on the paths from
the previous affine layer's output ``z`` to ``e``.  It qualifies when every node of S is elementwise,
every input of a node is ``z``, another tensor of S, or a constant broadcastable to the units [n] (so h
may differ per unit), and no tensor of S but ``e`` is used outside S.  Then ``e = h(z)`` unit by unit,
with h evaluated by running S in onnxruntime: tanh, sin, swish ``x·σ(x)``, torch's softplus, GELU's Erf
form, or any other elementwise subgraph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import ModelError, first_line
from .graph_index import GraphIndex

ELEMENTWISE = {
    "Abs", "Acos", "Acosh", "Add", "And", "Asin", "Asinh", "Atan", "Atanh", "Cast", "Ceil", "Celu", "Clip",
    "Cos", "Cosh", "Div", "Elu", "Equal", "Erf", "Exp", "Floor", "Gelu", "Greater", "GreaterOrEqual",
    "HardSigmoid", "HardSwish", "Identity", "LeakyRelu", "Less", "LessOrEqual", "Log", "Max", "Min", "Mish",
    "Mul", "Neg", "Not", "Or", "Pow", "PRelu", "Reciprocal", "Relu", "Round", "Selu", "Sigmoid", "Sign",
    "Sin", "Sinh", "Softplus", "Softsign", "Sqrt", "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Where",
    "Xor",
}
LINEAR = {"Add", "Sub", "Mul", "Div", "Identity", "Neg", "Cast", "Sum"}


@dataclass
class Activation:
    """``output = h(input)`` unit by unit, computed by ``nodes`` (topological order)."""

    input: str
    output: str
    nodes: list[onnx.NodeProto]
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    opset: int = 17
    dtype: np.dtype = np.dtype(np.float32)
    _sessions: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        main = next((n for n in self.nodes if n.op_type not in LINEAR), self.nodes[0])
        return main.name

    @property
    def kind(self) -> str:
        ops = [n.op_type for n in self.nodes]
        kinds = set(ops)
        if len(ops) == 1:
            return ops[0]
        if kinds == {"Mul", "Sigmoid"} and len(ops) == 2:
            return "Swish"
        if "Softplus" in kinds and kinds <= {"Softplus", "Mul", "Div", "Greater", "Where"}:
            return "Softplus"
        if "Erf" in kinds or "Gelu" in kinds or (kinds <= {"Mul", "Add", "Tanh", "Pow", "Div"} and len(ops) > 4):
            return "Gelu"
        return "Subgraph(" + "+".join(ops) + ")"

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """h(z) for z [N, n] (unit j in column j); returns [N, n] in the model's dtype.

        Raises ``ModelError`` naming the activation when onnxruntime cannot evaluate it, when its output
        does not broadcast to [N, n], or when h is NaN or Inf at a finite z (calibration needs a finite h
        on the whole calibrated range, not only at the data)."""
        import onnxruntime as ort

        from .ann import session_options
        z = np.ascontiguousarray(z, dtype=self.dtype)
        where = f"activation '{self.name}' ({self.kind})"
        session = self._sessions.get((z.dtype, z.shape[1]))
        try:
            if session is None:
                elem = helper.np_dtype_to_tensor_dtype(z.dtype)
                graph = helper.make_graph(
                    self.nodes, "activation", [helper.make_tensor_value_info(self.input, elem, ["N", z.shape[1]])],
                    [helper.make_tensor_value_info(self.output, elem, None)],
                    [numpy_helper.from_array(v, k) for k, v in self.constants.items()])
                model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
                model.ir_version = 10
                session = ort.InferenceSession(model.SerializeToString(), session_options(),
                                               providers=["CPUExecutionProvider"])
                self._sessions[(z.dtype, z.shape[1])] = session
            out = session.run([self.output], {self.input: z})[0]
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"{where}: onnxruntime cannot evaluate it: {first_line(e)}") from None
        try:
            out = np.broadcast_to(out, z.shape)
        except ValueError:
            raise ModelError(f"{where}: its output of shape {list(np.shape(out))} is not one value per unit "
                             f"{list(z.shape)}") from None
        if np.asarray(out).dtype.kind not in "fiub":
            raise ModelError(f"{where}: its output has dtype {np.asarray(out).dtype}, not real numbers")
        with np.errstate(over="ignore", invalid="ignore"):
            out = out.astype(z.dtype, copy=False)
        bad = ~np.isfinite(out) & np.isfinite(z)
        if bad.any():
            k = np.argwhere(bad)[0]
            raise ModelError(f"{where}: h(z) is NaN or Inf at z = {float(z[tuple(k)]):g} (unit {int(k[-1])}); "
                             f"the activation must be finite on the calibrated range")
        return out


def find_activation(e: str, affine_outputs: set[str], g: GraphIndex) -> tuple[Activation | None, str]:
    """The activation producing ``e`` from an affine output, or (None, reason it does not qualify)."""
    if e in affine_outputs:
        return None, "no activation between two affine layers (linear)"
    if e not in g.producer:
        return None, "its input is not computed by a previous layer"
    nodes: dict[int, onnx.NodeProto] = {}
    sources: set[str] = set()
    constants: dict[str, np.ndarray] = {}
    stack = [g.producer[e]]
    while stack:
        node = stack.pop()
        if id(node) in nodes:
            continue
        if node.op_type not in ELEMENTWISE or node.domain not in ("", "ai.onnx"):
            return None, f"node '{node.name}' ({node.op_type}) is not elementwise"
        nodes[id(node)] = node
        for name in filter(None, node.input):
            if name in affine_outputs:
                sources.add(name)
            elif name in g.constants:
                c = g.constants[name]
                if c.size > 1 and c.shape[-1] != c.size:
                    return None, f"node '{node.name}' uses constant '{name}' of shape {list(c.shape)}, not per unit"
                constants[name] = c
            elif name in g.producer:
                stack.append(g.producer[name])
            else:
                return None, f"it is computed from model input '{name}' (input preprocessing, evaluated once)"
    if len(sources) != 1:
        return None, "it combines several layers' outputs" if sources else "it does not start at an affine layer"
    z = sources.pop()
    ordered = sorted(nodes.values(), key=lambda n: g.order[id(n)])
    inside = {o for n in ordered for o in n.output}
    for name in (inside - {e}) | {z}:
        outside = [c for c in g.consumers.get(name, []) if id(c) not in nodes]
        if outside or (name in g.outputs and name != e):
            user = outside[0].name if outside else "a graph output"
            return None, f"tensor '{name}' inside the activation is also used by {user}"
    if all(n.op_type in LINEAR for n in ordered):
        return None, "only linear elementwise ops between the affine layers"
    return Activation(input=z, output=e, nodes=ordered, constants=constants, opset=g.opset,
                      dtype=_float_type(z, g)), ""


def _float_type(name: str, g: GraphIndex) -> np.dtype:
    """The dtype of tensor ``name``: that of the float constants or inputs of the model."""
    floats = [c.dtype for c in g.constants.values() if c.dtype.kind == "f" and c.ndim == 2]
    return floats[0] if floats else np.dtype(np.float32)


def activation_after(source: str, sources: set[str], g: GraphIndex) -> Activation | None:
    """The pointwise activation that starts at tensor ``source``: of the tensors reachable from it through
    elementwise nodes, the last in graph order that ``find_activation`` accepts with ``source`` as its only
    source (``sources``: the tensors a backward walk stops at, ``source`` among them); None if there is none.
    Finds tanh(z), sin(30·z), swish z·σ(z) alike, and stops before a sum with another layer's output."""
    reached, todo, seen = [], [source], set()
    while todo:
        for node in g.consumers.get(todo.pop(), []):
            if id(node) in seen or node.op_type not in ELEMENTWISE or node.domain not in ("", "ai.onnx"):
                continue
            seen.add(id(node))
            reached.append(node)
            todo.extend(node.output)
    for node in sorted(reached, key=lambda n: g.order[id(n)], reverse=True):
        for e in node.output:
            activation, _ = find_activation(e, sources, g)
            if activation is not None and activation.input == source:
                return activation
    return None
