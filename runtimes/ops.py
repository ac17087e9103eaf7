"""Numpy kernels for ONNX nodes.

Ops on the time-stepped path (the ones the converter writes: MatMul, Gemm, Add, Mul, ReduceSum, Squeeze,
and the elementwise arithmetic) have direct numpy kernels; any other standard op runs through the ONNX
reference implementation (``onnx.reference``) of that single node, so the numpy runtime accepts every op
onnx itself can evaluate.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator

Kernel = Callable[[Sequence[np.ndarray | None]], list[np.ndarray]]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _gemm(node: onnx.NodeProto) -> Kernel:
    at = _attrs(node)
    alpha, beta = at.get("alpha", 1.0), at.get("beta", 1.0)
    trans_a, trans_b = at.get("transA", 0), at.get("transB", 0)

    def run(x):
        a, b = (x[0].T if trans_a else x[0]), (x[1].T if trans_b else x[1])
        y = a @ b
        if alpha != 1.0:
            y = y * np.asarray(alpha, y.dtype)
        if len(x) > 2 and x[2] is not None:
            y = y + (x[2] if beta == 1.0 else x[2] * np.asarray(beta, y.dtype))
        return [y]
    return run


def _matmul(x: Sequence[np.ndarray]) -> list[np.ndarray]:
    """A @ B, keeping A's layout for 2-D operands: an F-ordered A (the numpy runtime's spiking layers
    write their values so, ``compact``) gives the F-ordered (Bᵀ·Aᵀ)ᵀ, so that the IF layer it feeds reads
    its current [n, points] with no transposing copy.  Same products; BLAS may sum them in another order."""
    a, b = x[0], x[1]
    if a.ndim == 2 and b.ndim == 2 and a.flags.f_contiguous and not a.flags.c_contiguous:
        return [np.matmul(b.T, a.T).T]
    return [np.matmul(a, b)]


def _reduce_sum(node: onnx.NodeProto, opset: int) -> Kernel:
    at = _attrs(node)
    keep = bool(at.get("keepdims", 1))

    def run(x):
        axes = at.get("axes") if opset < 13 else (x[1] if len(x) > 1 and x[1] is not None else None)
        axis = None if axes is None or len(axes) == 0 else tuple(int(a) for a in np.ravel(axes))
        if axis is None and at.get("noop_with_empty_axes", 0):
            return [x[0]]
        return [np.sum(x[0], axis=axis, keepdims=keep)]
    return run


def _squeeze(node: onnx.NodeProto, opset: int) -> Kernel:
    at = _attrs(node)

    def run(x):
        axes = at.get("axes") if opset < 13 else (x[1] if len(x) > 1 and x[1] is not None else None)
        if axes is None:
            return [np.squeeze(x[0])]
        return [np.squeeze(x[0], axis=tuple(int(a) for a in np.ravel(axes)))]
    return run


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}
_UNARY = {"Tanh": np.tanh, "Sin": np.sin, "Cos": np.cos, "Exp": np.exp, "Neg": np.negative,
          "Identity": lambda a: a}


def _reference_kernel(node: onnx.NodeProto, opsets: dict[str, int]) -> Kernel:
    """Run one node through ``onnx.reference``; the evaluator is built on first use for the input dtypes."""
    cache: dict[tuple, ReferenceEvaluator] = {}

    def run(x):
        key = tuple(None if a is None else a.dtype for a in x)
        if key not in cache:
            inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), None)
                      for name, a in zip(node.input, x) if name and a is not None]
            outputs = [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None)
                       for name in node.output if name]
            graph = helper.make_graph([node], f"node_{node.name}", inputs, outputs)
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
            cache[key] = ReferenceEvaluator(model)
        feeds = {name: a for name, a in zip(node.input, x) if name and a is not None}
        return list(cache[key].run(None, feeds))
    return run


def make_kernel(node: onnx.NodeProto, opsets: dict[str, int]) -> Kernel:
    """The numpy kernel for a standard-domain node."""
    op, opset = node.op_type, opsets.get("", 1)
    if op in _BINARY:
        f = _BINARY[op]
        return lambda x: [f(x[0], x[1])]
    if op in _UNARY:
        f = _UNARY[op]
        return lambda x: [f(x[0])]
    if op == "MatMul":
        return _matmul
    if op == "Gemm":
        return _gemm(node)
    if op == "ReduceSum":
        return _reduce_sum(node, opset)
    if op == "Squeeze":
        return _squeeze(node, opset)
    return _reference_kernel(node, opsets)
