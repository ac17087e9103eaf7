"""The output error of a separable network (SPINN), measured on a grid of its calibration rows.

A separable network's SNN delivers per-axis boundary values b_a (the readouts of each axis network,
e.g. r features F_a[r, x_a]); the analog tail (an ``Einsum``) combines them on the grid of the axes::

    y(x_1, …, x_d) = Σ_r Π_a F_a[r, x_a]

so the promised error, relative L2 of y against the ANN, is not the relative error of the features:
errors of the r terms partly cancel in the sum, and each feature is weighted by the other axes' features.
On spinn_burgers at T = 32, features at the budget's 4.1e-3 gave an output error of 9.0e-4 on fresh
points.  ``GridError`` runs the tail exactly (onnxruntime, ``tail.tail_outputs_runner``) on the grid of
the first m calibration rows of every axis, m = ⌈GRID_POINTS^(1/d)⌉, and returns

    E = ( Σ_o ‖y_o(b) - y_o(b^ANN)‖² / ‖y_o(b^ANN)‖² )^½       over the graph outputs o,

the quantity the default conversion promises (``options.PROMISED_ERROR``), for the budget's passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx

from ..structure import Structure
from .tail import boundary_tensors, tail_outputs_runner

# Grid points of the estimate.  Burgers' error sits at its shock: with 64 rows per axis (4,096 points) the
# estimate for one spinn_burgers SNN was 2.7e-3 on the calibration rows and 1.7e-3 on other random rows;
# with 1,024 rows, 1.30e-3 and 1.36e-3.
GRID_POINTS = 1 << 20


@dataclass
class GridError:
    """``boundary`` tensor names (``tail.boundary_tensors`` order), ``rows`` per axis, the ANN's
    ``outputs`` on the grid, and ``run`` ({tensor: value} → graph outputs)."""

    boundary: list[str]
    rows: int
    base: dict[str, np.ndarray]
    outputs: list[np.ndarray]
    run: Callable[[dict], list[np.ndarray]]

    def output_error(self, values: list[np.ndarray]) -> float:
        """E above, for boundary values [N_a, w] on all calibration rows, in ``boundary`` order."""
        moved = dict(self.base)
        for name, value in zip(self.boundary, values):
            shape = (self.rows,) + self.base[name].shape[1:]
            moved[name] = value[:self.rows].reshape(shape).astype(self.base[name].dtype)
        total = 0.0
        for got, expected in zip(self.run(moved), self.outputs):
            total += float(np.sum((got - expected) ** 2) / max(np.sum(expected ** 2), 1e-300))
        return float(np.sqrt(total))


def grid_error(model: onnx.ModelProto, structure: Structure, ann: dict[str, np.ndarray],
               feeds: dict[str, np.ndarray]) -> GridError | None:
    """``GridError`` for a separable network whose calibration ``feeds`` (one input per axis, rows first)
    and ANN boundary values ``ann`` are given; None where the tail cannot be extracted or run."""
    boundary = boundary_tensors(structure)
    outputs = [o.name for o in model.graph.output]
    if any(name not in ann for name in boundary) or set(boundary) & set(outputs):
        return None
    rows = min([int(np.ceil(GRID_POINTS ** (1.0 / len(feeds)) - 1e-9))]
               + [v.shape[0] for v in list(feeds.values()) + [ann[name] for name in boundary]])
    base = {name: value[:rows] for name, value in feeds.items()}
    base.update({name: ann[name][:rows] for name in boundary})
    try:
        run = tail_outputs_runner(model, boundary, outputs)
        expected = run(base)
    except Exception:  # noqa: BLE001 - any failure of extraction or onnxruntime: the budget keeps its proxy
        return None
    if not all(np.all(np.isfinite(y)) for y in expected):
        return None
    return GridError(boundary=boundary, rows=rows, base=base, outputs=expected, run=run)
