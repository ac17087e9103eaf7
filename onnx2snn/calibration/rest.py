"""Where a one-neuron unit is silent: moving its rest value to where its spikes cost least.

A unit of one signed neuron sends y = c + w·ρ with ρ = clip(z + β, -θ-, θ+) its rate (``runtimes.neuron``);
a rounding neuron spends about T·ρ/θ+ spikes for ρ > 0 and T·(-ρ)/θ- for ρ < 0.  For any m in [-θ-, θ+]

    c' = c + w·m,   β' = β - m,   θ+' = θ+ - m,   θ-' = θ- + m

gives c' + w·clip(z + β', -θ-', θ+') = c + w·clip(z + β, -θ-, θ+): the same function, whose spikes now
send the deviation from m.  A unit saturated at +θ+ on most points spends a spike every step with m = 0
and none with m = θ+ (the positive side then has no neuron: θ+' = inf clips at m exactly); the price is
a coarser step on the other side (θ-' = θ- + m: the rounding error of those points grows by that factor).
``move_rest`` picks, per unit, the m of least expected spikes per step over the unit's rates
ρ = clip(z̄ + β, -θ-, θ+) at its mean currents z̄ on the calibration points,

    S(m) = E_x [ (ρ - m)⁺ / (θ+ - m) + (m - ρ)⁺ / (θ- + m) ],

among m = 0 and the deciles of ρ, kept only where it saves at least ``SAVING`` of S(0): unequal
thresholds cost spikes S does not count (a rounding neuron with θ+ > θ- follows a positive spike
by a negative one at small rates: ρ = 0.2, θ+ = 0.8, θ- = 0.2 spends 42 spikes in 64 steps where S
says 16).  An m within ``SNAP`` of an end of the range is moved onto it.
"""

from __future__ import annotations

import numpy as np

from runtimes.neuron import NeuronParams

from .layer import ConvertedLayer

SNAP = 0.05          # of a unit's range θ+ + θ-
SAVING = 0.2         # of S(0): the least saving of expected spikes that moves a unit's rest value
QUANTILES = np.linspace(0.0, 1.0, 11)


def expected_spikes(rho: np.ndarray, m: np.ndarray, theta_pos: np.ndarray, theta_neg: np.ndarray) -> np.ndarray:
    """S(m) per unit (module docstring) for rates ρ [N, n] and rest values m [n]; a side of zero or
    infinite threshold costs nothing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(theta_pos - m > 0, np.maximum(rho - m, 0) / (theta_pos - m), 0.0)
        down = np.where(theta_neg + m > 0, np.maximum(m - rho, 0) / (theta_neg + m), 0.0)
    return np.mean(np.nan_to_num(up) + np.nan_to_num(down), axis=0)


def move_rest(layer: ConvertedLayer, z: np.ndarray) -> ConvertedLayer:
    """The layer (one neuron per unit, K = 1) with each unit's rest value moved to its cheapest m, given its
    mean currents z̄ [N, n] on the calibration points (module docstring)."""
    p = layer.neurons
    pos, neg = p.theta_pos[:, 0], p.theta_neg[:, 0]
    hi = np.where(np.isfinite(pos), pos, 0.0)
    lo = -np.where(np.isfinite(neg) & p.signed, neg, 0.0)
    rho = np.clip(z + p.bias[:, 0], lo, hi)
    candidates = np.concatenate([np.zeros((1, rho.shape[1])), np.quantile(rho, QUANTILES, axis=0)])
    costs = np.stack([expected_spikes(rho, m, hi, -lo) for m in candidates])
    m = candidates[np.argmin(costs, axis=0), np.arange(rho.shape[1])]
    m = np.where(costs.min(axis=0) <= (1 - SAVING) * costs[0], m, 0.0)
    snap = SNAP * (hi - lo)
    m = np.where(hi - m < snap, hi, np.where(m - lo < snap, lo, m)).astype(pos.dtype)
    theta_pos = np.where(hi - m > 0, hi - m, np.inf).astype(pos.dtype)[:, None]
    theta_neg = np.where(m - lo > 0, m - lo, np.inf).astype(pos.dtype)[:, None]
    scale = np.where(np.isfinite(theta_pos) & (hi[:, None] > 0), theta_pos, 0.0) / np.where(hi > 0, hi, 1.0)[:, None]
    v0 = p.v0 * scale                    # a floor neuron's v0 = θ+/2 stays half its new θ+
    neurons = NeuronParams(bias=(p.bias - m[:, None]).astype(p.bias.dtype), theta_pos=theta_pos,
                           theta_neg=theta_neg, v0=v0.astype(p.v0.dtype), signed=True,
                           fire_fraction=p.fire_fraction)
    w = layer.decode_weight[:, 0]
    return layer.with_(neurons=neurons, decode_offset=(layer.decode_offset + w * m).astype(layer.decode_offset.dtype))
