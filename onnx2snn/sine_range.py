"""Range reduction of a sine whose input is static for the point: the spiking layer sees one monotone branch.

A static layer (its input fixed for the point, ``Structure.static``) whose activation ends in ``Sin`` and
whose units cross several periods (SIREN's second sine once its first is computed once per point,
``oscillation.py``) needs pieces for every monotone stretch, and every piece crossed fires every step.  Its
argument x is computed once per point anyway, so the periodicity is taken out there, exactly::

    w = (x + π/2) mod 2π              ∈ [0, 2π)        (floor mod, from fmod: ((a fmod 2π) + 2π) fmod 2π)
    k = ⌊w / π⌋                       ∈ {0, 1}
    r = w − π/2 − k·π                 ∈ [−π/2, π/2)
    s = 1 − 2k                        ∈ {+1, −1}
    sin(x) = s · sin(r)

(x = w − π/2 + 2πm: for k = 0, sin(x) = sin(r); for k = 1, r = w − 3π/2 and sin(x) = sin(r + π) = −sin(r).)
k and s come from the same w, so the two branches always agree.  The rewritten graph computes w, k, r, s as
analog nodes on the static x (Add, Mod, Div, Floor, Mul, Sub: standard ops every runtime executes), then
``Sin(r)`` — a pointwise activation of an analog node's output, so the structure analysis makes it a
directly encoded spiking layer (``linked.py``) on the monotone branch [−π/2, π/2] — and ``Mul(sin r, s)``,
a product with a static gate, which is a link: the layer's events reach the next affine scaled by s.  The
``Sin`` node keeps its name and the product keeps the original output's name, so every tensor of the
original graph keeps its meaning (the ANN reference, the report's per-activation rows).

The activation search (``activations.ELEMENTWISE``) does not pass through ``Mod``: the affine before x has
no activation after it any more (it is computed once per point), and ``Sin(r)`` is found on r alone.

Chosen where it pays: a static spiking layer whose activation is ``Sin`` after linear elementwise ops
(sin(c·z + d)) and whose median unit oscillates ``OSCILLATION_LIMIT`` times its range or more
(``oscillation.oscillation``); a layer on one monotone stretch (every tanh/sin first layer of the shipped
models: 1.0) is left as it is.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .activations import LINEAR
from .oscillation import OSCILLATION_LIMIT, oscillation
from .structure import RANGE_REDUCTION, Structure

MIN_OPSET = 10      # Mod
TAG = "/range_"     # the reduction of Sin output y names its tensors y/range_a, ..., y/range_r, y/range_s


def reducible_sines(structure: Structure, ann: dict[str, np.ndarray]) -> list[str]:
    """Names of the ``Sin`` nodes to range-reduce: those ending a static spiking layer's activation
    sin(c·z + d) whose median unit oscillates ``OSCILLATION_LIMIT`` times or more on its calibration
    currents (module docstring)."""
    chosen = []
    for layer in structure.layers:
        *before, sine = layer.activation.nodes
        if not layer.static or sine.op_type != "Sin" or not sine.name or any(n.op_type not in LINEAR for n in before):
            continue
        z = ann[layer.activation.input].reshape(-1, layer.width)
        if float(np.median(oscillation(layer.activation, z.min(axis=0), z.max(axis=0)))) >= OSCILLATION_LIMIT:
            chosen.append(sine.name)
    return chosen


def reduce_sines(model: onnx.ModelProto, names: list[str], dtype: np.dtype) -> onnx.ModelProto:
    """A copy of ``model`` with each ``Sin`` node named in ``names`` replaced by its range reduction
    (module docstring); ``dtype``: the model's float type.  ``model`` itself is not changed."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    opset = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), 1)
    if not names or opset < MIN_OPSET:
        return out
    prefix = "onnx2snn/sine_range/"
    constants = {"half_pi": np.pi / 2, "pi": np.pi, "two_pi": 2 * np.pi, "minus_two": -2.0, "one": 1.0}
    out.graph.initializer.extend(numpy_helper.from_array(np.asarray(v, dtype=dtype), prefix + k)
                                 for k, v in constants.items())
    c = {k: prefix + k for k in constants}
    nodes = []
    for node in out.graph.node:
        if node.op_type != "Sin" or node.name not in names:
            nodes.append(node)
            continue
        x, y, t = node.input[0], node.output[0], node.output[0] + TAG

        def op(kind, inputs, output, **attrs):
            nodes.append(helper.make_node(kind, inputs, [t + output], name=t + output, doc_string=RANGE_REDUCTION,
                                          **attrs))
            return t + output

        a = op("Add", [x, c["half_pi"]], "a")
        w = op("Mod", [op("Add", [op("Mod", [a, c["two_pi"]], "fmod", fmod=1), c["two_pi"]], "shifted"),
                       c["two_pi"]], "w", fmod=1)
        k = op("Floor", [op("Div", [w, c["pi"]], "w_over_pi")], "k")
        r = op("Sub", [op("Sub", [w, c["half_pi"]], "w_centered"), op("Mul", [k, c["pi"]], "k_pi")], "r")
        s = op("Add", [op("Mul", [k, c["minus_two"]], "minus_2k"), c["one"]], "s")
        nodes.append(helper.make_node("Sin", [r], [t + "sin"], name=node.name))
        nodes.append(helper.make_node("Mul", [t + "sin", s], [y], name=t + "signed", doc_string=RANGE_REDUCTION))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def sines_reduced_in(artifact: onnx.ModelProto, model: onnx.ModelProto) -> list[str]:
    """Names of ``model``'s ``Sin`` nodes that ``artifact`` (a conversion of ``model``) range-reduces: those
    whose output y has a reduced argument y/range_r there (``reduce_sines``; by name: the artifact's graph
    editing keeps node names, not their doc strings)."""
    reduced = {n.output[0].removesuffix(TAG + "r") for n in artifact.graph.node if n.output[0].endswith(TAG + "r")}
    return [n.name for n in model.graph.node if n.op_type == "Sin" and n.output[0] in reduced]
