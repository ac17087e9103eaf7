"""The numpy reference's fast path for ``stream_math``: its MatMul and activations as numba loops doing the
same float64 operations in the same order (no fast-math, so no FMA contraction and no reassociation),
hence the same bits as ``stream_math``'s array form (``tests/test_stream_math.py``).  ``kernel(node)``
returns None when the node is not one ``stream_math`` specifies; without numba it is ``stream_math.kernel``.

MatMul of 2-D operands, y [N, n] = A [N, K] · B [K, n]: for each row i, y[i, :] = A[i, 0]·B[0, :], then
y[i, :] += A[i, k]·B[k, :] for k = 1, ..., K-1 (vectorised over j, each sum still left to right in k).
"""

from __future__ import annotations

import numpy as np
import onnx

from . import kernels, stream_math

if kernels.available:
    from numba import njit, vectorize
    _inline = njit(cache=True, inline="always")
else:                       # pragma: no cover - numba is a dependency; ``stream_math`` runs instead
    def _inline(f):
        return f

# Horner's rule as ``stream_math._horner``: start from the last coefficient, then the others, last to first.
_E_LAST, _EXPM1 = stream_math.EXPM1_COEFFICIENTS[-1], tuple(reversed(stream_math.EXPM1_COEFFICIENTS[:-1]))
_S_LAST, _SIN = stream_math.SIN_COEFFICIENTS[-1], tuple(reversed(stream_math.SIN_COEFFICIENTS[:-1]))
_C_LAST, _COS = stream_math.COS_COEFFICIENTS[-1], tuple(reversed(stream_math.COS_COEFFICIENTS[:-1]))


@_inline
def _reduce_ln2(x):
    n = np.rint(x * stream_math.INV_LN2)
    r = (x - n * stream_math.LN2_1) - n * stream_math.LN2_2
    p = _E_LAST
    for c in _EXPM1:
        p = p * r + c
    return n, r + (r * r) * p


@_inline
def _pow2(n):
    return np.ldexp(1.0, np.int64(0 if np.isnan(n) else n))


@_inline
def _expm1(x):
    n, q = _reduce_ln2(x)
    e = _pow2(n)
    return e * q + (e - 1.0)


@_inline
def _exp(x):
    if x < -746.0:
        x = -746.0
    elif x > 710.0:
        x = 710.0
    n, q = _reduce_ln2(x)
    half = np.floor(n * 0.5)
    return (_pow2(half) * (1.0 + q)) * _pow2(n - half)


def _tanh(x):
    v = -2.0 * abs(x)
    if v < -80.0:
        v = -80.0
    e = _expm1(v)
    t = -e / (e + 2.0)
    return -t if x < 0 else t


def _sigmoid(x):
    return 1.0 / (1.0 + _exp(-x))


@_inline
def _quadrant(x, shift):
    n = np.rint(x * stream_math.INV_PIO2)
    r = ((x - n * stream_math.PIO2_1) - n * stream_math.PIO2_2) - n * stream_math.PIO2_3
    r2 = r * r
    ps = _S_LAST
    for c in _SIN:
        ps = ps * r2 + c
    pc = _C_LAST
    for c in _COS:
        pc = pc * r2 + c
    s, c = r + (r2 * r) * ps, 1.0 + r2 * pc
    q = n - 4.0 * np.floor(n * 0.25) + shift
    if q == 0.0 or q == 4.0:
        return s
    if q == 1.0:
        return c
    if q == 2.0:
        return -s
    return -c                      # q == 3 (or NaN, as ``stream_math._select``)


def _sin(x):
    return _quadrant(x, 0.0)


def _cos(x):
    return _quadrant(x, 1.0)


def _matmul(a, b, y):
    N, K = a.shape
    n = b.shape[1]
    for i in range(N):
        for j in range(n):
            y[i, j] = a[i, 0] * b[0, j]
        for k in range(1, K):
            aik = a[i, k]
            for j in range(n):
                y[i, j] = y[i, j] + aik * b[k, j]


_UFUNCS, _matmul_loop = {}, None
if kernels.available:
    _UFUNCS = {op: vectorize(["float64(float64)"], cache=True)(getattr(f, "py_func", f)) for op, f in
               (("Tanh", _tanh), ("Exp", _exp), ("Sigmoid", _sigmoid), ("Sin", _sin), ("Cos", _cos))}
    _matmul_loop = njit(cache=True, nogil=True)(_matmul)


def matmul(a, b):
    """``stream_math.matmul(stream_math.Math, a, b)``; one compiled loop for float64 matrices [N, K]·[K, n]."""
    compiled = a.ndim == b.ndim == 2 and a.shape[1] > 0 and a.dtype == b.dtype == np.float64
    if _matmul_loop is None or not compiled:
        return stream_math.matmul(stream_math.Math, a, b)
    y = np.empty((a.shape[0], b.shape[1]), np.float64)
    _matmul_loop(np.ascontiguousarray(a), np.ascontiguousarray(b), y)
    return y


def kernel(node: onnx.NodeProto):
    """``stream_math.kernel(node)`` with the compiled loops (module docstring), or None."""
    f = _UFUNCS.get(node.op_type)
    if f is not None:
        reference = stream_math.kernel(node)
        return lambda x: [f(x[0])] if x[0].dtype == np.float64 else reference(x)
    return stream_math.kernel(node, contract=matmul)
