"""Size limits of the importer: parameters, nodes, file bytes (module constants and ``import_model`` options)."""

import shutil

import onnx
import pytest

from conftest import FIXTURES
from onnx2snn import importer
from onnx2snn.cli import main
from onnx2snn.errors import ModelError
from onnx2snn.importer import import_model

SOURCE = FIXTURES / "torch_tanh_gemm.onnx"     # 2 -> 16 -> 16 -> 1: 337 parameters, 5 nodes


def test_defaults():
    assert importer.MAX_PARAMETERS == 50_000_000
    assert importer.MAX_NODES == 100_000
    assert importer.MAX_FILE_BYTES == 2 * 1024 ** 3
    imported = import_model(SOURCE)
    assert imported.model.graph.node


def test_parameter_limit():
    with pytest.raises(ModelError, match=r"declares 337 parameters, more than the limit of 100 \(largest: "
                                         r"weight 'layers.1.weight' with 256\)"):
        import_model(SOURCE, max_parameters=100)
    assert import_model(SOURCE, max_parameters=337).model.graph.node


def test_node_limit():
    with pytest.raises(ModelError, match="has 5 nodes, more than the limit of 4"):
        import_model(SOURCE, max_nodes=4)
    assert import_model(SOURCE, max_nodes=5).model.graph.node


def test_file_size_limit():
    size = SOURCE.stat().st_size
    with pytest.raises(ModelError, match=f"has {size:,} bytes, more than the limit of 1,000"):
        import_model(SOURCE, max_file_bytes=1000)
    assert import_model(SOURCE, max_file_bytes=size).model.graph.node


def test_external_data_counts_towards_the_file_size_limit(tmp_path):
    path = tmp_path / "external.onnx"
    onnx.save(onnx.load(SOURCE), path, save_as_external_data=True, location="w.data", size_threshold=0)
    size, data = path.stat().st_size, (tmp_path / "w.data").stat().st_size
    assert size < 1200 < data
    with pytest.raises(ModelError, match="external data holds more than the limit of 1,200 bytes"):
        import_model(path, max_file_bytes=1200)
    assert import_model(path, max_file_bytes=max(size, data)).model.graph.node


def test_limits_checked_on_declared_shapes_before_external_data_is_read(tmp_path):
    path = tmp_path / "external.onnx"
    onnx.save(onnx.load(SOURCE), path, save_as_external_data=True, location="w.data", size_threshold=0)
    (tmp_path / "w.data").unlink()        # never read: the declared shapes are over the limit already
    with pytest.raises(ModelError, match="parameters, more than the limit"):
        import_model(path, max_parameters=10)


def test_huge_declared_weight_is_refused_without_allocating(tmp_path):
    model = onnx.load(SOURCE)
    weight = model.graph.initializer[0]
    del weight.dims[:]
    weight.dims.extend([2 ** 40, 2])
    path = tmp_path / "huge.onnx"
    onnx.save(model, path)
    with pytest.raises(ModelError, match=r"declares 2,199,023,255,857 parameters.*limit of 50,000,000"):
        import_model(path)


def test_module_constants_are_the_cli_limits(tmp_path, monkeypatch, capsys):
    path = tmp_path / "pinn.onnx"
    shutil.copy(SOURCE, path)
    monkeypatch.setattr(importer, "MAX_NODES", 3)
    assert main([str(path), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"onnx2snn: error: {path}: the model has 5 nodes, more than the limit of 3")
    assert len(err.splitlines()) == 1 and not (tmp_path / "pinn.snn.onnx").exists()
