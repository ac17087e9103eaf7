"""The SNN's and the ANN's outputs on a regular grid over (a slice of) the domain: the report's picture of
where on the domain the SNN is wrong.

The domain's coordinates are its inputs' features in order, c = (input, feature, lo, hi).  The grid spans
the first two coordinates (one for a 1-D domain) with ``CURVE_POINTS`` points (1-D) or ``MAP_POINTS`` per
axis (2-D) from lo to hi; every other coordinate is held at its interval's midpoint (a slice, named in
``Field.slice``).  A separable (grid) network gets the same grid as its per-axis inputs: the chosen axes
as ``linspace`` columns, the others as their single midpoint.  The value shown is the first component of
the first graph output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ann import run_ann
from .domain import Domain
from .importer import ImportedModel
from .inputs import is_grid_model
from .report import exact_reference

CURVE_POINTS = 512
MAP_POINTS = 64


@dataclass
class Field:
    """``axes``: [(coordinate label, values)] of the one or two grid axes; ``ann``, ``snn`` and ``exact``
    (or None): the output on that grid, shape [n] or [n1, n2]; ``slice``: the coordinates held fixed;
    ``output``: what is shown."""

    axes: list[tuple[str, np.ndarray]]
    ann: np.ndarray
    snn: np.ndarray
    exact: np.ndarray | None
    slice: dict[str, float]
    output: str

    def to_dict(self) -> dict:
        """JSON form: arrays flattened in C order (6 significant digits), with the axes' lengths."""
        as_list = lambda a: None if a is None else [float(f"{x:.6g}") for x in np.ravel(a)]
        return {"axes": [{"name": n, "values": as_list(v)} for n, v in self.axes], "ann": as_list(self.ann),
                "snn": as_list(self.snn), "exact": as_list(self.exact), "slice": self.slice, "output": self.output}


def coordinates(box: Domain) -> list[tuple[str, int, float, float]]:
    return [(name, k, lo, hi) for name, intervals in box.items() for k, (lo, hi) in enumerate(intervals)]


def field(imported: ImportedModel, network, box: Domain, timesteps: int | None = None) -> Field:
    """The outputs of ``network`` (a ``runtimes.SpikingNetwork`` of ``imported``) and of the ANN on the
    grid of the module docstring, run for ``timesteps`` (default: the artifact's)."""
    coords = coordinates(box)
    chosen = coords[:2]
    size = CURVE_POINTS if len(chosen) == 1 else MAP_POINTS
    grids = [np.linspace(lo, hi, size) for _, _, lo, hi in chosen]
    label = lambda c: f"{c[0]}[{c[1]}]" if len(box[c[0]]) > 1 else c[0]
    held = {label(c): 0.5 * (c[2] + c[3]) for c in coords[2:]}
    if is_grid_model(imported):
        points = {}
        for c in coords:
            values = grids[chosen.index(c)] if c in chosen else np.array([0.5 * (c[2] + c[3])])
            points[c[0]] = values.reshape(-1, 1).astype(imported.dtype)
    else:
        mesh = np.meshgrid(*grids, indexing="ij")
        count = mesh[0].size
        points = {}
        for name, intervals in box.items():
            values = np.tile([0.5 * (lo + hi) for lo, hi in intervals], (count, 1))
            for c, m in zip(chosen, mesh):
                if c[0] == name:
                    values[:, c[1]] = m.ravel()
            rank = len(imported.input_shapes[name])
            shape = (count,) + (1,) * max(rank - 2, 0) + (len(intervals),)
            points[name] = values.reshape(shape).astype(imported.dtype)
    names = [o.name for o in imported.model.graph.output]
    ann = run_ann(imported.model, points, source=imported.path)
    snn = network.run(points, timesteps=timesteps)
    shape = tuple(len(g) for g in grids)
    first = lambda y: np.asarray(y, np.float64).reshape(shape + (-1,))[..., 0]
    exact = exact_reference(imported, points, ann, names)
    if exact is not None:
        exact = first(exact[: ann[names[0]].size].reshape(ann[names[0]].shape))
    return Field(axes=[(label(c), g) for c, g in zip(chosen, grids)], ann=first(ann[names[0]]),
                 snn=first(snn[names[0]]), exact=exact, slice=held, output=f"{names[0]}[0]")
