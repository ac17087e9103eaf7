"""Piecewise-linear (PWL) expansion of an activation into unsigned IF neurons, K per unit.

On a unit's calibrated pre-activation range [t_0, t_K] (with a margin), with knots t_0 < … < t_K::

    h(z) ≈ h(t_r) + Σ_{k≥r} w_k · clip(z - t_k, 0, Δ_k) + Σ_{k<r} w_k · clip(z - t_{k+1}, -Δ_k, 0),
    Δ_k = t_{k+1} - t_k,   w_k = (h(t_{k+1}) - h(t_k)) / Δ_k         (the interpolant)

with t_r a reference knot near the unit's typical input.  Each term is one rounding IF neuron firing on one
side only (the other side's θ is inf): above t_r, input shift β_k = -t_k and θ+ = Δ_k; below, β_k = -t_{k+1}
and θ- = Δ_k.  Its rate is the clip to within Δ_k/(2T).  Only the piece that contains z is partially active, so the
decoded error is about |w_k|·Δ_k/(2T) ≈ range(h)/(2KT), and the interpolation floor falls as 1/K².

Knots (``knots.KnotRule``) follow h's curvature and the data; where a layer's currents are constant (a
static layer read only by readouts) they are priced by spikes too: wide near the unit's median current,
where every point's spikes cross them.  Units get fewer pieces (padding neurons with θ = inf never fire)
when fewer already meet the budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from runtimes.neuron import NeuronParams

from .knots import KnotRule


@dataclass
class Expansion:
    neurons: NeuronParams        # [n, K]
    decode_weight: np.ndarray    # [n, K]
    decode_offset: np.ndarray    # [n]
    pieces: np.ndarray           # [n] pieces actually used per unit


def fitted_interpolation_error(h: Callable[[np.ndarray], np.ndarray], knots: np.ndarray,
                               z: np.ndarray) -> np.ndarray:
    """RMS residual per unit [n] of the least-squares continuous PWL fit with ``knots`` [K+1, n] to h at the
    unit's inputs ``z`` [N, n]: per unit j, with the basis φ_k(z) = clip(z - t_k, 0, Δ_k) of the expansion,

        e_j = ( min_{c, w} E_z |c + Σ_k w_k·φ_k(z) - h(z)|² )^½

    the error the decode refit (``calibration.refit.refit_decode``) leaves with exact rates.  On data, not
    a grid, and after the fit, not the interpolant's max: for a parabola on one piece the max of the
    interpolant's error is 3.4x the RMS of the best line's."""
    left, width = knots[:-1].T[None], np.diff(knots, axis=0).T[None]          # [1, n, K]
    basis = np.clip(z[..., None] - left, 0.0, width).astype(np.float64)      # [N, n, K]
    x = np.concatenate([np.ones(basis.shape[:2] + (1,)), basis], axis=2).transpose(1, 0, 2)   # [n, N, K+1]
    target = h(z).astype(np.float64).T[..., None]                            # [n, N, 1]
    gram = x.transpose(0, 2, 1) @ x
    ridge = (1e-10 * np.trace(gram, axis1=1, axis2=2)[:, None, None] + 1e-30) * np.eye(gram.shape[1])
    solution = np.linalg.solve(gram + ridge, x.transpose(0, 2, 1) @ target)
    return np.sqrt(np.mean((x @ solution - target)[..., 0] ** 2, axis=1))


def expand(h: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, pieces: np.ndarray | int,
           center: np.ndarray | None = None, samples: np.ndarray | None = None,
           knots: KnotRule = KnotRule()) -> Expansion:
    """PWL expansion of every unit on [lo, hi] with ``pieces`` pieces (an int, or one per unit).

    ``center`` [n] (a unit's typical pre-activation, e.g. its median): the knot t_r nearest to it is the
    reference, c = h(t_r); pieces above it are neurons firing +Δ_k when z passes t_k (β = -t_k, θ+ = Δ_k),
    pieces below it fire -Δ_k when z falls below t_{k+1} (β = -t_{k+1}, θ- = Δ_k).  Around its typical
    input a unit is then nearly silent, so spikes scale with |z - t_r|, not with z - t_0.
    ``samples`` [N, n]: the unit's inputs, for the knots' density and crossing costs; ``knots``: how the
    layer's knots are placed (``knots.KnotRule``).
    """
    dtype = lo.dtype
    n = lo.shape[0]
    chosen = np.broadcast_to(np.asarray(pieces, int), (n,)).copy()
    t = knots(h, lo, hi, chosen, samples)                           # [K + 1, n], the last repeated
    K = int(chosen.max())
    theta_pos, theta_neg = np.full((n, K), np.inf), np.full((n, K), np.inf)
    bias = np.zeros((n, K))
    weight = np.zeros((n, K))
    values = h(t.astype(dtype)).astype(np.float64)
    reference = np.zeros(n, int)
    for j in range(n):
        kj = chosen[j]
        width = np.diff(t[: kj + 1, j])
        used = width > 0                        # coincident knots give no neuron
        weight[j, :kj] = np.where(used, np.diff(values[: kj + 1, j]) / np.where(used, width, 1.0), 0.0)
        r = 0 if center is None else int(np.argmin(np.abs(t[: kj + 1, j] - center[j])))
        reference[j] = r
        above, below = np.arange(kj) >= r, np.arange(kj) < r
        theta_pos[j, :kj] = np.where(used & above, width, np.inf)
        theta_neg[j, :kj] = np.where(used & below, width, np.inf)
        bias[j, :kj] = np.where(above, -t[:kj, j], -t[1: kj + 1, j])
    offset = values[reference, np.arange(n)]
    neurons = NeuronParams(bias=bias.astype(dtype), theta_pos=theta_pos.astype(dtype),
                           theta_neg=theta_neg.astype(dtype), v0=np.zeros((n, K), dtype),
                           signed=True, fire_fraction=0.5)
    return Expansion(neurons=neurons, decode_weight=weight.astype(dtype), decode_offset=offset.astype(dtype),
                     pieces=chosen)
