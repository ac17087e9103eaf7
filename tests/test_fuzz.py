"""Fuzzing the command line with broken models and calibration data.

Every case mutates a valid fixture (bytes, nodes, attributes, input shapes, initializers, domain metadata)
or feeds bad calibration arrays, runs ``onnx2snn.cli.main`` in-process in a fresh folder (``convert``, and
``inspect`` for mutated models) and requires either success (exit 0, the artifact and report written with
finite numbers, nothing but progress on stderr, the input untouched) or a clean error (exit 1, exactly one
line ``onnx2snn: error: ...`` besides progress lines on stderr, C++ log lines and Python warnings counted,
nothing on stdout, no traceback, the folder exactly as it was): never an uncaught exception, never a hang,
never a partial output file.  ``FOUND`` pins each distinct failure the fuzzer found.

Longer or fresh runs: ``ONNX2SNN_FUZZ_SCALE=20`` (more cases), ``ONNX2SNN_FUZZ_RANDOM=1`` (random seed),
``ONNX2SNN_FUZZ_MESSAGES=file`` (append every error line there, to review the messages).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from conftest import FIXTURES
from onnx2snn.cli import main

FEATURES = {"torch_tanh_gemm": 2, "torch_sin": 1, "tf_tanh_mlp": 2, "jax_flax_tanh": 2}   # one input 'x'
OTHERS = ("torch_multi_io", "torch_tanh_rank1", "torch_tanh_rank3", "torch_fourier", "torch_separable")
BASES = {name: (FIXTURES / f"{name}.onnx").read_bytes() for name in (*FEATURES, *OTHERS)}
CHEAP = ["--samples", "64", "--validation-points", "32", "-T", "4", "--pieces", "2"]
OPTIONS = [(), (), (), ("--pieces", "1", "--neuron", "floor", "--readout", "spiking"), ("--pieces", "auto"),
           ("--calibration", "advanced"), ("--preset", "paper"), ("--threshold", "percentile:99"),
           ("--threshold", "mse"), ("--calibration", "light+potential"), ("--neuron", "floor", "--shift")]
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


def _call(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in-process under the hang alarm: (exit code, stdout, everything shown on stderr)."""
    out, err, native = io.StringIO(), io.StringIO(), []
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        # warnings are recorded, not shown: outside pytest each would be two more lines on stderr
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _native_stderr(native), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    text = err.getvalue() + "".join(native)
    text += "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught)
    return code, out.getvalue(), text


def _check_outcome(code: int, out: str, text: str) -> None:
    """Exit 0 with nothing but progress and warnings (an error above the promise: at T = 4, always) on
    stderr, or exit 1 with one error line and nothing on stdout."""
    problems = [line for line in text.splitlines()
                if line.strip() and not line.startswith(("[onnx2snn]", "onnx2snn: warning: "))]
    assert code in (0, 1), f"exit {code}: {text}"
    assert "Traceback" not in text, text
    if code == 0:
        assert not problems, text
    else:
        assert len(problems) == 1 and problems[0].startswith("onnx2snn: error: "), text
        assert not out, f"stdout on failure: {out}"
        if MESSAGES:
            with open(MESSAGES, "a") as log:
                log.write(problems[0] + "\n")


def run_case(model_bytes: bytes, calib=None, extra: tuple[str, ...] = (), inspect: bool = False) -> tuple[int, str]:
    """Convert ``model_bytes`` (with ``calib``: an array, a dict for an .npz, or the raw bytes of a .npy)
    in a fresh folder, then ``inspect`` it if asked, and check the outcomes; returns (exit code, stderr)
    of the conversion."""
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
        code, out, text = _call(argv)
        after = _snapshot(folder)
        if inspect:
            inspected, inspect_out, inspect_text = _call(["inspect", str(model)])
            _check_outcome(inspected, inspect_out, inspect_text)
            assert inspected == 0 or code == 1, f"converts but inspect fails: {inspect_text}"
            assert model.read_bytes() == model_bytes, "inspect modified the model"
    _check_outcome(code, out, text)
    for name, content in before.items():
        assert after.get(name) == content, f"{name} was modified or removed"
    if code == 0:
        assert set(after) == set(before) | {"out.snn.onnx", "report.json"}, sorted(after)
        artifact = onnx.load_from_string(after["out.snn.onnx"])
        for tensor in artifact.graph.initializer:     # inf thresholds are padding (runtimes/spec.py)
            array = numpy_helper.to_array(tensor)
            allowed = np.isinf(array) if tensor.name.endswith(("/theta_pos", "/theta_neg")) else False
            assert array.dtype.kind != "f" or np.all(np.isfinite(array) | allowed), f"'{tensor.name}' not finite"
        error = json.loads(after["report.json"])["validation"]["rel_l2_snn_vs_ann"]
        assert math.isfinite(error), f"reported relative L2 {error}"
    else:
        assert after.keys() == before.keys(), f"left behind: {sorted(set(after) - set(before))}"
    return code, text


def _model(base: str) -> onnx.ModelProto:
    return onnx.ModelProto.FromString(BASES[base])


def _index(data, sequence, label: str) -> int:
    return data.draw(st.integers(0, len(sequence) - 1), label=label)


bases = st.sampled_from(sorted(BASES))
single_input = st.sampled_from(sorted(FEATURES))
options = st.sampled_from(OPTIONS)

# --- bytes ---------------------------------------------------------------------------------------------


@fuzz(300)
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
    run_case(bytes(blob), inspect=True)


# --- nodes ---------------------------------------------------------------------------------------------

OPS = ["Relu", "Sigmoid", "Tanh", "Sin", "Cos", "Exp", "Log", "Abs", "Sqrt", "Reciprocal", "Neg", "Erf",
       "Softplus", "Elu", "LeakyRelu", "PRelu", "Clip", "Pow", "Where", "Cast", "Max", "Sum", "MatMul", "Gemm",
       "Add", "Mul", "Sub", "Div", "Concat", "Einsum", "Softmax", "Reshape", "Transpose", "Flatten", "Split",
       "Gather", "Unsqueeze", "Conv", "BatchNormalization", "Dropout", "LSTM", "Loop", "If", "Scan", "NotAnOp"]


UNARY = ["Relu", "Sigmoid", "Tanh", "Sin", "Cos", "Exp", "Log", "Abs", "Sqrt", "Reciprocal", "Neg", "Erf",
         "Softplus", "Softsign", "Elu", "Selu", "LeakyRelu", "HardSigmoid", "HardSwish", "Mish", "Sign", "Round",
         "Floor", "Ceil", "Identity", "Atan", "Sinh", "Cosh", "Tan", "Gelu", "Celu", "ThresholdedRelu"]


def _edit_node(model: onnx.ModelProto, data) -> None:
    nodes = model.graph.node
    if not nodes:
        return
    k = _index(data, nodes, "node")
    node = nodes[k]
    kind = data.draw(st.sampled_from(["op_type", "drop_input", "duplicate_input", "missing_input",
                                      "empty_input", "delete", "duplicate", "swap", "cycle", "rename_output",
                                      "domain", "drop_output", "same_name", "insert", "insert", "split"]),
                     label="edit")
    if kind == "insert" and node.output:     # a unary op after this node: new (odd) activations
        op = data.draw(st.sampled_from(UNARY), label="op")
        old, new = node.output[0], node.output[0] + "/fuzz"
        for other in nodes:
            other.input[:] = [new if name == old else name for name in other.input]
        for value in model.graph.output:
            if value.name == old:
                value.name = new
        nodes.insert(k + 1, helper.make_node(op, [old], [new], name=f"fuzz_{op}_{k}"))
    elif kind == "split" and node.output:     # a Split of this node's output, some outputs unnamed
        names = data.draw(st.lists(st.sampled_from(["", "part"]), min_size=1, max_size=3, unique=False), label="outs")
        outputs = [name and f"{name}_{j}_{k}" for j, name in enumerate(names)]
        nodes.insert(k + 1, helper.make_node("Split", [node.output[0]], outputs, name=f"fuzz_split_{k}",
                                             axis=data.draw(st.sampled_from([-1, 0, 1, 5]), label="axis")))
    elif kind == "op_type":
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
        if later.output:
            node.input[0] = later.output[0]
    elif kind == "rename_output" and node.output:
        node.output[0] = data.draw(st.sampled_from(["renamed", node.input[0] if node.input else "x", "x", ""]),
                                   label="output")
    elif kind == "domain":
        node.domain = data.draw(st.sampled_from(["com.microsoft", "custom.fuzz", "onnx2snn", "ai.onnx.ml"]),
                                label="domain")
    elif kind == "drop_output":
        del node.output[:]
    elif kind == "same_name" and len(nodes) > 1:
        node.name = nodes[(k + 1) % len(nodes)].name


@fuzz(240)
@given(base=bases, extra=options, data=st.data())
def test_node_edits(base, extra, data):
    model = _model(base)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        _edit_node(model, data)
    run_case(model.SerializeToString(), extra=extra, inspect=True)


# --- attributes ----------------------------------------------------------------------------------------

VALUES = [0, 1, 2, -1, 2 ** 40, 0.0, -1.0, 0.5, 1e38, 1e-45, math.nan, math.inf, -math.inf, "text", [1, 2],
          [0.5, 0.25], b"\x00"]


@fuzz(120)
@given(base=bases, extra=options, data=st.data())
def test_attribute_edits(base, extra, data):
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
    run_case(model.SerializeToString(), extra=extra, inspect=True)


# --- input shapes and types ----------------------------------------------------------------------------

DIMS = [-1, -7, 0, 1, 2, 3, 1000, 2 ** 31, 2 ** 40, 2 ** 62, "F", None]


def _set_dim(dim, value) -> None:
    dim.Clear()
    if isinstance(value, str):
        dim.dim_param = value
    elif value is not None:
        dim.dim_value = value


@fuzz(120)
@given(base=bases, data=st.data())
def test_input_shape_edits(base, data):
    model = _model(base)
    graph = model.graph
    values = graph.input if data.draw(st.booleans(), label="input") else graph.output
    value = values[_index(data, values, "value")]
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
        values.remove(value)
    else:
        graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["batch", 2]))
    run_case(model.SerializeToString(), inspect=True)


# --- initializers --------------------------------------------------------------------------------------


@fuzz(160)
@given(base=bases, extra=options, data=st.data())
def test_initializer_edits(base, extra, data):
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
    run_case(model.SerializeToString(), extra=extra, inspect=True)


# --- domain metadata -----------------------------------------------------------------------------------

DOMAINS = ["x=-1e300:1e300,0:1", "x=-3e38:3e38,-3e38:3e38", "x=0:1e-300,0:1e-300", "x=nan:1,0:1", "x=-1:1",
           "x=1e308:1.7e308,0:1", "", "x", ";", "y=-1:1,0:1", "x=-1:1,0:1;x=0:1,0:1", "x=0:1e-30,0:1e-30",
           "x=-1:1,0:1,0:1", "x=-1e20:1e20,0:1"]


@fuzz(60)
@given(base=single_input, data=st.data())
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


@fuzz(180)
@given(base=single_input, extra=options, data=st.data())
def test_calibration_arrays(base, extra, data):
    features = FEATURES[base]
    rows = data.draw(st.sampled_from([1, 2, 64]), label="rows")
    rng = np.random.default_rng(data.draw(st.integers(0, 3), label="seed"))
    array = rng.uniform(0, 1, (rows, features)).astype(np.float32)
    kind = data.draw(st.sampled_from(["valid", "nonfinite", "rank", "features", "empty", "dtype", "huge",
                                      "constant", "npz", "corrupt", "corrupt_npz", "strings"]), label="kind")
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
    elif kind == "corrupt_npz":     # a damaged member of a (compressed) .npz
        buffer = io.BytesIO()
        (np.savez_compressed if data.draw(st.booleans(), label="compressed") else np.savez)(buffer, x=array)
        blob = bytearray(buffer.getvalue())
        at = data.draw(st.integers(0, len(blob) - 1), label="offset")
        blob[at:at + 8] = data.draw(st.binary(min_size=1, max_size=8), label="bytes")
        calib = bytes(blob)
    elif kind == "strings":
        calib = np.array([["a"] * features] * rows)
    run_case(BASES[base], calib=calib, extra=extra)


def test_valid_model_converts_under_the_harness():
    """The harness itself: an unmodified fixture succeeds, so the fuzz cases above do reach conversion."""
    for blob in BASES.values():
        assert run_case(blob)[0] == 0


@pytest.mark.parametrize("blob", [b"", b"\x08", b"\x00" * 64, b"\xff" * 64], ids=["empty", "tag", "zeros", "ones"])
def test_tiny_garbage_files(blob):
    assert run_case(blob)[0] == 1


# --- what the fuzzer found, pinned ---------------------------------------------------------------------


def _edited(base: str, edit) -> bytes:
    model = _model(base)
    edit(model)
    return model.SerializeToString()


def _bad_utf8() -> bytes:
    blob = bytearray(BASES["jax_flax_tanh"])
    at = blob.index(b"const_1")
    blob[at] = 0x80          # an input name that is no longer UTF-8 (the protobuf runtime returns bytes)
    return bytes(blob)


def _set_initializer(name: str, array) -> callable:
    def edit(model):
        tensor = next(t for t in model.graph.initializer if t.name == name)
        tensor.CopyFrom(numpy_helper.from_array(np.asarray(array), name))
    return edit


def _set_dims(name: str, dims) -> callable:
    def edit(model):
        tensor = next(t for t in model.graph.initializer if t.name == name)
        del tensor.dims[:]
        tensor.dims.extend(dims)
    return edit


def _set_attribute(node: int, name: str, value) -> callable:
    def edit(model):
        attributes = model.graph.node[node].attribute
        for k, attribute in enumerate(attributes):
            if attribute.name == name:
                del attributes[k]
                break
        attributes.append(helper.make_attribute(name, value))
    return edit


def _huge_features_no_domain(model):
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 2 ** 40
    del model.metadata_props[:]


def _output_type(elem: int) -> callable:
    def edit(model):
        model.graph.output[0].type.tensor_type.elem_type = elem
    return edit


def _constant_relu(model):
    """A Relu on an int64 constant: onnxruntime cannot fold or run it and logged a warning on stderr."""
    model.graph.node.append(helper.make_node("Relu", ["steps"], ["steps_relu"], name="int_relu"))
    model.graph.node.append(helper.make_node("Cast", ["steps_relu"], ["steps_f"], name="cast", to=TensorProto.FLOAT))
    model.graph.node.append(helper.make_node("Add", ["u", "steps_f"], ["u2"], name="add"))
    model.graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "steps"))
    model.graph.output[0].name = "u2"


def _einsum_empty_input(model):
    """``Einsum(a, "")``: the checker accepts an empty name in a variadic slot; onnxruntime segfaulted."""
    einsum = next(n for n in model.graph.node if n.op_type == "Einsum")
    einsum.input[1] = ""


def _split_empty_output(model):
    """``Split -> (half, "")`` of the first layer, ``half`` a second graph output: onnxruntime segfaults on
    the unnamed output."""
    gemm = model.graph.node[0]
    model.graph.node.insert(1, helper.make_node("Split", [gemm.output[0]], ["half", ""], name="split", axis=1,
                                                num_outputs=2))
    model.graph.output.append(helper.make_tensor_value_info("half", TensorProto.FLOAT, ["B", 8]))


def _reciprocal_of_readout(model):
    """``1 / readout``: the ANN is finite at the validation points, the SNN's quantised readout hits 0."""
    gemm = model.graph.node[5]
    old, new = gemm.output[0], gemm.output[0] + "/inverse"
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
    model.graph.node.insert(6, helper.make_node("Reciprocal", [old], [new], name="inverse"))


CAL = np.random.default_rng(0).uniform(0, 1, (64, 2)).astype(np.float32)
SPIKING_READOUT = ("--pieces", "1", "--neuron", "floor", "--readout", "spiking")
FOUND = {   # id: (model bytes, calibration, expected words on stderr (None: success or any clean error)[, options])
    "name_not_utf8": (_bad_utf8, None, "'graph.node[0].input[2]' is not UTF-8 text"),
    "einsum_empty_input": (lambda: _edited("torch_separable", _einsum_empty_input), None,
                           "node '/Einsum' (Einsum): input 1 ('Inputs') is empty but not optional"),
    "split_empty_output": (lambda: _edited("jax_flax_tanh", _split_empty_output), None,
                           "node 'split' (Split): output 1 ('outputs') is empty but not optional"),
    "weight_dims_vs_data": (lambda: _edited("torch_tanh_gemm", _set_dims("layers.0.bias", [3])), None,
                            "does not hold the data its type FLOAT and shape [3] declare"),
    "weight_unknown_type": (lambda: _edited("torch_tanh_gemm", lambda m: setattr(m.graph.initializer[1],
                                                                                 "data_type", 29)),
                            None, "weight 'layers.0.bias' (used by node '/layers.0/Gemm') has unknown data type 29"),
    "weight_huge_dims": (lambda: _edited("torch_tanh_gemm", _set_dims("layers.0.weight", [2 ** 40, 2])), None,
                         "parameters, more than the limit of 50,000,000"),
    "empty_readout_weight": (lambda: _edited("torch_tanh_gemm", _set_initializer("layers.2.weight",
                                                                                 np.zeros((0, 16), np.float32))),
                             None, None),     # crashed in calibration; now an analog node, an empty output
    "bias_wrong_width": (lambda: _edited("torch_tanh_gemm", _set_initializer("layers.2.bias",
                                                                             np.zeros(3, np.float32))),
                         None, "Invalid bias shape for broadcast"),
    "gemm_alpha_inf": (lambda: _edited("torch_tanh_gemm", _set_attribute(0, "alpha", math.inf)), None,
                       "node '/layers.0/Gemm' (Gemm): alpha=inf"),
    "leaky_relu_alpha_nan": (lambda: _edited("torch_tanh_gemm", lambda m: (
        setattr(m.graph.node[1], "op_type", "LeakyRelu"), _set_attribute(1, "alpha", math.nan)(m))), None,
        "NaN or Inf in tensor"),
    "weights_overflow": (lambda: _edited("torch_tanh_gemm", _set_initializer(
        "layers.0.weight", np.full((16, 2), 3e38, np.float32))), None, "NaN or Inf in tensor"),
    "output_unknown_type": (lambda: _edited("torch_sin", _output_type(99)), None,
                            "output 'u' declares an unknown element type 99"),
    "huge_features_no_domain": (lambda: _edited("torch_tanh_gemm", _huge_features_no_domain), None,
                                "(1099511627776 intervals)"),
    "domain_beyond_float32": (lambda: _edited("torch_tanh_gemm", lambda m: setattr(
        m.metadata_props[0], "value", "x=-1e300:1e300,0:1")), None, "metadata 'onnx2snn.domain': domain of input"),
    "constant_relu_int64": (lambda: _edited("torch_tanh_gemm", _constant_relu), None,
                            "Could not find an implementation for Relu"),
    "calibration_near_float32_max": (lambda: BASES["torch_tanh_gemm"], CAL * 3e38, "beyond 1.84e+19"),
    "calibration_float64_overflow": (lambda: BASES["torch_tanh_gemm"], CAL.astype(np.float64) * 1e300,
                                     "beyond 1.84e+19"),
    # refit: finetune fits the tail run exactly and keeps this readout away from 0 (finite everywhere)
    "snn_output_not_finite": (lambda: _edited("torch_multi_io", _reciprocal_of_readout), None,
                              "the SNN computes NaN or Inf in output", (*SPIKING_READOUT, "--calibration", "refit")),
    "calibration_empty_file": (lambda: BASES["torch_tanh_gemm"], b"", "not a readable .npy/.npz file"),
    "calibration_complex": (lambda: BASES["torch_tanh_gemm"], CAL.astype(np.complex64), "not real numbers"),
}


@pytest.mark.parametrize("case", sorted(FOUND))
def test_found_by_fuzzing(case):
    """Each failure the fuzzer found (a traceback, a second stderr line, a crash deep in calibration)
    now ends in one clean error line."""
    make, calib, words, *extra = FOUND[case]
    code, text = run_case(make(), calib=calib, extra=extra[0] if extra else (), inspect=calib is None)
    assert words is None or (code == 1 and words in text), text


def test_activation_not_finite_on_the_calibrated_range():
    """h(z) = 1/z is finite at the data but not at z = 0 inside the calibrated range: a ModelError naming it."""
    from onnx2snn.activations import Activation
    from onnx2snn.errors import ModelError
    activation = Activation("z", "h", [helper.make_node("Reciprocal", ["z"], ["h"], name="inverse")])
    assert np.allclose(activation(np.array([[2.0, 4.0]])), [[0.5, 0.25]])
    with pytest.raises(ModelError, match=r"activation 'inverse' \(Reciprocal\): h\(z\) is NaN or Inf at z = 0"):
        activation(np.array([[1.0, 0.0]]))
