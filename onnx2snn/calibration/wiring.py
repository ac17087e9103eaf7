"""How each layer and readout of the end-to-end fit reads its input: the structure's links, as the fit sees them.

The fit's *boundary values* b are, in ``tail.boundary_tensors`` order, the readouts' outputs y_o and the
decoded step tensors that analog nodes read (``Structure.decoded``).  Every layer l and readout o reads
one of (``FitInput``)::

    static     u_in = x_l                       the ANN's value at the point (depends on the inputs alone)
    link       u_in = L(ū_s, ...)               earlier layers' decoded values through a link (``links.py``;
                                                a plain chain's: the identity of one layer)
    segment    u_in = A(b_S, x)                 analog nodes (a LayerNorm) on boundary values b_S: a layer
                                                directly encoded after an analog node, fed what the SNN
                                                delivers to that node (as the artifact runs it)

and carries a gradient g = ∂L/∂u_in back the same way: through Lᵀ (``Link.backward``) to the source
layers, or through A's Jacobian J_A[x, w, m] = ∂u_in,m/∂b_w (central differences through onnxruntime, as
the tail's ``tail.py``; at the ANN's values b^ANN, and during the fit at the SNN's, ``Segment.linearise``:
a LayerNorm's J depends on its input's spread, which the SNN's first stage can miss by far) to the
boundary values it reads,
∂L/∂b_w += Σ_m J_A[x, w, m]·g[x, m]; a readout whose output a segment reads (*interior*) passes that on to
its own input.  A segment is evaluated exactly (onnxruntime on the batch); its layer is static for the T
steps (the analog node reads decoded values), so the network runs in stages, layer by layer in graph
order, each readout an interior one needs computed before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import CalibrationError
from ..links import Link
from ..structure import Structure
from .layer import flat
from .tail import boundary_tensors, jacobian_of, tail_runner


@dataclass
class Segment:
    """Analog nodes from boundary values ``boundary`` (indices into the fit's boundary list) and the graph
    inputs to one layer's input: ``evaluate(values [B, w] per boundary, rows) -> [B, m]`` (exact), the
    Jacobian ``jacobian`` [N, W_S, m] (W_S the boundary values' widths, in ``boundary`` order) at b^ANN,
    and ``differentiate(values [N, w] per boundary) -> J or None``, the Jacobian at other values."""

    boundary: list[int]
    evaluate: object
    jacobian: np.ndarray
    differentiate: object = None

    def linearise(self, values: list[np.ndarray]) -> None:
        """J at the boundary values ``values`` [N, w] (all points) instead; kept where that fails."""
        found = self.differentiate(values)
        if found is not None:
            self.jacobian = found


@dataclass
class FitInput:
    """One layer's or readout's input: ``static`` [N, m], or ``link`` of earlier layers, or ``segment``."""

    static: np.ndarray | None = None
    link: Link | None = None
    segment: Segment | None = None
    tensors: dict[str, np.ndarray] = field(default_factory=dict)   # the link's ANN tensors [N, ...]

    @property
    def sources(self) -> list[int]:
        """The layers whose decoded values the input reads through its link."""
        return list(self.link.sources) if self.link is not None else []

    def at(self, idx: np.ndarray | None) -> dict[str, np.ndarray]:
        """The link's ANN tensors (statics, the sources' model shapes) at the points ``idx`` (None: all)."""
        return self.tensors if idx is None else {name: value[idx] for name, value in self.tensors.items()}

    def _static(self, idx: np.ndarray | None) -> np.ndarray:
        return self.static if idx is None else self.static[idx]

    def mean(self, means: list[np.ndarray], idx: np.ndarray, boundary, dtype) -> np.ndarray:
        """u_in [B, m] at the points ``idx`` (None: all) from the layers' decoded means ū there (and, for a
        segment, ``boundary(k)``: the value of boundary k at those points)."""
        if self.static is not None:
            return self._static(idx).astype(dtype)
        if self.segment is not None:
            return self.segment.evaluate([boundary(k) for k in self.segment.boundary], idx).astype(dtype)
        if self.link.identity:
            return means[self.link.sources[0]]
        return flat(self.link.evaluate([means[s] for s in self.link.sources], self.at(idx)))

    def series(self, series: list[np.ndarray], idx: np.ndarray, boundary, dtype) -> tuple[np.ndarray, bool]:
        """What the layer's neurons integrate: (values, static) with values [B, m] (static) or [T, B, m]."""
        if self.static is not None:
            return self._static(idx), True
        if self.segment is not None:
            return self.segment.evaluate([boundary(k) for k in self.segment.boundary], idx).astype(dtype), True
        if self.link.identity:
            return series[self.link.sources[0]], False
        return self.link.evaluate([series[s] for s in self.link.sources], self.at(idx)), False

    def backward(self, grad: np.ndarray, idx: np.ndarray, delta: list[np.ndarray],
                 boundary_grads: dict[int, np.ndarray]) -> None:
        """Carry g = ∂L/∂u_in [B, m] back: into ``delta`` of the source layers, or (a segment) into
        ``boundary_grads`` of the boundary values it reads."""
        if self.segment is not None:
            J, start = self.segment.jacobian[idx], 0
            for k in self.segment.boundary:
                width = boundary_grads[k].shape[1]
                boundary_grads[k] += np.einsum("bwm,bm->bw", J[:, start:start + width], grad)
                start += width
        elif self.link is not None:
            parts = [grad] if self.link.identity else self.link.backward(grad, self.at(idx))
            for s, part in zip(self.link.sources, parts):
                delta[s] += part

    def tangent(self, tangents: list[np.ndarray], idx: np.ndarray, boundary) -> np.ndarray | None:
        """The input's tangent from the layers' tangents (and ``boundary(k)``'s), None for a static input."""
        if self.static is not None:
            return None
        if self.segment is not None:
            J, start, out = self.segment.jacobian[idx], 0, 0.0
            for k in self.segment.boundary:
                t = boundary(k)
                out = out + np.einsum("bwm,bw->bm", J[:, start:start + t.shape[1]], t)
                start += t.shape[1]
            return out
        if self.link.identity:
            return tangents[self.link.sources[0]]
        return flat(self.link.tangent([tangents[s] for s in self.link.sources], self.at(idx)))


@dataclass
class FitWiring:
    """The fit's inputs: per layer (``layers``), per readout (``readouts``), and the decoded boundary links
    (``decoded``, ``Structure.decoded``); ``interior``: the boundary indices a segment reads, each with the
    last layer its value depends on (its gradient is complete once the layers after it are done)."""

    layers: list[FitInput]
    readouts: list[FitInput]
    decoded: list[FitInput]
    points: int
    interior: dict[int, int] = field(default_factory=dict)


def fit_wiring(structure: Structure, ann: dict[str, np.ndarray]) -> FitWiring:
    """The fit's inputs for ``structure`` at the calibration points ``ann`` (the ANN's tensors and the
    graph inputs); raises ``CalibrationError`` where a link or segment does not map points one to one
    onto rows (the fit draws batches of points)."""
    boundary = boundary_tensors(structure)
    N = flat(ann[structure.layers[0].activation.output]).shape[0]
    depends = boundary_dependence(structure, set(boundary))

    def linked(link: Link) -> FitInput:
        tensors = {name: ann[name] for name in link.statics + link.source_tensors} if not link.identity else {}
        if any(value.shape[0] != N for value in tensors.values()):
            raise CalibrationError(f"'{link.output}': the end-to-end fit through a link needs one row per point")
        return FitInput(link=link, tensors=tensors)

    layers = []
    for spec in structure.layers:
        reads = depends(spec.affine.input) if spec.static else []
        if spec.static and not reads:
            layers.append(FitInput(static=flat(ann[spec.affine.input])))
        elif spec.static:
            layers.append(FitInput(segment=_segment(structure, ann, boundary, reads, spec.affine.input, N)))
        else:
            layers.append(linked(spec.link))
    readouts = [linked(structure.input_link(a)) for a in structure.readouts]
    decoded = [linked(link) for link in structure.decoded]
    interior = {}
    for fit in layers:
        if fit.segment is not None:
            for k in fit.segment.boundary:
                interior[k] = max((readouts + decoded)[k].sources)
    return FitWiring(layers, readouts, decoded, N, interior)


def boundary_dependence(structure: Structure, boundary: set[str]):
    """A function: tensor → the boundary tensors it is computed from (the walk stops at each)."""
    model = structure.model
    producer = {o: n for n in model.graph.node for o in n.output}

    def reads(tensor: str) -> list[str]:
        found, todo, seen = [], [tensor], set()
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            if t in boundary and t != tensor:
                found.append(t)
            elif t in producer:
                todo.extend(i for i in producer[t].input if i)
        return found
    return reads


def _segment(structure: Structure, ann: dict[str, np.ndarray], boundary: list[str], reads: list[str],
             tensor: str, N: int) -> Segment:
    """The analog nodes from the boundary tensors ``reads`` (and the graph inputs) to ``tensor``."""
    model = structure.model
    names = [b for b in boundary if b in reads]
    inputs = [i.name for i in model.graph.input if i.name in ann]
    if any(ann[name].shape[0] != N or ann[name].ndim != 2 for name in names + inputs + [tensor]):
        raise CalibrationError(f"'{tensor}': the end-to-end fit through analog nodes needs one row per point")
    run = tail_runner(model, names, [tensor])
    base = {name: ann[name] for name in names + inputs}

    def evaluate(values: list[np.ndarray], idx: np.ndarray | None) -> np.ndarray:
        feed = {name: ann[name] if idx is None else ann[name][idx] for name in inputs}
        feed.update({name: v.astype(ann[name].dtype) for name, v in zip(names, values)})
        return run(feed)

    def differentiate(values: list[np.ndarray]) -> np.ndarray | None:
        moved = {**base, **{name: v.reshape(ann[name].shape).astype(ann[name].dtype) for name, v in zip(names, values)}}
        return jacobian_of(run, moved, names, run(moved))

    jacobian = differentiate([ann[name] for name in names])
    if jacobian is None:
        raise CalibrationError(f"'{tensor}': the analog nodes before it cannot be linearised for the end-to-end "
                               f"fit (Jacobian too large or not finite); use --pieces auto")
    return Segment([boundary.index(name) for name in names], evaluate, jacobian, differentiate)
