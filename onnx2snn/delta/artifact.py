"""Write a delta-coded (streaming) artifact: the ANN's own graph with a sigma-delta layer after every
spiking layer's activation (``runtimes.spec``, coding "delta").

Per spiking layer (``structure``), the activation's output h is renamed h/value and::

    x ─(the ANN's affine)─▶ z ─(the ANN's activation)─▶ a ─IF(r0, β=0, θ, θ; coding=delta)─▶ s, r
                                                              r [..., n, 1] ─ReduceSum(-1)─▶ h

so every reader of h (the next affine layer, a readout, an analog node, a graph output) reads r, the value
the unit has sent so far; nothing else of the graph changes.  One point is one step (``timesteps`` 1).
"""

from __future__ import annotations

import numpy as np
import onnx

from runtimes import spec

from ..graph_surgery import GraphEditor, export_artifact
from ..rewrite import AXES_LAST
from ..structure import Structure


def build_delta_artifact(model: onnx.ModelProto, structure: Structure, thresholds: list[np.ndarray],
                         rest: list[np.ndarray], metadata: dict[str, str], graded: bool = False,
                         fire_fraction: float = 0.5) -> onnx.ModelProto:
    """The artifact of ``model`` (canonical, ``importer``) with the delta layers of ``structure``:
    ``thresholds[l]`` [n_l] the event sizes θ of layer l, ``rest[l]`` [n_l] its r(0); ``graded``: one graded
    event per sending unit (``spec``).  The model is not changed."""
    editor = GraphEditor(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    axes = editor.const(AXES_LAST, np.array([-1], np.int64)) if opset >= 13 else None
    dtype = next(iter(structure.layers)).affine.weight.dtype if structure.layers else np.float32
    column = lambda x: np.ascontiguousarray(np.asarray(x, dtype).reshape(-1, 1))
    for layer, theta, r0 in zip(structure.layers, thresholds, rest):
        h, name = layer.activation.output, layer.name
        value = f"{h}/value"
        editor.rename_output(editor.tensors[h].inputs[0], h, value)     # h's readers now read the sent value
        params = {"v0": column(r0), "bias": column(np.zeros(layer.width)), "theta_pos": column(theta),
                  "theta_neg": column(theta)}
        attributes = {spec.IF_CODING: spec.CODING_DELTA, **({spec.IF_GRADED: 1} if graded else {})}
        editor.node(spec.IF_OP, [value] + [editor.const(f"{name}/{k}", v) for k, v in params.items()],
                    [f"{name}/spikes", f"{name}/sent"], name, domain=spec.DOMAIN, signed=1,
                    fire_fraction=float(fire_fraction), **attributes)
        editor.node("ReduceSum", [f"{name}/sent"] + ([axes] if axes is not None else []), [h], f"{name}/sent_sum",
                    keepdims=0, **({} if axes is not None else {"axes": [-1]}))
    return export_artifact(editor, model, metadata)
