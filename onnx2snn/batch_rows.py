"""Row tensors: the tensors of a model that carry the batch on their leading axis, point by point.

A tensor is a *row tensor* with features F when its shape is [N, *F] for every batch size N, F independent
of N: its row n holds point n's values.  An op that maps a row tensor to a row tensor by rearranging
entries (Reshape, Flatten, Squeeze, Unsqueeze: row-major order kept; Transpose: the permutation must fix
axis 0, the only axis whose size follows N) then acts on each point's values alone, so it commutes with
stacking steps or points along axis 0.

Found by running the graph (onnxruntime, every tensor an output) on zeros with every input's leading
dimension N = 2 and N = 3, so shapes the graph computes (``Shape → Gather → Div → Concat → Reshape``) are
known: a row tensor is [N, *F] in both runs, with the same F (a feature dimension cannot follow N, and an
axis of N cannot pass for a feature).
"""

from __future__ import annotations

import numpy as np
import onnx

PROBES = (2, 3)


def _probe_shapes(model: onnx.ModelProto, session, batch: int) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor when the graph runs on zeros with each input's leading dimension ``batch``."""
    constants = {t.name for t in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in constants:
            continue
        dims = value.type.tensor_type.shape.dim
        if not all(d.HasField("dim_value") for d in dims[1:]):
            return {}
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        feeds[value.name] = np.zeros([batch] + [d.dim_value for d in dims[1:]], dtype)
    names = [o.name for o in session.get_outputs()]
    try:
        values = session.run(names, feeds)
    except Exception:  # noqa: BLE001 - onnxruntime's own types: a graph that fails here has no row tensors known
        return {}
    return {name: tuple(np.shape(v)) for name, v in zip(names, values)}


def row_features(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """The row tensors of ``model`` (its inputs: [batch, ...]) and their features F (module docstring)."""
    from .ann import ann_session
    from .errors import ModelError
    try:
        session = ann_session(model, [o for n in model.graph.node for o in n.output if o])
    except ModelError:           # onnxruntime cannot load it: reported where the model is run
        return {}
    small, large = (_probe_shapes(model, session, n) for n in PROBES)
    return {name: shape[1:] for name, shape in small.items()
            if shape and shape[0] == PROBES[0] and large.get(name) == (PROBES[1],) + shape[1:]}


def keeps_rows(node: onnx.NodeProto, features: dict[str, tuple[int, ...]]) -> bool:
    """Whether ``node``'s data input (input 0) and its output are both row tensors with the same number of
    features per point (so the op rearranges each point's values among themselves)."""
    data, out = node.input[0] if node.input else "", node.output[0]
    return data in features and out in features and \
        int(np.prod(features[data], dtype=np.int64)) == int(np.prod(features[out], dtype=np.int64))
