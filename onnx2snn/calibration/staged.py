"""Layers directly encoded after analog nodes, fed in the layer-by-layer pass what the SNN delivers.

A static layer (no link: ``SpikingLayer.static``) whose input an analog node computes from step tensors
(a LayerNorm, the modified MLP's gate products ``(1 - Z)·U + Z·V`` when the gates spike) reads, in the
artifact, that node evaluated on the decoded values of the layers before it: the network runs in stages.
The layer-by-layer pass feeds it the same (as the end-to-end fit does, ``wiring.py``)::

    u_in = A(b_S, x)      A the analog nodes from the boundary values b_S it reads (``tail.boundary_tensors``:
                          readouts' outputs ū·W + b refit by least squares, decoded step tensors ū) and the
                          graph inputs x, evaluated exactly by onnxruntime on the calibration points

instead of the ANN's u_in, so that the earlier stages' errors reach it (and the auto passes' measured output
error, ``pipeline._output_error``, counts them) and its affine can be refit to them.  An identity layer
(an activation reading the analog node itself: LayerNorm → tanh) has no affine to refit and keeps the ANN's
u_in: fed the SNN's, the LayerNorm fixture's error on fresh points did not move (3.06e-3 → 3.09e-3 at T = 32,
the measured one 2.71e-3 → 3.08e-3), and the changed ranges put one unit's potential on a float32 edge
where the runtimes then differed by one spike in 318,000.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..structure import Structure
from .flows import link_mean, readout_mean
from .layer import LayerTrace, flat
from .refit import refit_affine
from .tail import boundary_tensors, tail_runner
from .wiring import boundary_dependence

StagedInput = Callable[[list[LayerTrace]], np.ndarray]


def staged_inputs(structure: Structure, ann: dict[str, np.ndarray]) -> dict[int, StagedInput]:
    """By layer index, for each static layer with an affine whose input depends on boundary values: traces
    of the layers before it → its input u_in [N, m] (see above).  Empty where rows do not map one to one
    onto points."""
    boundary = boundary_tensors(structure)
    depends = boundary_dependence(structure, set(boundary))
    inputs = [i.name for i in structure.model.graph.input if i.name in ann]
    found: dict[int, StagedInput] = {}
    for k, spec in enumerate(structure.layers):
        reads = depends(spec.affine.input) if spec.static and not spec.identity else []
        names = [b for b in boundary if b in reads]
        if not names:
            continue
        rows = {flat(ann[name]).shape[0] for name in names + inputs + [spec.affine.input]}
        if len(rows) != 1 or any(ann[name].ndim != 2 for name in names + inputs):
            return {}
        found[k] = _stage(structure, ann, boundary, names, inputs, spec.affine.input)
    return found


def _stage(structure: Structure, ann: dict[str, np.ndarray], boundary: list[str], names: list[str],
           inputs: list[str], tensor: str) -> StagedInput:
    run = tail_runner(structure.model, names, [tensor])
    readouts = {a.output: a for a in structure.readouts}
    decoded = {link.output: link for link in structure.decoded}

    def value(name: str, traces: list[LayerTrace]) -> np.ndarray:
        if name in readouts:
            mean = readout_mean(structure, readouts[name], traces, ann)
            weight, bias = refit_affine(mean, flat(ann[name]).astype(np.float64))
            return mean.astype(np.float64) @ weight + bias
        return link_mean(decoded[name], traces, ann)

    def evaluate(traces: list[LayerTrace]) -> np.ndarray:
        feed = {name: ann[name] for name in inputs}
        feed.update({name: value(name, traces).reshape(ann[name].shape).astype(ann[name].dtype) for name in names})
        return run(feed).astype(ann[tensor].dtype)

    return evaluate
