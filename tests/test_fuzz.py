"""Fuzzing the command line with broken models and calibration data.

Every case mutates a valid fixture (bytes, nodes, attributes, input shapes, initializers, domain metadata)
or feeds bad calibration arrays, runs ``onnx2snn.cli.main`` in-process in a fresh folder and requires
either success (exit 0, the artifact and report written, the input untouched) or a clean error (exit 1,
exactly one line ``onnx2snn: error: ...`` besides progress lines, no traceback, the folder exactly as it
was): never an uncaught exception, never a hang, never a partial output file.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from conftest import FIXTURES
from onnx2snn.cli import main

BASES = {name: (FIXTURES / f"{name}.onnx").read_bytes()
         for name in ("torch_tanh_gemm", "torch_sin", "tf_tanh_mlp", "jax_flax_tanh")}
FEATURES = {"torch_tanh_gemm": 2, "torch_sin": 1, "tf_tanh_mlp": 2, "jax_flax_tanh": 2}
CHEAP = ["--samples", "64", "--validation-points", "32", "-T", "4", "--pieces", "2"]
CASE_SECONDS = 20     # a case that runs longer is a hang
MESSAGES = os.environ.get("ONNX2SNN_FUZZ_MESSAGES")   # file to append every error line to (review aid)
SCALE = float(os.environ.get("ONNX2SNN_FUZZ_SCALE", "1"))   # longer local runs: ONNX2SNN_FUZZ_SCALE=20
RANDOM = os.environ.get("ONNX2SNN_FUZZ_RANDOM") == "1"       # fresh random cases instead of the fixed ones


def fuzz(examples: int):
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, derandomize=not RANDOM,
                    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` in the library swallows it."""


def _alarm(signum, frame):
    raise Hang(f"a case ran longer than {CASE_SECONDS} s")


@contextlib.contextmanager
def _native_stderr(sink: list[str]):
    """Capture file descriptor 2 too (onnxruntime and onnx log from C++, past ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            sink.append(f.read().decode(errors="replace"))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def run_case(model_bytes: bytes, calib=None, extra: tuple[str, ...] = ()) -> tuple[int, str]:
    """Convert ``model_bytes`` (with ``calib``: an array, or raw bytes of a .npy file) and check the
    outcome; returns (exit code, stderr)."""
    with tempfile.TemporaryDirectory(prefix="onnx2snn-fuzz-") as folder:
        folder = Path(folder)
        model = folder / "model.onnx"
        model.write_bytes(model_bytes)
        argv = [str(model), "-o", str(folder / "out.snn.onnx"), "--report-json", str(folder / "report.json"),
                *CHEAP, *extra]
        if calib is not None:
            target = folder / ("calib.npz" if isinstance(calib, dict) else "calib.npy")
            if isinstance(calib, bytes):
                target.write_bytes(calib)
            elif isinstance(calib, dict):
                np.savez(target, **calib)
            else:
                np.save(target, calib)
            argv += ["--calib", str(target)]
        before = _snapshot(folder)
        out, err, native = io.StringIO(), io.StringIO(), []
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(CASE_SECONDS)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _native_stderr(native):
                code = main(argv)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        after = _snapshot(folder)
    text = err.getvalue() + "".join(native)
    problems = [line for line in text.splitlines() if line.strip() and not line.startswith("[onnx2snn]")]
    assert code in (0, 1), f"exit {code}: {text}"
    assert "Traceback" not in text, text
    for name, content in before.items():
        assert after.get(name) == content, f"{name} was modified or removed"
    if code == 0:
        assert not problems, text
        assert set(after) == set(before) | {"out.snn.onnx", "report.json"}, sorted(after)
        onnx.load_from_string(after["out.snn.onnx"])
    else:
        assert len(problems) == 1 and problems[0].startswith("onnx2snn: error: "), text
        assert after.keys() == before.keys(), f"left behind: {sorted(set(after) - set(before))}"
        if MESSAGES:
            with open(MESSAGES, "a") as log:
                log.write(problems[0] + "\n")
    return code, text


def _model(base: str) -> onnx.ModelProto:
    return onnx.ModelProto.FromString(BASES[base])


def _index(data, sequence, label: str) -> int:
    return data.draw(st.integers(0, len(sequence) - 1), label=label)


bases = st.sampled_from(sorted(BASES))

# --- bytes ---------------------------------------------------------------------------------------------


@fuzz(170)
@given(base=bases, data=st.data())
def test_byte_mutations(base, data):
    blob = bytearray(BASES[base])
    kind = data.draw(st.sampled_from(["flip", "overwrite", "truncate", "splice"]), label="kind")
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            bit = data.draw(st.integers(0, len(blob) * 8 - 1), label="bit")
            blob[bit // 8] ^= 1 << (bit % 8)
    elif kind == "overwrite":
        at = data.draw(st.integers(0, len(blob) - 1), label="offset")
        chunk = data.draw(st.binary(min_size=1, max_size=16), label="bytes")
        blob[at:at + len(chunk)] = chunk
    elif kind == "truncate":
        blob = blob[:data.draw(st.integers(0, len(blob) - 1), label="length")]
    else:   # a chunk of the file repeated elsewhere (duplicated protobuf fields)
        start = data.draw(st.integers(0, len(blob) - 1), label="start")
        chunk = blob[start:start + data.draw(st.integers(1, 200), label="size")]
        at = data.draw(st.integers(0, len(blob)), label="at")
        blob[at:at] = chunk
    run_case(bytes(blob))


# --- nodes ---------------------------------------------------------------------------------------------

OPS = ["Relu", "Sigmoid", "Tanh", "Sin", "Cos", "Exp", "Log", "Abs", "Sqrt", "Reciprocal", "Neg", "Erf",
       "Softplus", "Elu", "LeakyRelu", "PRelu", "Clip", "Pow", "Where", "Cast", "Max", "Sum", "MatMul", "Gemm",
       "Add", "Mul", "Sub", "Div", "Concat", "Einsum", "Softmax", "Reshape", "Transpose", "Flatten", "Split",
       "Gather", "Unsqueeze", "Conv", "BatchNormalization", "Dropout", "LSTM", "Loop", "If", "Scan", "NotAnOp"]


def _edit_node(model: onnx.ModelProto, data) -> None:
    nodes = model.graph.node
    if not nodes:
        return
    k = _index(data, nodes, "node")
    node = nodes[k]
    kind = data.draw(st.sampled_from(["op_type", "drop_input", "duplicate_input", "missing_input",
                                      "empty_input", "delete", "duplicate", "swap", "cycle", "rename_output",
                                      "domain", "drop_output", "same_name"]), label="edit")
    if kind == "op_type":
        node.op_type = data.draw(st.sampled_from(OPS), label="op")
    elif kind == "drop_input" and node.input:
        del node.input[_index(data, node.input, "input")]
    elif kind == "duplicate_input" and node.input:
        node.input.append(node.input[_index(data, node.input, "input")])
    elif kind == "missing_input" and node.input:
        node.input[_index(data, node.input, "input")] = "no_such_tensor"
    elif kind == "empty_input" and node.input:
        node.input[_index(data, node.input, "input")] = ""
    elif kind == "delete":
        del nodes[k]
    elif kind == "duplicate":
        nodes.add().CopyFrom(node)
    elif kind == "swap":
        j = _index(data, nodes, "other")
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(nodes[k])
        b.CopyFrom(nodes[j])
        nodes[k].CopyFrom(b)
        nodes[j].CopyFrom(a)
    elif kind == "cycle" and node.input:     # read a tensor produced by this node or a later one
        later = nodes[data.draw(st.integers(k, len(nodes) - 1), label="later")]
        node.input[0] = later.output[0]
    elif kind == "rename_output":
        node.output[0] = data.draw(st.sampled_from(["renamed", node.input[0] if node.input else "x", "x", ""]),
                                   label="output")
    elif kind == "domain":
        node.domain = data.draw(st.sampled_from(["com.microsoft", "custom.fuzz", "onnx2snn", "ai.onnx.ml"]),
                                label="domain")
    elif kind == "drop_output":
        del node.output[:]
    elif kind == "same_name" and len(nodes) > 1:
        node.name = nodes[(k + 1) % len(nodes)].name


@fuzz(110)
@given(base=bases, data=st.data())
def test_node_edits(base, data):
    model = _model(base)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        _edit_node(model, data)
    run_case(model.SerializeToString())


# --- attributes ----------------------------------------------------------------------------------------

VALUES = [0, 1, 2, -1, 2 ** 40, 0.0, -1.0, 0.5, 1e38, 1e-45, math.nan, math.inf, -math.inf, "text", [1, 2],
          [0.5, 0.25], b"\x00"]


@fuzz(70)
@given(base=bases, data=st.data())
def test_attribute_edits(base, data):
    model = _model(base)
    nodes = model.graph.node
    for _ in range(data.draw(st.integers(1, 2), label="edits")):
        node = nodes[_index(data, nodes, "node")]
        kind = data.draw(st.sampled_from(["set", "activation", "clear"]), label="kind")
        if kind == "clear":
            del node.attribute[:]
            continue
        if kind == "activation":    # an activation with parameters, e.g. LeakyRelu(alpha=NaN)
            node.op_type = data.draw(st.sampled_from(["LeakyRelu", "Elu", "Selu", "Celu", "HardSigmoid",
                                                      "ThresholdedRelu", "Gemm"]), label="op")
        name = data.draw(st.sampled_from(["alpha", "beta", "gamma", "transA", "transB", "axis", "foo"]),
                         label="name")
        value = data.draw(st.sampled_from(VALUES), label="value")
        for k, attribute in enumerate(node.attribute):
            if attribute.name == name:
                del node.attribute[k]
                break
        node.attribute.append(helper.make_attribute(name, value))
    run_case(model.SerializeToString())


# --- input shapes and types ----------------------------------------------------------------------------

DIMS = [-1, -7, 0, 1, 2, 3, 1000, 2 ** 31, 2 ** 40, 2 ** 62, "F", None]


def _set_dim(dim, value) -> None:
    dim.Clear()
    if isinstance(value, str):
        dim.dim_param = value
    elif value is not None:
        dim.dim_value = value


@fuzz(70)
@given(base=bases, data=st.data())
def test_input_shape_edits(base, data):
    model = _model(base)
    graph = model.graph
    value = graph.input[0] if data.draw(st.booleans(), label="input") else graph.output[0]
    kind = data.draw(st.sampled_from(["dim", "feature_dim", "rank", "no_shape", "elem_type", "remove",
                                      "extra_input"]), label="kind")
    shape = value.type.tensor_type.shape
    if kind == "dim" and shape.dim:
        _set_dim(shape.dim[_index(data, shape.dim, "axis")], data.draw(st.sampled_from(DIMS), label="dim"))
    elif kind == "feature_dim" and shape.dim:      # dynamic or absurd feature count
        _set_dim(shape.dim[-1], data.draw(st.sampled_from(["F", None, 0, -2, 2 ** 40, 7]), label="dim"))
    elif kind == "rank":
        dims = data.draw(st.lists(st.sampled_from(DIMS), max_size=5), label="dims")
        del shape.dim[:]
        for d in dims:
            _set_dim(shape.dim.add(), d)
    elif kind == "no_shape":
        value.type.tensor_type.ClearField("shape")
    elif kind == "elem_type":
        value.type.tensor_type.elem_type = data.draw(st.sampled_from(
            [0, TensorProto.INT64, TensorProto.INT32, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BOOL,
             TensorProto.STRING, TensorProto.BFLOAT16, TensorProto.COMPLEX64, 99]), label="elem")
    elif kind == "remove":
        container = graph.input if value in graph.input else graph.output
        container.remove(value)
    else:
        graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["batch", 2]))
    run_case(model.SerializeToString())


# --- initializers --------------------------------------------------------------------------------------


@fuzz(90)
@given(base=bases, data=st.data())
def test_initializer_edits(base, data):
    model = _model(base)
    inits = model.graph.initializer
    tensor = inits[_index(data, inits, "initializer")]
    array = numpy_helper.to_array(tensor).copy()
    kind = data.draw(st.sampled_from(["nonfinite", "huge", "reshape", "dtype", "empty", "scalar", "dims",
                                      "data_type", "remove", "duplicate", "as_input", "external"]), label="kind")
    if kind == "nonfinite":
        array.flat[_index(data, array.ravel(), "element")] = data.draw(
            st.sampled_from([np.nan, np.inf, -np.inf]), label="value")
    elif kind == "huge":
        array = (array * data.draw(st.sampled_from([1e30, 3e38, -1e38, 1e-40]), label="scale")).astype(array.dtype)
    elif kind == "reshape":
        shape = data.draw(st.sampled_from(["T", "flat", "extra", "other"]), label="shape")
        if shape == "T":
            array = np.ascontiguousarray(array.T)
        elif shape == "flat":
            array = array.reshape(-1)
        elif shape == "extra":
            array = array[None]
        else:
            array = np.resize(array, data.draw(st.lists(st.integers(1, 20), min_size=1, max_size=3), label="dims"))
    elif kind == "dtype":
        array = array.astype(data.draw(st.sampled_from([np.int64, np.int32, np.float64, np.float16, np.bool_,
                                                        np.uint8]), label="dtype"))
    elif kind == "empty":
        array = np.zeros((0,) + array.shape[1:], array.dtype)
    elif kind == "scalar":
        array = np.asarray(array.ravel()[0])
    if kind in ("dims", "data_type", "remove", "duplicate", "as_input", "external"):
        if kind == "dims":      # declared dims that do not match the stored data
            del tensor.dims[:]
            tensor.dims.extend(data.draw(st.lists(st.sampled_from([0, 1, 3, 16, 2 ** 20, 2 ** 40, -4]),
                                                  max_size=3), label="dims"))
        elif kind == "data_type":
            tensor.data_type = data.draw(st.integers(0, 30), label="data_type")
        elif kind == "remove":
            inits.remove(tensor)
        elif kind == "duplicate":
            inits.add().CopyFrom(tensor)
        elif kind == "as_input":   # IR < 4 style: the weight is also a graph input
            model.graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type,
                                                                   list(tensor.dims)))
        else:
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
            location = data.draw(st.sampled_from(["w.bin", "/etc/hostname", "../w.bin", ""]), label="location")
            tensor.external_data.add(key="location", value=location)
    else:
        tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    run_case(model.SerializeToString())


# --- domain metadata -----------------------------------------------------------------------------------

DOMAINS = ["x=-1e300:1e300,0:1", "x=-3e38:3e38,-3e38:3e38", "x=0:1e-300,0:1e-300", "x=nan:1,0:1", "x=-1:1",
           "x=1e308:1.7e308,0:1", "", "x", ";", "y=-1:1,0:1", "x=-1:1,0:1;x=0:1,0:1", "x=0:1e-30,0:1e-30",
           "x=-1:1,0:1,0:1", "x=-1e20:1e20,0:1"]


@fuzz(40)
@given(base=bases, data=st.data())
def test_domain_edits(base, data):
    model = _model(base)
    text = data.draw(st.sampled_from(DOMAINS), label="domain")
    if FEATURES[base] == 1:
        text = text.replace(",0:1e-300", "").replace(",0:1e-30", "").replace(",0:1", "").replace(",-3e38:3e38", "")
    if data.draw(st.booleans(), label="metadata"):
        del model.metadata_props[:]
        model.metadata_props.add(key="onnx2snn.domain", value=text)
        run_case(model.SerializeToString())
    else:
        run_case(model.SerializeToString(), extra=("--domain", text))


# --- calibration arrays --------------------------------------------------------------------------------


@fuzz(100)
@given(base=bases, data=st.data())
def test_calibration_arrays(base, data):
    features = FEATURES[base]
    rows = data.draw(st.sampled_from([1, 2, 64]), label="rows")
    rng = np.random.default_rng(data.draw(st.integers(0, 3), label="seed"))
    array = rng.uniform(0, 1, (rows, features)).astype(np.float32)
    kind = data.draw(st.sampled_from(["valid", "nonfinite", "rank", "features", "empty", "dtype", "huge",
                                      "constant", "npz", "corrupt", "strings"]), label="kind")
    calib = array
    if kind == "nonfinite":
        array.flat[_index(data, array.ravel(), "element")] = data.draw(
            st.sampled_from([np.nan, np.inf, -np.inf]), label="value")
    elif kind == "rank":
        calib = data.draw(st.sampled_from([array[0, 0], array.ravel(), array[None], array[:, None, :],
                                           array.reshape(rows, features, 1)]), label="shape")
    elif kind == "features":
        calib = rng.uniform(0, 1, (rows, data.draw(st.sampled_from([0, 3, 5]), label="features")))
    elif kind == "empty":
        calib = np.zeros(data.draw(st.sampled_from([(0, features), (0,), (rows, 0), (0, 0)]), label="shape"),
                         np.float32)
    elif kind == "dtype":
        calib = array.astype(data.draw(st.sampled_from([np.int64, np.int8, np.uint8, np.bool_, np.float16,
                                                        np.float64, np.complex64]), label="dtype"))
    elif kind == "huge":
        calib = array.astype(np.float64) * data.draw(st.sampled_from([1e30, 1e39, -1e300, 3e38]), label="scale")
    elif kind == "constant":
        calib = np.full_like(array, data.draw(st.sampled_from([0.0, 0.5, 1e6]), label="value"))
    elif kind == "npz":
        calib = {data.draw(st.sampled_from(["x", "X", "arr_0"]), label="key"): array}
        if data.draw(st.booleans(), label="second"):
            calib["t"] = array
    elif kind == "corrupt":
        buffer = io.BytesIO()
        np.save(buffer, array)
        blob = buffer.getvalue()
        calib = blob[:data.draw(st.integers(0, len(blob) - 1), label="length")]
    elif kind == "strings":
        calib = np.array([["a"] * features] * rows)
    run_case(BASES[base], calib=calib)


def test_valid_model_converts_under_the_harness():
    """The harness itself: an unmodified fixture succeeds, so the fuzz cases above do reach conversion."""
    for blob in BASES.values():
        assert run_case(blob)[0] == 0


@pytest.mark.parametrize("blob", [b"", b"\x08", b"\x00" * 64, b"\xff" * 64])
def test_tiny_garbage_files(blob):
    assert run_case(blob)[0] == 1
