"""The original network in onnxruntime: the reference every SNN error is measured against."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .errors import ModelError


def ann_session(model: onnx.ModelProto, extra_outputs: list[str] = ()):
    """An onnxruntime session (one thread) that also returns the intermediate tensors ``extra_outputs``."""
    import onnxruntime as ort
    model = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in model.graph.output}
    types = _tensor_types(model) if extra_outputs else {}
    fallback = model.graph.input[0].type.tensor_type.elem_type
    for name in extra_outputs:
        if name not in present:
            model.graph.output.append(helper.make_tensor_value_info(name, types.get(name, fallback), None))
            present.add(name)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot load the model: {str(e).splitlines()[0]}") from None


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort; the fallback type is the input's
        return {}
    return {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info
            if v.type.tensor_type.elem_type}


def run_ann(model: onnx.ModelProto, feeds: dict[str, np.ndarray], extra_outputs: list[str] = (),
            session=None) -> dict[str, np.ndarray]:
    """All graph outputs and ``extra_outputs`` of the ANN at ``feeds``, by tensor name."""
    session = session or ann_session(model, list(extra_outputs))
    names = [o.name for o in session.get_outputs()]
    try:
        values = session.run(names, feeds)
    except Exception as e:
        raise ModelError(f"onnxruntime cannot run the model: {str(e).splitlines()[0]}") from None
    return dict(zip(names, values))
