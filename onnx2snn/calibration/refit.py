"""Closed-form refit of an affine layer to the ANN, given the SNN's decoded inputs.

    [W; b] = argmin  ‖ [ū, 1]·[W; b] - Y ‖² + λ‖W‖²

with ū [N, m] the time-averaged decoded SNN values feeding the layer and Y [N, n] the ANN's output of the
same layer (a pre-activation, or the network output for a readout).  Solved as the ridge normal equations
with λ = ``ridge``·tr(ūᵀū)/m, so the regularisation is scale-free.
"""

from __future__ import annotations

import numpy as np

from ..errors import CalibrationError


def refit_affine(u: np.ndarray, target: np.ndarray, ridge: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Returns (W [m, n], b [n]) in ``u``'s dtype."""
    N, m = u.shape
    if N < m + 1:
        raise CalibrationError(f"refit needs at least {m + 1} calibration points for a layer of fan-in {m}, got {N}")
    x = np.concatenate([u.astype(np.float64), np.ones((N, 1))], axis=1)
    gram = x.T @ x
    lam = ridge * np.trace(gram[:m, :m]) / max(m, 1) + 1e-12
    gram[np.arange(m), np.arange(m)] += lam
    solution = np.linalg.solve(gram, x.T @ target.astype(np.float64))
    if not np.all(np.isfinite(solution)):
        raise CalibrationError("refit produced non-finite weights; the calibration data may be degenerate")
    return solution[:m].astype(u.dtype), solution[m].astype(u.dtype)
