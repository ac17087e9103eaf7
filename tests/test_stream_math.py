"""The specified arithmetic of delta streams (``runtimes.stream_math``): accurate against numpy's float64
functions, the numba fast path and torch (``snntorch_stream.TorchMath``) give its bits exactly."""

import numpy as np
import pytest
from onnx import helper

from runtimes import stream_math, stream_math_compiled
from runtimes.stream_math import Math

ACTIVATIONS = {"Tanh": np.tanh, "Sin": np.sin, "Cos": np.cos, "Exp": np.exp,
               "Sigmoid": lambda x: 1 / (1 + np.exp(-x))}
EDGES = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-300, -1e-20, 5e-9, 709.7, 710.0, -745.0, -746.5,
                  800.0, 20.0, 40.0, -1e5, 1e6, 3e300])


def _sweep():
    return np.concatenate([np.linspace(-30, 30, 200_001), -np.logspace(-12, 1, 1001), EDGES])


def assert_same_bits(got, want, message=""):
    """Equal bit for bit, NaNs aside (their sign and payload are no value)."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=message)
    keep = ~np.isnan(want)
    np.testing.assert_array_equal(got[keep].view(np.int64), want[keep].view(np.int64), err_msg=message)


def _run(op, x, m=Math):
    with np.errstate(over="ignore", invalid="ignore"):
        return stream_math.kernel(helper.make_node(op, ["x"], ["y"]), m)([x])[0]


@pytest.mark.parametrize("op", sorted(ACTIVATIONS))
def test_activations_are_accurate_in_float64(op):
    """|error| <= 4.5e-16 (Exp: relative, <= 3e-16) on [-30, 30]; NaN, ±inf and overflow as numpy's."""
    x = _sweep()
    got = _run(op, x)
    with np.errstate(over="ignore", invalid="ignore"):
        want = ACTIVATIONS[op](x)
    finite = np.abs(x) <= 30
    error = np.abs(got[finite] - want[finite])
    if op == "Exp":
        error = error / want[finite]
    assert error.max() <= (3e-16 if op == "Exp" else 4.5e-16), (op, error.max())
    special = ~np.isfinite(want) | (np.abs(x) > 1e5)
    np.testing.assert_array_equal(np.isnan(got[special]), np.isnan(want[special]))
    np.testing.assert_array_equal(got[np.isinf(want)], want[np.isinf(want)])


@pytest.mark.parametrize("op", sorted(ACTIVATIONS))
def test_compiled_activations_have_the_same_bits(op):
    x = _sweep()
    with np.errstate(over="ignore", invalid="ignore"):
        got = stream_math_compiled.kernel(helper.make_node(op, ["x"], ["y"]))([x])[0]
    assert_same_bits(got, _run(op, x))


def _contractions():
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.normal(size=s).astype(np.float32).astype(np.float64)
    x, w, c = rng.normal(size=(257, 33)), f32(33, 20), f32(20)
    return [("MatMul", {}, [x, w], x @ w),
            ("Gemm", {"transB": 1, "alpha": 0.5, "beta": 2.0}, [x, w.T.copy(), c], 0.5 * (x @ w) + 2 * c),
            ("MatMul", {}, [rng.normal(size=(3, 5, 7)), f32(7, 4)], None),
            ("Einsum", {"equation": "ir,jr->ij"}, [f32(40, 9), f32(30, 9)], None),
            ("Einsum", {"equation": "ir,jr,kr->ikj"}, [f32(6, 5), f32(7, 5), f32(4, 5)], None),
            ("ReduceSum", {"axes": [0, 2], "keepdims": 1}, [rng.normal(size=(6, 5, 7))], None),
            ("ReduceMean", {"axes": [-1], "keepdims": 0}, [rng.normal(size=(6, 50))], None)]


def _numpy_reference(op, attrs, inputs):
    if op == "Einsum":
        return np.einsum(attrs["equation"], *inputs)
    if op == "MatMul":
        return np.matmul(*inputs)
    f = np.sum if op == "ReduceSum" else np.mean
    return f(inputs[0], axis=tuple(attrs["axes"]), keepdims=bool(attrs["keepdims"]))


@pytest.mark.parametrize("case", range(len(_contractions())))
def test_contractions_in_fixed_order(case):
    """Each contraction equals numpy's to rounding; the compiled MatMul gives the array form's bits."""
    op, attrs, inputs, want = _contractions()[case]
    node = helper.make_node(op, [f"i{k}" for k in range(len(inputs))], ["y"], **attrs)
    got = stream_math.kernel(node)(inputs)[0]
    want = _numpy_reference(op, attrs, inputs) if want is None else want
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    fast = stream_math_compiled.kernel(node)(inputs)[0]
    assert_same_bits(fast, got)


def test_torch_computes_the_same_bits():
    """Every specified op in torch equals the numpy array form bit for bit, which is the design's claim."""
    torch = pytest.importorskip("torch")
    from runtimes.snntorch_stream import TorchMath
    x = _sweep()
    for op in ACTIVATIONS:
        got = _run(op, torch.from_numpy(x), TorchMath).numpy()
        assert_same_bits(got, _run(op, x), op)
    for op, attrs, inputs, _ in _contractions():
        node = helper.make_node(op, [f"i{k}" for k in range(len(inputs))], ["y"], **attrs)
        got = stream_math.kernel(node, TorchMath)([torch.from_numpy(a) for a in inputs])[0].numpy()
        assert_same_bits(got, stream_math.kernel(node)(inputs)[0], op)


def test_torch_runs_natively_only_specified_or_ieee_exact_ops():
    """An op torch would run with its own library kernel must be specified here or exact in IEEE
    arithmetic; any other reaches the numpy reference's kernel (``snntorch_stream``)."""
    pytest.importorskip("torch")
    from runtimes import snntorch_backend as tb
    native = set(tb._BINARY) | set(tb._UNARY) | set(tb._VIEWS) | {"MatMul", "Gemm", "ReduceSum"}
    allowed = stream_math.SPECIFIED | stream_math.IEEE_EXACT
    assert native <= allowed, native - allowed
