"""The committed ``tests/fixtures/torch_*.onnx`` files match what
``tests/fixtures/make_torch_fixtures.py`` produces now.

A change in the script, or in torch's ONNX exporter, shows up here as a
different node list / initializer set / IO signature; the committed files are
also checked against the torch models in onnxruntime.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

FIXTURE_DIR = pathlib.Path(__file__).resolve().parent / "fixtures"
SCRIPT = FIXTURE_DIR / "make_torch_fixtures.py"


def _load_script():
    name = "make_torch_fixtures"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


mtf = _load_script()
NAMES = list(mtf.FIXTURES)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """Build every fixture that can be built here once, into a temp folder."""
    out = tmp_path_factory.mktemp("torch_fixtures")
    names = [n for n in NAMES if mtf.dynamo_available() or not mtf.FIXTURES[n].dynamo]
    paths = mtf.build_all(out, names)  # also verifies each in onnxruntime vs torch
    return {p.stem: p for p in paths}


def _nodes(m):
    out = []
    for n in m.graph.node:
        attrs = {}
        for a in n.attribute:
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, onnx.TensorProto):
                v = numpy_helper.to_array(v).tolist()
            attrs[a.name] = v
        out.append((n.op_type, attrs))
    return out


def _io(values):
    sig = []
    for v in values:
        t = v.type.tensor_type
        dims = tuple(d.dim_param or d.dim_value for d in t.shape.dim)
        sig.append((v.name, t.elem_type, dims))
    return sig


def _inits(m):
    return {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}


def _meta(m):
    return {p.key: p.value for p in m.metadata_props}


def test_no_stale_or_missing_fixture_files():
    on_disk = {p.name[: -len(".onnx")] for p in FIXTURE_DIR.glob("torch_*.onnx")}
    assert on_disk == set(NAMES)
    data = {p.name for p in FIXTURE_DIR.glob("torch_*.onnx.data")}
    assert data == {f"{n}.onnx.data" for n in NAMES if mtf.FIXTURES[n].external_data}


@pytest.mark.parametrize("name", NAMES)
def test_committed_fixture_matches_torch(name):
    path = FIXTURE_DIR / f"{name}.onnx"
    m = onnx.load(str(path))
    onnx.checker.check_model(str(path))
    assert m.ir_version <= mtf.MAX_IR_VERSION
    assert _meta(m)[mtf.DOMAIN_KEY] == mtf.domain_string(mtf.FIXTURES[name])
    assert {o.version for o in m.opset_import if o.domain in ("", "ai.onnx")} == {
        mtf.FIXTURES[name].opset
    }
    if mtf.FIXTURES[name].external_data:
        raw = onnx.load(str(path), load_external_data=False)
        assert raw.graph.initializer
        for init in raw.graph.initializer:
            assert init.data_location == onnx.TensorProto.EXTERNAL
            loc = {e.key: e.value for e in init.external_data}["location"]
            assert loc == f"{name}.onnx.data"
    mtf.verify_fixture(name, path)  # asserts max abs diff < 1e-5 (f64: 1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_regenerated_fixture_matches_committed(name, regenerated):
    if name not in regenerated:
        pytest.skip("dynamo exporter needs onnxscript")
    new = onnx.load(str(regenerated[name]))
    old = onnx.load(str(FIXTURE_DIR / f"{name}.onnx"))

    assert [op for op, _ in _nodes(new)] == [op for op, _ in _nodes(old)]
    assert _nodes(new) == _nodes(old)
    assert _io(new.graph.input) == _io(old.graph.input)
    assert _io(new.graph.output) == _io(old.graph.output)
    assert _meta(new) == _meta(old)
    assert [(o.domain, o.version) for o in new.opset_import] == [
        (o.domain, o.version) for o in old.opset_import
    ]
    assert new.ir_version == old.ir_version

    a, b = _inits(new), _inits(old)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        assert np.allclose(a[k], b[k]), k
