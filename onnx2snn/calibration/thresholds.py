"""Thresholds from calibration data, and the papers' one signed neuron per unit.

One signed IF neuron per unit approximates clip(z, -θ-, θ+) (rate of a rounding neuron, error ≤ θ/2T).
Thresholds come from the activation values h(z) on the calibration set, per unit:

* ``max``: θ+ = max h, θ- = -min h (exact range);
* ``percentile:P``: θ+ = P-th percentile of h, θ- = -(100-P)-th percentile;

A side the activation never reaches (θ ≤ 0: ReLU's negative side, a dead unit) gets θ = inf: the neuron
never fires on that side, so no division by zero and no spurious spikes.
"""

from __future__ import annotations

import numpy as np

from runtimes.neuron import NeuronParams

from ..errors import CalibrationError


def activation_range(h: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit (lo, hi) of activation values ``h`` [N, n]."""
    if method == "max":
        return h.min(axis=0), h.max(axis=0)
    if method.startswith("percentile:"):
        p = parse_percentile(method)
        return np.percentile(h, 100.0 - p, axis=0).astype(h.dtype), np.percentile(h, p, axis=0).astype(h.dtype)
    raise CalibrationError(f"unknown threshold method {method!r}; use max, percentile:P or mse")


def parse_percentile(method: str) -> float:
    try:
        p = float(method.split(":", 1)[1])
    except ValueError:
        p = float("nan")
    if not 50.0 < p <= 100.0:
        raise CalibrationError(f"threshold '{method}': P must be in (50, 100]")
    return p


def signed_neurons(lo: np.ndarray, hi: np.ndarray, neuron: str) -> NeuronParams:
    """One signed neuron per unit with θ+ = hi, θ- = -lo; ``neuron`` is 'round' or 'floor'."""
    theta_pos = np.where(hi > 0, hi, np.inf)[:, None]
    theta_neg = np.where(lo < 0, -lo, np.inf)[:, None]
    if neuron == "round":
        fraction, v0 = 0.5, np.zeros_like(theta_pos)
    elif neuron == "floor":
        fraction, v0 = 1.0, np.where(np.isfinite(theta_pos), theta_pos, 0.0) / 2
    else:
        raise CalibrationError(f"unknown neuron {neuron!r}; use round or floor")
    return NeuronParams(bias=np.zeros_like(theta_pos), theta_pos=theta_pos, theta_neg=theta_neg,
                        v0=v0.astype(theta_pos.dtype), signed=True, fire_fraction=fraction)
