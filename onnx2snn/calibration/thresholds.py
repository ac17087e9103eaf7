"""Thresholds from calibration data, and the papers' one signed neuron per unit.

One signed IF neuron per unit approximates clip(z, -θ-, θ+), quantised to θ/T.  Thresholds per unit j:

* ``max``: θ+ = max h, θ- = -min h over the calibration set (the activation's exact range; the papers');
* ``percentile:P``: θ+ = P-th percentile of h, θ- = -(100-P)-th percentile;
* ``mse``: θ± = q·max z± (or the ``max`` thresholds) from a search minimising
  min_{a,c} E|h(z) - (a·Q_θ(z) + c)|², Q_θ the T-step rate of the neuron itself (simulated exactly),
  with the decode gain a and offset c fitted by least squares (the next layer's refit absorbs them anyway).

``scope="layer"`` uses one value per layer (the max / percentile over all units, or one q for all).
A side the unit never reaches (θ ≤ 0: ReLU's negative side, a dead unit) gets θ = inf: the neuron never
fires on that side, so no division by zero and no spurious spikes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from runtimes.neuron import NeuronParams, simulate_constant

from ..errors import CalibrationError

MSE_CANDIDATES = np.geomspace(0.08, 1.0, 28)
MSE_POINTS = 1024


def parse_threshold(method: str) -> tuple[str, str]:
    """'max', 'percentile:P', 'mse', each optionally suffixed '@layer' → (method, scope)."""
    method, _, scope = method.partition("@")
    scope = scope or "neuron"
    if scope not in ("neuron", "layer"):
        raise CalibrationError(f"threshold scope '{scope}' must be neuron or layer")
    if method not in ("max", "mse") and not method.startswith("percentile:"):
        raise CalibrationError(f"unknown threshold method {method!r}; use max, percentile:P or mse")
    if method.startswith("percentile:"):
        parse_percentile(method)
    return method, scope


def parse_percentile(method: str) -> float:
    try:
        p = float(method.split(":", 1)[1])
    except ValueError:
        p = float("nan")
    if not 50.0 < p <= 100.0:
        raise CalibrationError(f"threshold '{method}': P must be in (50, 100]")
    return p


def activation_range(h: np.ndarray, method: str, scope: str = "neuron") -> tuple[np.ndarray, np.ndarray]:
    """Per-unit (lo, hi) of activation values ``h`` [N, n]."""
    axis = 0 if scope == "neuron" else None
    if method == "max":
        lo, hi = h.min(axis=axis), h.max(axis=axis)
    else:
        p = parse_percentile(method)
        lo, hi = np.percentile(h, 100.0 - p, axis=axis), np.percentile(h, p, axis=axis)
    n = h.shape[1]
    return np.broadcast_to(lo, (n,)).astype(h.dtype), np.broadcast_to(hi, (n,)).astype(h.dtype)


def neuron_kind(neuron: str, v0_fraction: float | None = None) -> tuple[float, float]:
    """(fire fraction a, initial potential as a fraction of θ) of 'round' or 'floor' neurons."""
    if neuron == "round":
        return 0.5, 0.0 if v0_fraction is None else v0_fraction
    if neuron == "floor":
        return 1.0, 0.5 if v0_fraction is None else v0_fraction
    raise CalibrationError(f"unknown neuron {neuron!r}; use round or floor")


def signed_neurons(lo: np.ndarray, hi: np.ndarray, neuron: str, v0_fraction: float | None = None,
                   shift_timesteps: int | None = None) -> NeuronParams:
    """One signed neuron per unit with θ+ = hi, θ- = -lo.

    ``shift_timesteps`` = T adds Deng & Gu's bias shift θ+/(2T) to the neuron's input (floor neurons).
    """
    theta_pos = np.where(hi > 0, hi, np.inf)[:, None]
    theta_neg = np.where(lo < 0, -lo, np.inf)[:, None]
    fraction, v0_part = neuron_kind(neuron, v0_fraction)
    finite_pos = np.where(np.isfinite(theta_pos), theta_pos, 0.0)
    bias = finite_pos / (2 * shift_timesteps) if shift_timesteps else np.zeros_like(theta_pos)
    return NeuronParams(bias=bias.astype(theta_pos.dtype), theta_pos=theta_pos, theta_neg=theta_neg,
                        v0=(v0_part * finite_pos).astype(theta_pos.dtype), signed=True, fire_fraction=fraction)


def phase_neurons(neurons: NeuronParams) -> NeuronParams:
    """Phase-coded neurons (``runtimes.spec``) for a rate-coded unit's range: symmetric thresholds
    θ = max(θ+, θ-) (over the finite ones), the membrane saturating at ±θ.  Symmetric, because a greedy
    signed expansion whose positive and negative digits differ in size cannot cancel an overshoot of the
    larger side with the smaller digits that follow.  A unit whose range is {0} (a dead ReLU) gets none
    (θ = inf: it sends nothing and decodes to 0)."""
    finite = lambda t: np.where(np.isfinite(t), t, 0.0)
    theta = np.maximum(finite(neurons.theta_pos), finite(neurons.theta_neg))
    theta = np.where(theta > 0, theta, np.inf).astype(neurons.theta_pos.dtype)     # a dead unit: no neuron
    return replace(neurons, theta_pos=theta, theta_neg=theta.copy(), v0=np.zeros_like(theta),
                   bias=np.zeros_like(theta), signed=True, fire_fraction=0.5, coding="phase")


def mse_neurons(z: np.ndarray, h: np.ndarray, timesteps: int, neuron: str, scope: str = "neuron",
                v0_fraction: float | None = None, shift: bool = False, rng: np.random.Generator | None = None):
    """Search θ± minimising the best affine fit of h by the neuron's exact T-step rate, among
    θ± = q·max z± (q in ``MSE_CANDIDATES``) and the ``max`` thresholds θ+ = max h, θ- = -min h.

    Returns (NeuronParams, decode gain a [n], decode offset c [n]).
    """
    if z.shape[0] > MSE_POINTS:
        pick = (rng or np.random.default_rng(0)).choice(z.shape[0], MSE_POINTS, replace=False)
        z, h = z[pick], h[pick]
    top, bottom = np.maximum(z.max(axis=0), 0.0), np.maximum(-z.min(axis=0), 0.0)
    candidates = [activation_range(h, "max", scope)] + [(-q * bottom, q * top) for q in MSE_CANDIDATES]

    def fit(lo, hi):
        params = signed_neurons(lo, hi, neuron, v0_fraction, timesteps if shift else None)
        return _affine_fit(simulate_constant(z, params, timesteps)[0][..., 0], h)

    fits = [fit(lo, hi) for lo, hi in candidates]              # (a, c, error) per candidate
    errors = np.stack([err for _, _, err in fits])             # [candidates, n]
    if scope == "layer":
        best = np.full(z.shape[1], int(np.argmin(errors.sum(axis=1))))
    else:
        best = np.argmin(errors, axis=0)
    units = np.arange(z.shape[1])
    pick = lambda k: np.stack([fits[c][k] for c in range(len(fits))])[best, units]
    lo = np.stack([c[0] for c in candidates])[best, units]
    hi = np.stack([c[1] for c in candidates])[best, units]
    params = signed_neurons(lo, hi, neuron, v0_fraction, timesteps if shift else None)
    return params, pick(0).astype(z.dtype), pick(1).astype(z.dtype)


def _affine_fit(x: np.ndarray, y: np.ndarray):
    """Per column least squares y ≈ a·x + c; returns (a, c, mean squared residual)."""
    xm, ym = x.mean(axis=0), y.mean(axis=0)
    dx, dy = x - xm, y - ym
    var = (dx * dx).mean(axis=0)
    a = np.where(var > 1e-20, (dx * dy).mean(axis=0) / np.where(var > 1e-20, var, 1.0), 0.0)
    c = ym - a * xm
    residual = ((dy - a * dx) ** 2).mean(axis=0)
    return a, c, residual
