"""Static layers whose activation oscillates are computed once per point, not expanded into neurons.

A piecewise-linear unit sends about T spikes for every piece its input crosses between the unit's rest
value and the input, so its spikes grow with the activation's total variation on that path, not with the
value it delivers.  For a unit with calibration currents z on [lo, hi]::

    oscillation = TV(h on [lo, hi]) / (max h - min h on [lo, hi])        (1 for a monotone h)

A static layer (its input fixed for the point) whose median unit oscillates ``OSCILLATION_LIMIT`` times or
more (SIREN's sin(30·z): 7.7 on tests/fixtures/torch_siren.onnx; every tanh, sin, GELU, swish, softplus
first layer of the fixtures and shipped models: 1.0, at most 1.3 for a single unit) is computed once per
point and its output encoded into the next layer's current, as ``--first-layer analog`` does for any first
layer: n activations and the next affine's MACs instead of pieces that each fire T times.
"""

from __future__ import annotations

import numpy as np

from .structure import Structure

OSCILLATION_LIMIT = 2.0
GRID = 2001          # points of [lo, hi] per unit on which the total variation is summed


def oscillating_static_layers(structure: Structure, ann: dict[str, np.ndarray]) -> dict[str, str]:
    """{layer name: reason} for the static layers whose median oscillation reaches ``OSCILLATION_LIMIT``."""
    chosen = {}
    for layer in structure.layers:
        if not layer.static:
            continue
        z = ann[layer.activation.input].reshape(-1, layer.width)
        ratio = float(np.median(oscillation(layer.activation, z.min(axis=0), z.max(axis=0))))
        if ratio >= OSCILLATION_LIMIT:
            chosen[layer.name] = (f"static layer whose activation oscillates ({ratio:.1f}x its range on the data): "
                                  f"computed once per point and encoded into the next layer")
    return chosen


def oscillation(h, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """TV(h on [lo, hi]) / (max h - min h on [lo, hi]) per unit [n] (module docstring), on ``GRID`` points."""
    grid = (lo + (hi - lo) * np.linspace(0.0, 1.0, GRID)[:, None]).astype(lo.dtype)
    values = h(grid).astype(np.float64)
    spread = np.maximum(values.max(axis=0) - values.min(axis=0), 1e-12)
    return np.abs(np.diff(values, axis=0)).sum(axis=0) / spread
