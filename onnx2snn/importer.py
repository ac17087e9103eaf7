"""Load, validate and canonicalise an ONNX model.

Canonical form: constants folded (``Constant`` nodes and constant subexpressions become initializers),
rank-1 inputs given a leading batch axis (a PINN exported on a single point ``x: [d]`` becomes
``x: [batch, d]``; MatMul/Add broadcast unchanged), nodes in topological order with unique names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import numpy_helper

from runtimes.loading import load_onnx

from .errors import ModelError


@dataclass
class ImportedModel:
    """A validated model: the canonical ``ModelProto`` (used as the ANN reference) and its facts."""

    path: Path
    model: onnx.ModelProto
    dtype: np.dtype
    input_shapes: dict[str, list[int | str | None]]
    metadata: dict[str, str] = field(default_factory=dict)
    batched_inputs: list[str] = field(default_factory=list)   # rank-1 inputs given a batch axis


def import_model(path: str | os.PathLike) -> ImportedModel:
    """Load ``path`` (and its external data), validate it and return its canonical form."""
    path = Path(path)
    model = load_onnx(path, ModelError)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = next((line for line in str(e).splitlines() if line.strip()), "invalid model")
        raise ModelError(f"{path}: invalid ONNX model: {first}") from None
    _check_finite(model, path)
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if not inputs:
        raise ModelError(f"{path}: the model has no inputs")
    dtype = _float_dtype(inputs, path)
    model = _canonicalise(model, path)
    batched = _batch_rank1_inputs(model)
    shapes = {i.name: _dims(i) for i in model.graph.input}
    meta = {p.key: p.value for p in model.metadata_props}
    return ImportedModel(path=path, model=model, dtype=dtype, input_shapes=shapes, metadata=meta,
                         batched_inputs=batched)


def _check_finite(model: onnx.ModelProto, path: Path) -> None:
    consumers: dict[str, str] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, node.name or node.op_type)
    tensors = list(model.graph.initializer)
    tensors += [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    for tensor in tensors:
        array = numpy_helper.to_array(tensor)
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            where = f" (used by node '{consumers[tensor.name]}')" if tensor.name in consumers else ""
            raise ModelError(f"{path}: weight '{tensor.name}'{where} contains NaN or Inf")


def _float_dtype(inputs, path: Path) -> np.dtype:
    for value in inputs:
        elem = value.type.tensor_type.elem_type
        if elem in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
            return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))
    raise ModelError(f"{path}: no float32 or float64 input; onnx2snn converts networks of real coordinates")


def _canonicalise(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    try:
        graph = gs.import_onnx(model)
        graph.fold_constants(error_ok=True)
        graph.cleanup().toposort()
        for k, node in enumerate(graph.nodes):
            node.name = node.name or f"{node.op}_{k}"
        names = [n.name for n in graph.nodes]
        if len(set(names)) != len(names):
            seen: set[str] = set()
            for k, node in enumerate(graph.nodes):
                if node.name in seen:
                    node.name = f"{node.name}_{k}"
                seen.add(node.name)
        out = gs.export_onnx(graph)
    except Exception as e:  # onnx-graphsurgeon raises many types on malformed graphs
        raise ModelError(f"{path}: cannot read the graph ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    for kept, original in ((out.graph.input, model.graph.input), (out.graph.output, model.graph.output)):
        declared = {v.name: v for v in original}    # onnx-graphsurgeon may drop declared shapes
        for k, value in enumerate(kept):
            if value.name in declared:
                kept[k].CopyFrom(declared[value.name])
    out.ir_version = min(model.ir_version, 10) or 10
    del out.metadata_props[:]
    out.metadata_props.extend(model.metadata_props)
    return out


def _batch_rank1_inputs(model: onnx.ModelProto) -> list[str]:
    batched = []
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 1:
            features = dims[0].dim_value
            del dims[:]
            dims.add().dim_param = "batch"
            dims.add().dim_value = features
            batched.append(value.name)
    if batched:   # output and intermediate shapes change with it
        del model.graph.value_info[:]
        for value in model.graph.output:
            dims = value.type.tensor_type.shape.dim
            if len(dims) == 1:          # a per-point output [m] becomes [batch, m]
                dims.insert(0, onnx.TensorShapeProto.Dimension(dim_param="batch"))
    return batched


def _dims(value: onnx.ValueInfoProto) -> list[int | str | None]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value.type.tensor_type.shape.dim]
