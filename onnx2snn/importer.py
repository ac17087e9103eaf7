"""Load, validate and canonicalise an ONNX model.

Canonical form: constants folded (``Constant`` nodes and constant subexpressions become initializers),
rank-1 inputs given a leading batch axis (a PINN exported on a single point ``x: [d]`` becomes
``x: [batch, d]``; MatMul/Add broadcast unchanged), a fixed leading dimension made symbolic (torch's default
export of ``x: [4, 2]`` becomes ``x: [batch, 2]``, checked by running the graph on another batch size), a
``Reshape`` whose output is a row tensor [batch, *F] (``batch_rows``) given a constant shape: [0, *F] when it
reshapes each point's values in its row, else [-1, *F] when the graph computes its shape (``Shape → Gather →
Concat``, torch's ``h.view(h.shape[0], -1)``): the same values at every batch size, the shape computation,
left unread, dropped; nodes in topological order with unique names.  Only the model in memory changes; the
file is never written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import numpy_helper

from runtimes import spec
from runtimes.loading import MAX_FILE_BYTES, load_onnx

from .batch_rows import keeps_rows, row_features
from .errors import ModelError, first_line
from .graph_surgery import quiet, restore_declared_io

MAX_PARAMETERS = 50_000_000      # weights and constants, counted from their declared shapes
MAX_NODES = 100_000              # nodes, those of subgraphs included
# MAX_FILE_BYTES (2 GiB, from runtimes.loading): the .onnx file, and its external data in all


@dataclass
class ImportedModel:
    """A validated model: the canonical ``ModelProto`` (used as the ANN reference) and its facts."""

    path: Path
    model: onnx.ModelProto
    dtype: np.dtype
    input_shapes: dict[str, list[int | str | None]]
    metadata: dict[str, str] = field(default_factory=dict)
    batched_inputs: list[str] = field(default_factory=list)   # rank-1 inputs given a batch axis
    freed_batch: dict[str, int] = field(default_factory=dict)  # inputs whose fixed batch size was made symbolic


def import_model(path: str | os.PathLike, *, max_parameters: int | None = None, max_nodes: int | None = None,
                 max_file_bytes: int | None = None) -> ImportedModel:
    """Load ``path`` (and its external data), validate it and return its canonical form.

    Limits (None: the module's ``MAX_PARAMETERS``, ``MAX_NODES``, ``MAX_FILE_BYTES``) are checked on the
    declared sizes before any weight is read; a model beyond one raises ``ModelError``.
    """
    path = Path(path)
    max_parameters = MAX_PARAMETERS if max_parameters is None else max_parameters
    max_nodes = MAX_NODES if max_nodes is None else max_nodes
    max_file_bytes = MAX_FILE_BYTES if max_file_bytes is None else max_file_bytes
    model = load_onnx(path, ModelError, max_bytes=max_file_bytes,
                      before_external_data=lambda m: _check_sizes(m, path, max_parameters, max_nodes))
    if any(n.domain == spec.DOMAIN for n in model.graph.node):
        raise ModelError(f"{path}: already a spiking artifact written by onnx2snn; run it with "
                         f"'onnx2snn run' or check it with 'onnx2snn verify'")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = next((line for line in str(e).splitlines() if line.strip()), "invalid model")
        raise ModelError(f"{path}: invalid ONNX model: {first}") from None
    except Exception as e:  # last resort: the checker's C++ side raises other types on malformed protos
        raise ModelError(f"{path}: invalid ONNX model ({type(e).__name__}: {first_line(e)})") from None
    _check_empty_names(model, path)
    _check_finite(model, path)
    _check_value_types(model, path)
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if not inputs:
        raise ModelError(f"{path}: the model has no inputs")
    dtype = _float_dtype(inputs, path)
    _check_input_shapes(inputs, path)
    model = _canonicalise(model, path)
    batched = _batch_rank1_inputs(model)
    freed = _free_fixed_batch(model, path)
    _constant_row_shapes(model)
    shapes = {i.name: _dims(i) for i in model.graph.input}
    meta = {p.key: p.value for p in model.metadata_props}
    return ImportedModel(path=path, model=model, dtype=dtype, input_shapes=shapes, metadata=meta,
                         batched_inputs=batched, freed_batch=freed)




def _graphs(graph: onnx.GraphProto):
    """``graph`` and every subgraph (``If``/``Loop``/``Scan`` bodies), recursively."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _graphs(sub)


def _constant_tensors(graph: onnx.GraphProto) -> list[tuple[onnx.TensorProto, str | None]]:
    """Initializers and ``Constant`` node values, each with the node that holds it (None: initializer)."""
    found: list[tuple[onnx.TensorProto, str | None]] = [(t, None) for t in graph.initializer]
    found += [(s.values, None) for s in graph.sparse_initializer]
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                found.append((attribute.t, node.name or node.op_type))
            found += [(t, node.name or node.op_type) for t in attribute.tensors]
    return found


def _check_sizes(model: onnx.ModelProto, path: Path, max_parameters: int, max_nodes: int) -> None:
    """Node count and parameter count (from declared shapes) within the limits; no negative dims."""
    graphs = list(_graphs(model.graph))
    nodes = sum(len(g.node) for g in graphs)
    if nodes > max_nodes:
        raise ModelError(f"{path}: the model has {nodes:,} nodes, more than the limit of {max_nodes:,}")
    total, largest = 0, (0, "")
    for graph in graphs:
        for tensor, holder in _constant_tensors(graph):
            label = f"constant of node '{holder}'" if holder else f"weight '{tensor.name}'"
            if any(d < 0 for d in tensor.dims):
                raise ModelError(f"{path}: {label} declares a negative dimension {list(tensor.dims)}")
            count = int(np.prod([int(d) for d in tensor.dims], dtype=object)) if tensor.dims else 1
            total += count
            largest = max(largest, (count, label))
    if total > max_parameters:
        raise ModelError(f"{path}: the model declares {total:,} parameters, more than the limit of "
                         f"{max_parameters:,} (largest: {largest[1]} with {largest[0]:,})")


def _tensor_array(tensor: onnx.TensorProto, path: Path, label: str) -> np.ndarray:
    """``tensor`` as an array; a ModelError naming it when its type or data do not match its declaration."""
    try:
        onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
    except (KeyError, ValueError, TypeError):
        raise ModelError(f"{path}: {label} has unknown data type {tensor.data_type}") from None
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: {label} does not hold the data its type "
                         f"{onnx.TensorProto.DataType.Name(tensor.data_type)} and shape {list(tensor.dims)} "
                         f"declare ({type(e).__name__}: {first_line(e)})") from None


def _check_finite(model: onnx.ModelProto, path: Path) -> None:
    consumers: dict[str, str] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, node.name or node.op_type)
    for graph in _graphs(model.graph):
        for tensor, holder in _constant_tensors(graph):
            if holder is not None:
                label = f"constant of node '{holder}'"
            else:
                where = f" (used by node '{consumers[tensor.name]}')" if tensor.name in consumers else ""
                label = f"weight '{tensor.name}'{where}"
            array = _tensor_array(tensor, path, label)
            if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
                raise ModelError(f"{path}: {label} contains NaN or Inf")


def _check_empty_names(model: onnx.ModelProto, path: Path) -> None:
    """An empty input or output name only where the op's schema declares that input or output optional.

    ``onnx.checker`` lets an empty name through in a variadic slot (``Einsum(a, "")``, ``Split -> (a, "")``),
    and onnxruntime then dereferences the missing tensor: a segmentation fault instead of an error.
    """
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    optional = onnx.defs.OpSchema.FormalParameterOption.Optional
    for graph in _graphs(model.graph):
        for node in graph.node:
            if "" not in node.input and "" not in node.output:
                continue
            domain = "" if node.domain == "ai.onnx" else node.domain
            try:
                schema = onnx.defs.get_schema(node.op_type, opsets.get(domain, 1), domain)
                declared = {"input": schema.inputs, "output": schema.outputs}
            except onnx.defs.SchemaError:
                declared = {"input": [], "output": []}
            for kind, names in (("input", node.input), ("output", node.output)):
                formals = declared[kind]
                for k, name in enumerate(names):
                    formal = formals[min(k, len(formals) - 1)] if formals else None
                    if not name and (formal is None or formal.option != optional):
                        what = f"{kind} {k} ('{formal.name}')" if formal is not None else f"{kind} {k}"
                        raise ModelError(f"{path}: node '{node.name}' ({node.op_type}): {what} is empty but not "
                                         f"optional")


def _check_value_types(model: onnx.ModelProto, path: Path) -> None:
    """Every graph input and output is a tensor of a known element type."""
    known = set(onnx.TensorProto.DataType.values()) - {onnx.TensorProto.UNDEFINED}
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for value in values:
            if not value.type.HasField("tensor_type"):
                raise ModelError(f"{path}: {kind} '{value.name}' is not a tensor")
            elem = value.type.tensor_type.elem_type
            if elem not in known:
                raise ModelError(f"{path}: {kind} '{value.name}' declares an unknown element type {elem}")


def _check_input_shapes(inputs, path: Path) -> None:
    """Every input declares a shape of rank >= 1 with no negative dimension."""
    for value in inputs:
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            raise ModelError(f"{path}: input '{value.name}' declares no shape; onnx2snn needs [batch, features]")
        dims = tensor_type.shape.dim
        if not dims:
            raise ModelError(f"{path}: input '{value.name}' is a scalar; onnx2snn needs [batch, features]")
        bad = [d.dim_value for d in dims if d.HasField("dim_value") and d.dim_value < 0]
        if bad:
            raise ModelError(f"{path}: input '{value.name}' declares the negative dimension {bad[0]}")


def _float_dtype(inputs, path: Path) -> np.dtype:
    for value in inputs:
        elem = value.type.tensor_type.elem_type
        if elem in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
            return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))
    raise ModelError(f"{path}: no float32 or float64 input; onnx2snn converts networks of real coordinates")


def _canonicalise(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    try:
        with quiet():
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
    except Exception as e:  # last resort: onnx-graphsurgeon raises many types on malformed graphs
        raise ModelError(f"{path}: cannot read the graph ({type(e).__name__}: {first_line(e)})") from None
    restore_declared_io(out, model)
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


def _free_fixed_batch(model: onnx.ModelProto, path: Path) -> dict[str, int]:
    """Make a fixed leading dimension of the inputs (rank >= 2) symbolic: ``batch`` when every such input
    declares the same size (shared rows), ``batch_<input>`` otherwise (a separable network's grid axes).
    Output dimensions before the last that equal a freed size become symbolic too.  The graph is then run on
    another batch size: a graph that bakes the size into its nodes (a ``Reshape`` to ``[4, ...]``) is refused
    with one line saying how to re-export it."""
    fixed = {}
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if len(dims) >= 2 and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            fixed[value.name] = dims[0].dim_value
    if not fixed:
        return {}
    shared = len(set(fixed.values())) == 1 and len(fixed) == len(model.graph.input)
    names = {name: "batch" if shared else f"batch_{name}" for name in fixed}
    by_size = {size: names[name] for name, size in fixed.items()}
    for value in model.graph.input:
        if value.name in fixed:
            value.type.tensor_type.shape.dim[0].dim_param = names[value.name]    # clears dim_value
    for value in model.graph.output:
        for dim in list(value.type.tensor_type.shape.dim)[:-1]:
            if dim.HasField("dim_value") and dim.dim_value in by_size:
                dim.dim_param = by_size[dim.dim_value]
    del model.graph.value_info[:]        # intermediate shapes carry the old size
    _check_free_batch(model, path, fixed)
    return fixed


def _check_free_batch(model: onnx.ModelProto, path: Path, fixed: dict[str, int]) -> None:
    """Run the graph on zeros with another batch size than each freed input declared; a failure there that
    the declared size does not have refuses the model (a small graph only: other failures are left to the
    stages that report them)."""
    from .ann import ann_session

    def feeds(other: bool) -> dict[str, np.ndarray] | None:
        arrays = {}
        for value in model.graph.input:
            dims = list(value.type.tensor_type.shape.dim)
            shape = [(3 if fixed.get(value.name) == 2 else 2) if other else fixed.get(value.name, 2)]
            shape += [d.dim_value if d.HasField("dim_value") else 0 for d in dims[1:]]
            if min(shape[1:], default=1) < 1 or np.prod(shape, dtype=float) > 1e6:
                return None
            dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
            arrays[value.name] = np.zeros(shape, dtype)
        return arrays

    other, declared = feeds(True), feeds(False)
    if other is None or declared is None:
        return
    session = ann_session(model, source=str(path))
    try:
        session.run(None, other)
    except Exception as e:  # onnxruntime raises its own exception types
        try:
            session.run(None, declared)
        except Exception:  # fails at its own size too: not the batch axis; reported later
            return
        name, size = next(iter(fixed.items()))
        raise ModelError(f"{path}: input '{name}' was exported with the fixed batch size {size} and the graph "
                         f"depends on it ({first_line(e)}); re-export with a dynamic batch axis, e.g. "
                         f"torch.onnx.export(..., dynamic_axes={{'{name}': {{0: 'batch'}}}})") from None


def _constant_row_shapes(model: onnx.ModelProto) -> None:
    """Give each Reshape whose output is a row tensor [batch, *F] (``batch_rows``, F > 0) a constant shape
    (an initializer ``<node>/row_shape``): [0, *F] with ``allowzero`` 0 (the batch copied: the op reshapes
    each point's values in its row, which runtimes see from the shape alone) when its input is a row tensor
    with as many values per point, else [-1, *F] when its shape is computed; then drop the nodes and
    initializers that nothing reads any more (module docstring)."""
    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    reshapes = [n for n in graph.node if n.op_type == "Reshape" and len(n.input) > 1]
    features = row_features(model) if reshapes else {}
    changed = False
    for node in reshapes:
        out = features.get(node.output[0])
        if not out or min(out) <= 0:
            continue
        if keeps_rows(node, features):
            shape = np.array([0, *out], np.int64)
            for attribute in [a for a in node.attribute if a.name == "allowzero"]:
                node.attribute.remove(attribute)
        elif node.input[1] not in constants:
            shape = np.array([-1, *out], np.int64)
        else:
            continue
        if node.input[1] in constants and np.array_equal(numpy_helper.to_array(constants[node.input[1]]), shape):
            continue
        name = f"{node.name}/row_shape"
        graph.initializer.append(numpy_helper.from_array(shape, name))
        node.input[1], changed = name, True
    if changed:
        _drop_unread(graph)


def _drop_unread(graph: onnx.GraphProto) -> None:
    """Remove the nodes and initializers that no graph output depends on (nodes in topological order)."""
    read = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(o in read for o in node.output):
            kept.append(node)
            read.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    for t in [t for t in graph.initializer if t.name not in read]:
        graph.initializer.remove(t)


def _dims(value: onnx.ValueInfoProto) -> list[int | str | None]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value.type.tensor_type.shape.dim]
