"""Where a unit's piecewise-linear knots go: the spacing that buys the least error for the spikes spent.

A unit's PWL expansion (``expansion.py``) with knot spacing Δ(z) on [lo, hi], at calibration currents of
density p(z) and distribution function F(z), errs in a piece around z by (mean square over its points)

    e²(z) ≈ A(z)·Δ⁴ + B(z)·Δ²,    A = h''²/720,    B = w²·h'²/(12·T²)

A the least-squares line's residual on a piece of a parabola (h''·Δ²/√720 RMS), B the rounding of the
partly active piece (its rate is rounded to Δ/T: uniform error ±|h'|·Δ/(2T)), w the layer's rounding
weight (``calibration.budget.STATIC_ROUNDING_WEIGHT``).  Its spikes go to the pieces it crosses: the
reference knot is the median current (``expand``), and a piece between it and z fires on every step, so a
piece at z costs T spikes for every point beyond it,

    c(z) = min(F(z), 1 - F(z)) + 1/(2K)

(the second term: the partly active piece, on average half its T spikes).  Minimising E = ∫ p·e² dz for
the spikes S = T·∫ c/Δ dz with K = ∫ dz/Δ pieces gives pointwise the Lagrange condition

    p·(4A·Δ⁵ + 2B·Δ³) = λ·c(z)

solved for Δ(z) by bisection, λ set by bisection so that ∫ dz/Δ = K; the knots equidistribute 1/Δ.
Where interpolation limits (an oscillating sin(30z), T = 128), Δ ∝ (c/(p·A))^⅕; where rounding limits,
Δ ∝ (c/(p·B))^⅓; in both the pieces near the median, crossed by half the points, are the widest.  On the
SIREN fixture's sin(30z) layer (``tests/fixtures/torch_siren.onnx``, T = 32, 40 pieces per unit) this gave
4.0e-3 at 2,698 spikes per sample where the curvature rule (ρ = |h'| + |h''|^½ weighted by p^⅓) gave
4.2e-3 at 3,656 (``benchmarks/results/architectures.md``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

GRID = 513
BINS = 64               # histogram of a unit's currents
DENSITY_FLOOR = 0.05    # of the mean density: the tails keep pieces
FLAT = 1e-6             # of a unit's mean A + B: flat stretches still get finite pieces
SPACING_STEPS = 8       # Newton steps of log Δ(z) (quadratic convergence from within a factor 2)
LAMBDA_STEPS = 16       # bisection steps of log λ within its bracket


def spike_knots(h: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, pieces: int | np.ndarray,
                samples: np.ndarray | None = None, timesteps: int = 32, rounding_weight: float = 1.0,
                grid: int = GRID) -> np.ndarray:
    """Knots [K + 1, n] on [lo, hi] per unit (module docstring), K = max ``pieces`` (an int or [n]); a unit
    with fewer pieces repeats its last knot.  ``samples`` [N, n]: the units' currents (without them p is
    uniform and F linear on [lo, hi])."""
    n = lo.shape[0]
    pieces = np.broadcast_to(np.asarray(pieces, dtype=int), (n,))
    s = np.linspace(0.0, 1.0, grid)[:, None]
    z = lo + (hi - lo) * s
    values = h(z).astype(np.float64)
    dz = ((hi - lo) / (grid - 1)).astype(np.float64)
    d1 = np.gradient(values, axis=0) / dz
    d2 = np.gradient(d1, axis=0) / dz
    width = (hi - lo).astype(np.float64)
    a = d2 ** 2 / 720.0 * width ** 5                                      # in units of the range
    b = rounding_weight ** 2 * d1 ** 2 / (12.0 * timesteps ** 2) * width ** 3
    floor = FLAT * np.mean(a + b, axis=0, keepdims=True) + 1e-300
    a, b = a + floor, b + floor
    if samples is None:
        p, F = np.ones_like(z), np.broadcast_to(s, z.shape)
    else:
        p, F = _density(samples, lo, hi, grid), _distribution(samples, z)
    c = np.minimum(F, 1.0 - F) + 1.0 / (2 * pieces)
    density = 1.0 / _spacing(p * a, p * b, c, pieces)
    cdf = np.concatenate([np.zeros((1, n)), np.cumsum((density[1:] + density[:-1]) / 2, axis=0)])
    cdf /= cdf[-1:]
    K = int(pieces.max())
    knots = np.stack([np.interp(np.minimum(np.arange(K + 1) / pieces[j], 1.0), cdf[:, j], z[:, j])
                      for j in range(n)], axis=1)
    knots[0] = lo
    return np.where(np.arange(K + 1)[:, None] >= pieces[None], hi, knots)


def _spacing(pa: np.ndarray, pb: np.ndarray, c: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """δ(z) = Δ/(hi - lo) [grid, n] solving pa·4δ⁵ + pb·2δ³ = λ·c with ∫ dz/Δ = ``pieces`` [n] per unit (λ per
    unit; ``pa``, ``pb`` in units of the range: p·A·(hi - lo)⁵, p·B·(hi - lo)³).

    For a given λ, g(s) = log(4·pa·e^{5s} + 2·pb·e^{3s}) is convex and increasing in s = log δ (a
    log-sum-exp of lines of slope 5 and 3): Newton from the smaller one-term solution, where g ≥ log(λc),
    descends to the root without overshooting.  log ∫ dz/Δ falls in log λ with a slope within [-1/3, -1/5]
    (d log δ / d log λ = 1/g' at every z), which brackets λ from one trial; bisection finds it."""
    scale = np.mean(pa + pb, axis=0, keepdims=True)
    pa, pb = pa / scale, pb / scale
    grid = pa.shape[0]

    def solve(log_lam: np.ndarray) -> np.ndarray:
        target = log_lam + np.log(c)
        s = np.minimum((target - np.log(4 * pa)) / 5, (target - np.log(2 * pb)) / 3)
        for _ in range(SPACING_STEPS):
            five, three = 4 * pa * np.exp(5 * s), 2 * pb * np.exp(3 * s)
            s = s - (np.log(five + three) - target) * (five + three) / (5 * five + 3 * three)
        return np.exp(s)

    def log_count(log_lam: np.ndarray) -> np.ndarray:
        inverse = 1.0 / solve(log_lam[None])
        return np.log(np.sum((inverse[1:] + inverse[:-1]) / 2, axis=0) / (grid - 1))

    goal = np.log(pieces.astype(np.float64))
    uniform = 1.0 / pieces[None]                                  # δ of K equal pieces
    start = np.log(np.mean((4 * pa * uniform ** 5 + 2 * pb * uniform ** 3) / c, axis=0))
    miss = log_count(start) - goal               # the root lies within start + [3, 5]·miss
    low, high = start + np.minimum(3 * miss, 5 * miss), start + np.maximum(3 * miss, 5 * miss)
    for _ in range(LAMBDA_STEPS):
        mid = 0.5 * (low + high)
        many = log_count(mid) > goal
        low, high = np.where(many, mid, low), np.where(many, high, mid)
    return solve(0.5 * (low + high)[None])


def _density(samples: np.ndarray, lo: np.ndarray, hi: np.ndarray, grid: int) -> np.ndarray:
    """Histogram density of each column of ``samples`` on the grid, smoothed, floored at ``DENSITY_FLOOR``
    of its mean."""
    position = np.clip((samples - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0 - 1e-9)
    counts = np.stack([np.bincount((position[:, j] * BINS).astype(int), minlength=BINS)
                       for j in range(samples.shape[1])], axis=1).astype(np.float64)
    kernel = np.array([1.0, 2.0, 3.0, 2.0, 1.0]) / 9.0
    counts = np.apply_along_axis(lambda col: np.convolve(col, kernel, mode="same"), 0, counts)
    centres = (np.arange(BINS) + 0.5) / BINS
    grid_s = np.linspace(0.0, 1.0, grid)
    density = np.stack([np.interp(grid_s, centres, counts[:, j]) for j in range(counts.shape[1])], axis=1)
    return np.maximum(density, DENSITY_FLOOR * density.mean(axis=0, keepdims=True)) + 1e-12


def _distribution(samples: np.ndarray, z: np.ndarray) -> np.ndarray:
    """F(z) [grid, n]: the share of each unit's samples below z."""
    return np.stack([np.searchsorted(np.sort(samples[:, j]), z[:, j]) / samples.shape[0]
                     for j in range(samples.shape[1])], axis=1)


def crossed_pieces(knots: np.ndarray, center: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Mean pieces per point [n] lying wholly between each unit's reference knot (the one nearest
    ``center`` [n], as ``expand`` picks it) and its current z [N, n]: each fires on every step."""
    reference = knots[np.argmin(np.abs(knots - center[None]), axis=0), np.arange(knots.shape[1])]
    low, high = np.minimum(z, reference)[:, None], np.maximum(z, reference)[:, None]
    inside = np.sum((knots[None] >= low) & (knots[None] <= high), axis=1)      # the reference knot included
    return np.mean(np.maximum(inside - 1, 0), axis=0)
