"""Piecewise-linear (PWL) expansion of an activation into unsigned IF neurons, K per unit.

On a unit's calibrated pre-activation range [t_0, t_K] (with a margin), with knots t_0 < … < t_K::

    h(z) ≈ c + Σ_k w_k · clip(z - t_k, 0, Δ_k),   Δ_k = t_{k+1} - t_k,
    c = h(t_0),   w_k = (h(t_{k+1}) - h(t_k)) / Δ_k         (the interpolant)

Each term is one unsigned rounding IF neuron with input shift β_k = -t_k and threshold θ_k = Δ_k: its rate
is clip(z - t_k, 0, Δ_k) to within Δ_k/(2T).  Only the piece that contains z is partially active, so the
decoded error is about |w_k|·Δ_k/(2T) ≈ range(h)/(2KT), and the interpolation floor falls as 1/K².

Knots equidistribute the density ρ = |h'| + |h''|^½ (curvature placement): pieces go where h bends.
Units get fewer pieces (padding neurons with θ = inf never fire) when fewer already meet ``tolerance``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from runtimes.neuron import NeuronParams

GRID = 513


@dataclass
class Expansion:
    neurons: NeuronParams        # [n, K]
    decode_weight: np.ndarray    # [n, K]
    decode_offset: np.ndarray    # [n]
    pieces: np.ndarray           # [n] pieces actually used per unit


def curvature_knots(h: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, pieces: int,
                    grid: int = GRID) -> np.ndarray:
    """Knots [pieces + 1, n] equidistributing ρ = |h'| + |h''|^½ on [lo, hi] per unit."""
    s = np.linspace(0.0, 1.0, grid)[:, None]
    z = lo + (hi - lo) * s
    values = h(z).astype(np.float64)
    dz = (hi - lo) / (grid - 1)
    d1 = np.gradient(values, axis=0) / dz
    d2 = np.gradient(d1, axis=0) / dz
    rho = np.abs(d1) + np.sqrt(np.abs(d2))
    rho = rho + 1e-3 * rho.mean(axis=0, keepdims=True) + 1e-12
    cdf = np.concatenate([np.zeros((1, rho.shape[1])), np.cumsum((rho[1:] + rho[:-1]) / 2, axis=0)])
    cdf /= cdf[-1:]
    targets = np.linspace(0.0, 1.0, pieces + 1)
    knots = np.stack([np.interp(targets, cdf[:, j], z[:, j]) for j in range(z.shape[1])], axis=1)
    knots[0], knots[-1] = lo, hi
    return knots


def interpolation_error(h: Callable[[np.ndarray], np.ndarray], knots: np.ndarray, samples: int = 8) -> np.ndarray:
    """Max |h - PWL| per unit, measured at ``samples`` points inside each piece."""
    s = (np.arange(samples) + 0.5) / samples
    left, right = knots[:-1], knots[1:]
    z = (left[None] + (right - left)[None] * s[:, None, None]).reshape(-1, knots.shape[1])
    hl, hr = h(left), h(right)
    exact = h(z.astype(knots.dtype)).reshape(samples, *left.shape)
    linear = hl[None] + (hr - hl)[None] * s[:, None, None]
    return np.abs(exact - linear).max(axis=(0, 1))


def expand(h: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, max_pieces: int,
           tolerance: float | None = None) -> Expansion:
    """PWL expansion of every unit on [lo, hi] with at most ``max_pieces`` pieces.

    With ``tolerance``, each unit gets the smallest power-of-two number of pieces (≤ max_pieces) whose
    interpolation error is below it; otherwise every unit gets ``max_pieces``.
    """
    dtype = lo.dtype
    n = lo.shape[0]
    candidates = [max_pieces] if tolerance is None else sorted(
        {min(2 ** k, max_pieces) for k in range(int(np.log2(max(max_pieces, 1))) + 2)})
    chosen = np.full(n, -1)
    knots_per_unit: list[np.ndarray | None] = [None] * n
    for k in candidates:
        todo = np.flatnonzero(chosen < 0)
        if todo.size == 0:
            break
        sub = lambda z, cols=todo: _columns(h, z, cols, n)
        knots = curvature_knots(sub, lo[todo], hi[todo], k)
        ok = np.ones(todo.size, bool) if (tolerance is None or k == candidates[-1]) else \
            interpolation_error(sub, knots) <= tolerance
        for j, col in enumerate(todo):
            if ok[j]:
                chosen[col], knots_per_unit[col] = k, knots[:, j]
    K = int(chosen.max())
    theta = np.full((n, K), np.inf)
    bias = np.zeros((n, K))
    weight = np.zeros((n, K))
    t = np.zeros((K + 1, n))
    for j in range(n):
        kj = chosen[j]
        t[: kj + 1, j] = knots_per_unit[j]
        t[kj + 1:, j] = knots_per_unit[j][-1]
    values = h(t.astype(dtype)).astype(np.float64)
    for j in range(n):
        kj = chosen[j]
        width = np.diff(t[: kj + 1, j])
        used = width > 0                        # coincident knots give no neuron
        theta[j, :kj] = np.where(used, width, np.inf)
        bias[j, :kj] = -t[:kj, j]
        weight[j, :kj] = np.where(used, np.diff(values[: kj + 1, j]) / np.where(used, width, 1.0), 0.0)
    offset = values[0]
    neurons = NeuronParams(bias=bias.astype(dtype), theta_pos=theta.astype(dtype),
                           theta_neg=np.full((n, K), np.inf, dtype), v0=np.zeros((n, K), dtype),
                           signed=False, fire_fraction=0.5)
    return Expansion(neurons=neurons, decode_weight=weight.astype(dtype), decode_offset=offset.astype(dtype),
                     pieces=chosen)


def _columns(h: Callable[[np.ndarray], np.ndarray], z: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Evaluate a per-unit activation on a subset of units: z [G, len(cols)] → [G, len(cols)]."""
    full = np.zeros((z.shape[0], n), dtype=z.dtype)
    full[:, cols] = z
    return h(full)[:, cols]
