"""The original network in onnxruntime: the reference every SNN error is measured against."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .errors import ModelError, first_line


def magnitude_limit(dtype) -> float:
    """Largest magnitude accepted in inputs and intermediate tensors: √(max of the dtype), 1.8e19 for
    float32, so that squares, sums over samples and T-step accumulations in calibration cannot overflow."""
    return float(np.sqrt(np.finfo(dtype).max))


def session_options():
    """One thread, and no C++ log lines on stderr: failures surface as exceptions, reported on one line."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 4      # fatal only: errors are raised (and reported) anyway
    return options


def ann_session(model: onnx.ModelProto, extra_outputs: list[str] = (), source: str | None = None,
                graph_outputs: bool = True):
    """An onnxruntime session (one thread) that also returns the intermediate tensors ``extra_outputs``
    (only those with ``graph_outputs=False``: a separable network's grid outputs are then never formed).

    ``source`` (the model's file), if given, starts every error message."""
    import onnxruntime as ort
    model = onnx.ModelProto.FromString(model.SerializeToString())
    if not graph_outputs:
        kept = [o for o in model.graph.output if o.name in extra_outputs]
        del model.graph.output[:]
        model.graph.output.extend(kept)
        _keep_nodes_needed_for(model.graph, set(extra_outputs))     # onnxruntime would run them all
    present = {o.name for o in model.graph.output}
    types = _tensor_types(model) if extra_outputs else {}
    fallback = model.graph.input[0].type.tensor_type.elem_type
    for name in extra_outputs:
        if name not in present:
            model.graph.output.append(helper.make_tensor_value_info(name, types.get(name, fallback), None))
            present.add(name)
    prefix = f"{source}: " if source else ""
    try:
        return ort.InferenceSession(model.SerializeToString(), session_options(),
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise ModelError(f"{prefix}onnxruntime cannot load the model: {first_line(e)}") from None


def _keep_nodes_needed_for(graph: onnx.GraphProto, names: set[str]) -> None:
    """Drop the nodes that no tensor in ``names`` depends on (graph nodes are in topological order)."""
    needed, kept = set(names), []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort; the fallback type is the input's
        return {}
    return {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info
            if v.type.tensor_type.elem_type}


def run_ann(model: onnx.ModelProto, feeds: dict[str, np.ndarray], extra_outputs: list[str] = (),
            session=None, source: str | None = None, graph_outputs: bool = True) -> dict[str, np.ndarray]:
    """All graph outputs (unless ``graph_outputs=False``) and ``extra_outputs`` of the ANN at ``feeds``.

    Raises ``ModelError`` when onnxruntime fails or any returned float tensor holds NaN or Inf (the
    network is not finite on these inputs, so there is nothing to calibrate or compare against)."""
    session = session or ann_session(model, list(extra_outputs), source, graph_outputs)
    prefix = f"{source}: " if source else ""
    names = [o.name for o in session.get_outputs()]
    try:
        values = session.run(names, feeds)
    except Exception as e:  # onnxruntime raises its own exception types
        raise ModelError(f"{prefix}onnxruntime cannot run the model: {first_line(e)}") from None
    outputs = dict(zip(names, values))
    for name, value in outputs.items():
        value = np.asarray(value)
        if value.dtype.kind != "f" or value.size == 0:
            continue
        producer = next((n for n in model.graph.node if name in n.output), None)
        by = f" (output of node '{producer.name or producer.op_type}')" if producer is not None else ""
        if not np.all(np.isfinite(value)):
            bad = int(np.count_nonzero(~np.isfinite(value)))
            raise ModelError(f"{prefix}the model computes NaN or Inf in tensor '{name}'{by} ({bad} of "
                             f"{value.size} values) on the given inputs; check its weights and the domain")
        largest, limit = float(np.max(np.abs(value))), magnitude_limit(value.dtype)
        if largest > limit:
            raise ModelError(f"{prefix}the model computes values up to {largest:.3g} in tensor '{name}'{by}, "
                             f"beyond {limit:.3g} where {value.dtype} calibration overflows; check its weights "
                             f"and the domain")
    return outputs
