"""Hand-built artifacts for the runtime tests: a graph of spec ops around named arrays, as a model."""

import numpy as np
from onnx import helper, numpy_helper

from runtimes import spec


def artifact_model(nodes, arrays: dict[str, np.ndarray], inputs, outputs, timesteps: int, name: str):
    """The artifact of ``nodes`` over ``arrays`` (initializers by name, plus "axes" = [-1] for the decode's
    ReduceSum), graph ``inputs`` and ``outputs`` (value infos), opset 17 with the onnx2snn domain, IR
    ``spec.IR_VERSION``, and the format and ``timesteps`` in its metadata."""
    inits = [numpy_helper.from_array(v, k) for k, v in arrays.items()]
    inits.append(numpy_helper.from_array(np.array([-1], np.int64), "axes"))
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(spec.DOMAIN, spec.DOMAIN_VERSION)])
    model.ir_version = spec.IR_VERSION
    for key, value in {spec.META_FORMAT: spec.FORMAT_VERSION, spec.META_TIMESTEPS: str(timesteps)}.items():
        model.metadata_props.add(key=key, value=value)
    return model
