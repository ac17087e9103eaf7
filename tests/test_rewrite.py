"""The artifact graph written by ``rewrite`` (on onnx-graphsurgeon): the replaced ANN nodes gone, no dead
node, nodes in topological order, and the source's declarations kept (inputs, outputs, opsets, metadata,
float dtype)."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnx2snn
from conftest import FIXTURES
from onnx2snn.importer import import_model
from runtimes import spec


@pytest.mark.parametrize("name", ["torch_modified_mlp", "jax_float64_tanh"])
def test_artifact_graph_is_the_source_with_its_layers_replaced(name):
    source = import_model(FIXTURES / f"{name}.onnx").model
    result = onnx2snn.convert(FIXTURES / f"{name}.onnx", samples=256, validate=False)
    graph = result.model.graph
    replaced = {(n.name, n.op_type) for l in result.structure.layers for n in l.affine.nodes + l.activation.nodes}
    replaced |= {(n.name, n.op_type) for a in result.structure.readouts for n in a.nodes}
    nodes = [(n.name, n.op_type) for n in graph.node]
    assert replaced and not replaced & set(nodes) and len({name for name, _ in nodes}) == len(nodes)
    kept = [(n.name, n.op_type) for n in source.graph.node if (n.name, n.op_type) not in replaced]
    assert set(kept) <= set(nodes)                              # the analog nodes and links, as they were
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    for node in graph.node:                                     # topological order
        assert set(node.input) <= available, node.name
        available.update(node.output)
    read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    assert all(set(n.output) & read for n in graph.node)        # no dead node
    assert {t.name for t in graph.initializer} <= read          # no unused initializer
    assert [i.SerializeToString() for i in graph.input] == [i.SerializeToString() for i in source.graph.input]
    assert [o.SerializeToString() for o in graph.output] == [o.SerializeToString() for o in source.graph.output]
    assert not graph.value_info
    opsets = {(o.domain, o.version) for o in result.model.opset_import}
    assert opsets == {(o.domain, o.version) for o in source.opset_import} | {(spec.DOMAIN, spec.DOMAIN_VERSION)}
    ifs = [n for n in graph.node if n.op_type == spec.IF_OP]
    assert [n.name for n in ifs] == [l.name for l in result.structure.layers]
    assert all(n.domain == spec.DOMAIN and {a.name for a in n.attribute} == {"signed", "fire_fraction"} for n in ifs)
    dtype = np.float64 if "float64" in name else np.float32
    floats = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type != onnx.TensorProto.INT64]
    assert floats and all(a.dtype == dtype for a in floats)
    meta = {p.key: p.value for p in result.model.metadata_props}
    assert {p.key: p.value for p in source.metadata_props}.items() <= meta.items() and spec.META_TIMESTEPS in meta
