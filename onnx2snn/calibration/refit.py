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


def refit_decode(rates: np.ndarray, unit: np.ndarray, target: np.ndarray, weight: np.ndarray,
                 offset: np.ndarray, ridge: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit refit of the decode weights of a PWL-expanded layer to the ANN activation.

    For unit j with its neurons' rates R_j [N, K_j] (the SNN's own, quantisation and input fluctuations
    included; ``rates`` [N, M] holds all live neurons, ``unit`` [M] their units) and the ANN's h_j [N]::

        [w_j; c_j] = argmin ‖R_j w + c - h_j‖² + λ‖w - w_j⁰‖²

    a ridge pull towards the interpolating slopes w⁰ (neurons that are always on or always off carry no
    information of their own), λ = ``ridge``·tr(R_jᵀR_j)/K_j.  ``weight`` [M] and ``offset`` [n] are the
    current values; returns the refit (w [M], c [n]).
    """
    N = rates.shape[0]
    w_new, c_new = weight.astype(np.float64).copy(), offset.astype(np.float64).copy()
    ones = np.ones((N, 1))
    for j in range(target.shape[1]):
        members = np.flatnonzero(unit == j)
        if members.size == 0:
            continue
        x = np.concatenate([rates[:, members].astype(np.float64), ones], axis=1)
        gram = x.T @ x
        lam = ridge * np.trace(gram[:-1, :-1]) / members.size + 1e-12
        reg = np.full(members.size + 1, lam)
        reg[-1] = 0.0
        prior = np.concatenate([weight[members].astype(np.float64), [0.0]])
        solution = np.linalg.solve(gram + np.diag(reg), x.T @ target[:, j].astype(np.float64) + reg * prior)
        if np.all(np.isfinite(solution)):
            w_new[members], c_new[j] = solution[:-1], solution[-1]
    return w_new.astype(weight.dtype), c_new.astype(offset.dtype)
