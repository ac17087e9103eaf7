"""The specified arithmetic of a delta stream (``spec``, coding "delta"): float64, and every value a fixed
sequence of IEEE-754 basic operations, so that any two runtimes compute the same bits.

Why: a delta neuron's event decision ``u >= a·θ`` flips when its activation moves by one unit in the last
place across a level, so the runtimes send the same spikes only if they compute the same activations bit
for bit.  IEEE 754 makes +, -, ×, ÷, sqrt, floor and round-to-integer correctly rounded, hence
implementation-independent; a library's MatMul (BLAS blocking, pairwise sums, FMA) or tanh (libm, SLEEF,
SVML, CUDA) is not.  So a delta stream evaluates:

* precision: every floating tensor in float64 (inputs, initializers and neuron parameters are upcast,
  which is exact for float32); the graph's outputs are cast back to their declared type;
* contractions in a fixed order, each product rounded, then added left to right (no FMA)::

      MatMul  y[i, j] = ((A[i, 0]·B[0, j] + A[i, 1]·B[1, j]) + ...) + A[i, K-1]·B[K-1, j]  (per batch index)
      Gemm    y = α·MatMul(A', B') + β·C      (the multiplications by α, β only when they differ from 1)
      ReduceSum / ReduceMean  ((x_0 + x_1) + ...) + x_{m-1}   over the reduced elements in C order; mean: / m
      Einsum  Σ over the contracted indices in lexicographic order, each term the product of the operands
              in their order ((x¹·x²)·x³)·...  (explicit equations, no repeated index within an operand)

* activations by these algorithms (constants are float64; c_k = 1/k! rounded; Horner's rule)::

      reduce   n = rint(x / ln2),  r = (x - n·L1) - n·L2     L1 + L2 = ln 2 (fdlibm's split: n·L1 exact)
      expm1    q = r + r²·(c2 + r·(c3 + ... + r·c14)),  e = 2^n (from its bits),  expm1(x) = e·q + (e - 1)
      Exp      exp(x) = (2^⌊n/2⌋ · (1 + q)) · 2^(n-⌊n/2⌋)             (x clipped to [-746, 710])
      Tanh     t = -m / (m + 2),  m = expm1(-2|x|)  (-2|x| clipped to -80);  tanh(x) = -t if x < 0 else t
      Sigmoid  1 / (1 + exp(-x))
      Sin/Cos  n = rint(x·2/π),  r = ((x - n·P1) - n·P2) - n·P3   (P1 + P2 + P3 = π/2, fdlibm's parts)
               s = r + r³·(-c3 + r²·(c5 - ...  c17)),  c = 1 + r²·(-c2 + r²·(c4 - ...  c18))
               sin x = (s, c, -s, -c)[n mod 4],  cos x = (c, -s, -c, s)[n mod 4]

  Against numpy's float64 functions on 2·10^5 points of [-30, 30]: |error| <= 4.5e-16 (tanh, sigmoid,
  sin, cos), relative <= 3e-16 (exp) (``tests/test_stream_math.py``), far below float32's 6e-8 (the error
  against the ANN: ``benchmarks/results/stream_arithmetic.md``).  The reduction of Sin/Cos is exact for |n| < 2^20 (|x| < 1.6e6);
  beyond, values stay deterministic but lose accuracy.

Every other op is either exact in IEEE arithmetic whatever the library (elementwise +, -, ×, ÷, neg, abs,
relu: ``IEEE_EXACT``, which torch runs natively; data movement) or, having no algorithm here (Erf, Log,
Pow, Softplus, ...), evaluated by the numpy reference's own kernel in every runtime, so that its bits are
the reference's (in torch on a GPU: a round trip through the host).

``Math`` is the vocabulary the algorithms need from an array library (numpy here; torch in
``snntorch_stream``); ``kernel(node, math)`` is a node's specified kernel, ``inputs -> outputs``, or None.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import onnx
from onnx import helper

from .chain import REARRANGING

SPECIFIED = frozenset({"MatMul", "Gemm", "ReduceSum", "ReduceMean", "Einsum", "Tanh", "Sin", "Cos", "Exp",
                       "Sigmoid"})
IEEE_EXACT = frozenset({"Add", "Sub", "Mul", "Div", "Neg", "Abs", "Relu", "Identity", *REARRANGING})

FACTORIAL = [1.0 / math.factorial(k) for k in range(19)]        # c_k = 1/k!, rounded once, shared by all
EXPM1_COEFFICIENTS = FACTORIAL[2:15]                               # c2 ... c14, Horner in r
SIN_COEFFICIENTS = [(-1) ** k * FACTORIAL[2 * k + 1] for k in range(1, 9)]    # -c3, c5, ..., c17, in r²
COS_COEFFICIENTS = [(-1) ** k * FACTORIAL[2 * k] for k in range(1, 10)]       # -c2, c4, ..., -c18, in r²
LN2_1, LN2_2, INV_LN2 = 6.93147180369123816490e-01, 1.90821492927058770002e-10, 1.44269504088896338700e+00
PIO2_1, PIO2_2, PIO2_3 = 1.57079632673412561417e+00, 6.07710050650619224932e-11, 2.02226624871116645580e-21
INV_PIO2 = 6.36619772367581382433e-01


class Math:
    """numpy's vocabulary of the algorithms (the torch one, ``snntorch_stream.TorchMath``, mirrors it)."""

    @staticmethod
    def rint(x):
        return np.rint(x)

    @staticmethod
    def floor(x):
        return np.floor(x)

    @staticmethod
    def where(c, a, b):
        return np.where(c, a, b)

    @staticmethod
    def clip(x, lo, hi):
        return np.clip(x, lo, hi)

    @staticmethod
    def pow2(n):
        """2^n for integer-valued float64 n in [-1022, 1023], from its exponent bits (NaN n: 1)."""
        n = np.where(np.isnan(n), 0.0, n)
        return ((n.astype(np.int64) + 1023) << 52).view(np.float64)

    @staticmethod
    def permute(x, order):
        return np.transpose(x, order)

    @staticmethod
    def moveaxis(x, source, destination):
        return np.moveaxis(x, source, destination)

    @staticmethod
    def zeros(shape, like):
        return np.zeros(shape, like.dtype)

    @staticmethod
    def host(x) -> np.ndarray:
        return np.asarray(x)


def _horner(x, coefficients):
    """((c_last·x + c_{last-1})·x + ...)·x + c_first."""
    acc = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        acc = acc * x + c
    return acc


def _reduce_ln2(m, x):
    n = m.rint(x * INV_LN2)
    r = (x - n * LN2_1) - n * LN2_2
    q = r + (r * r) * _horner(r, EXPM1_COEFFICIENTS)
    return n, q


def expm1(m, x):
    n, q = _reduce_ln2(m, x)
    e = m.pow2(n)
    return e * q + (e - 1.0)


def exp(m, x):
    n, q = _reduce_ln2(m, m.clip(x, -746.0, 710.0))
    half = m.floor(n * 0.5)
    return (m.pow2(half) * (1.0 + q)) * m.pow2(n - half)


def tanh(m, x):
    e = expm1(m, m.clip(-2.0 * abs(x), -80.0, 0.0))
    t = -e / (e + 2.0)
    return m.where(x < 0, -t, t)


def sigmoid(m, x):
    return 1.0 / (1.0 + exp(m, -x))


def _quadrants(m, x):
    n = m.rint(x * INV_PIO2)
    r = ((x - n * PIO2_1) - n * PIO2_2) - n * PIO2_3
    r2 = r * r
    s = r + (r2 * r) * _horner(r2, SIN_COEFFICIENTS)
    c = 1.0 + r2 * _horner(r2, COS_COEFFICIENTS)
    return n - 4.0 * m.floor(n * 0.25), s, c


def _select(m, quadrant, values):
    out = values[3]
    for k in (2, 1, 0):
        out = m.where(quadrant == k, values[k], out)
    return out


def sin(m, x):
    q, s, c = _quadrants(m, x)
    return _select(m, q, (s, c, -s, -c))


def cos(m, x):
    q, s, c = _quadrants(m, x)
    return _select(m, q, (c, -s, -c, s))


def matmul(m, a, b):
    """ONNX MatMul (numpy's broadcasting) with the products summed left to right over k."""
    vector_a, vector_b = a.ndim == 1, b.ndim == 1
    a = a[None, :] if vector_a else a
    b = b[:, None] if vector_b else b
    if a.shape[-1] == 0:
        y = m.zeros(tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2])) + (a.shape[-2], b.shape[-1]), a)
    else:
        y = a[..., :, 0:1] * b[..., 0:1, :]
        for k in range(1, a.shape[-1]):
            y = y + a[..., :, k:k + 1] * b[..., k:k + 1, :]
    if vector_a:
        y = y[..., 0, :]
    return y[..., 0] if vector_b else y


def reduce_sum(m, x, axes, keepdims: bool, mean: bool = False):
    """Σ (or mean) over ``axes`` (None: all), the reduced elements added left to right in C order."""
    axes = list(range(x.ndim)) if axes is None else sorted(a % x.ndim for a in axes)
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    kept = [d for i, d in enumerate(x.shape) if i not in axes]
    flat = m.moveaxis(x, axes, list(range(x.ndim - len(axes), x.ndim))).reshape(tuple(kept) + (count,))
    y = flat[..., 0] if count else m.zeros(tuple(kept), x)
    for i in range(1, count):
        y = y + flat[..., i]
    if mean:
        y = y / float(count)
    return y.reshape(tuple(1 if i in axes else d for i, d in enumerate(x.shape))) if keepdims else y


def einsum_terms(equation: str) -> tuple[list[str], str] | None:
    """(the operands' indices, the output's) of an explicit equation this module specifies, else None."""
    equation = equation.replace(" ", "")
    if "->" not in equation or "." in equation:
        return None
    inputs, output = equation.split("->")
    terms = inputs.split(",")
    if any(len(set(t)) != len(t) for t in terms + [output]) or not set(output) <= set("".join(terms)):
        return None
    return terms, output


def einsum(m, terms: list[str], output: str, operands):
    """Σ over the contracted indices (lexicographic) of ((x¹·x²)·...) broadcast on ``output``'s axes."""
    sizes = {c: int(x.shape[i]) for t, x in zip(terms, operands) for i, c in enumerate(t)}
    contracted = sorted({c for t in terms for c in t} - set(output))
    y = None
    for index in itertools.product(*(range(sizes[c]) for c in contracted)):
        at = dict(zip(contracted, index))
        term = None
        for t, x in zip(terms, operands):
            v = x[tuple(at.get(c, slice(None)) for c in t)]
            kept = [c for c in t if c not in at]
            v = m.permute(v, sorted(range(len(kept)), key=lambda i: output.index(kept[i])))
            v = v.reshape(tuple(sizes[c] if c in kept else 1 for c in output))
            term = v if term is None else term * v
        y = term if y is None else y + term
    return y


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _gemm(attrs: dict, contract):
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    trans_a, trans_b = attrs.get("transA", 0), attrs.get("transB", 0)

    def run(x):
        y = contract(x[0].T if trans_a else x[0], x[1].T if trans_b else x[1])
        if alpha != 1.0:
            y = y * alpha
        if len(x) > 2 and x[2] is not None:
            y = y + (x[2] if beta == 1.0 else x[2] * beta)
        return [y]
    return run


def _reduce(m, attrs: dict, mean: bool):
    keep = bool(attrs.get("keepdims", 1))

    def run(x):
        axes = attrs.get("axes")
        if axes is None and len(x) > 1 and x[1] is not None:
            axes = [int(a) for a in np.ravel(m.host(x[1]))]
        if not axes and attrs.get("noop_with_empty_axes", 0):
            return [x[0]]
        return [reduce_sum(m, x[0], axes or None, keep, mean)]
    return run


_ELEMENTWISE = {"Tanh": tanh, "Sin": sin, "Cos": cos, "Exp": exp, "Sigmoid": sigmoid}


def kernel(node: onnx.NodeProto, m=Math, contract=None):
    """The specified kernel ``inputs -> outputs`` of ``node`` in vocabulary ``m``, or None when the node is
    not one this module specifies (module docstring); ``contract(a, b)``: MatMul's and Gemm's product
    (default ``matmul`` in ``m``; a faster implementation must give its bits)."""
    op, attrs = node.op_type, _attributes(node)
    contract = contract or (lambda a, b: matmul(m, a, b))
    if op in _ELEMENTWISE:
        f = _ELEMENTWISE[op]
        return lambda x: [f(m, x[0])]
    if op == "MatMul":
        return lambda x: [contract(x[0], x[1])]
    if op == "Gemm":
        return _gemm(attrs, contract)
    if op in ("ReduceSum", "ReduceMean"):
        return _reduce(m, attrs, op == "ReduceMean")
    if op == "Einsum":
        equation = attrs["equation"]
        parsed = einsum_terms(equation.decode() if isinstance(equation, bytes) else equation)
        if parsed is not None:
            return lambda x: [einsum(m, *parsed, x)]
    return None
