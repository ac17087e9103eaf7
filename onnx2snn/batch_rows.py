"""Row tensors: the tensors of a model that carry the batch on their leading axis, point by point.

A tensor is a *row tensor* with features F when its shape is [N, *F] for every batch size N, F independent
of N: its row n holds point n's values.  An op that maps a row tensor to a row tensor by rearranging
entries (Reshape, Flatten, Squeeze, Unsqueeze: row-major order kept; Transpose: the permutation must fix
axis 0, the only axis whose size follows N) then acts on each point's values alone, so it commutes with
stacking steps or points along axis 0.

Found by ONNX shape inference with data propagation (``Shape → Gather → Concat → Reshape`` chains are
computed) with every input's leading dimension set to N = 2 and to N = 3: a row tensor is [N, *F] under
both, with the same F (a feature dimension cannot follow N, and an axis of N cannot pass for a feature).
"""

from __future__ import annotations

import numpy as np
import onnx

PROBES = (2, 3)


def _probe_shapes(model: onnx.ModelProto, batch: int) -> dict[str, tuple[int, ...]]:
    """Every inferred tensor shape, all dims known, with the inputs' leading dimension set to ``batch``."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    constants = {t.name for t in probe.graph.initializer}
    for value in probe.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name not in constants and len(dims) >= 1:
            dims[0].dim_value = batch                  # clears a symbolic name
    for value in probe.graph.output:
        value.type.tensor_type.ClearField("shape")
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, data_prop=True).graph
    except Exception:  # noqa: BLE001 - inference failing means: no row tensors known (nothing becomes a link)
        return {}
    shapes = {}
    for value in list(inferred.value_info) + list(inferred.input) + list(inferred.output):
        dims = value.type.tensor_type.shape.dim if value.type.tensor_type.HasField("shape") else None
        if dims is not None and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


def row_features(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """The row tensors of ``model`` (its inputs: [batch, ...]) and their features F (module docstring)."""
    small, large = (_probe_shapes(model, n) for n in PROBES)
    return {name: shape[1:] for name, shape in small.items()
            if shape and shape[0] == PROBES[0] and large.get(name) == (PROBES[1],) + shape[1:]}


def keeps_rows(node: onnx.NodeProto, features: dict[str, tuple[int, ...]]) -> bool:
    """Whether ``node``'s data input (input 0) and its output are both row tensors with the same number of
    features per point (so the op rearranges each point's values among themselves)."""
    data, out = node.input[0] if node.input else "", node.output[0]
    return data in features and out in features and \
        int(np.prod(features[data], dtype=np.int64)) == int(np.prod(features[out], dtype=np.int64))
