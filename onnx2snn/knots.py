"""Where a unit's piecewise-linear knots go: the spacing that buys the least error for the energy spent.

A unit's PWL expansion (``expansion.py``) with knot spacing Δ(z) on [lo, hi], at calibration currents of
density p(z) and distribution function F(z), errs in a piece around z by (mean square over its points)

    e²(z) ≈ A(z)·Δ⁴ + A₃(z)·Δ⁶ + B(z)·Δ²,    A = h''²/720,    A₃ = h'''²/100800,    B = w²·h'²/(12·T²)

A the least-squares line's residual on a piece of a parabola (h''·Δ²/√720 RMS), A₃ that of a cubic (the
next order, which holds where h'' changes sign: tanh's centre, sin's zeros), B the rounding of the partly
active piece of a constant current (its rate is rounded to Δ/T: uniform error ±|h'|·Δ/(2T)), w the
layer's rounding weight (``calibration.budget.STATIC_ROUNDING_WEIGHT``).  Its spikes go to the pieces it crosses: the
reference knot is the median current (``expand``), and a piece between it and z fires on every step, so a
piece at z costs T spikes, each reaching the layer's fan-out f synapses, for every point beyond it, and
its neuron's update every step whatever it does: per step and point, in synaptic operations,

    c(z) = min(F(z), 1 - F(z)) + ν,     ν = e_update / (f·e_synop)

(the partly active piece's spikes, half its T on average, do not depend on where the knots are).
Minimising E = ∫ p·e² dz for the energy T·e_synop·f·∫ c/Δ dz with K = ∫ dz/Δ pieces gives pointwise the
Lagrange condition

    p·(4A·Δ⁵ + 6A₃·Δ⁷ + 2B·Δ³) = λ·c(z)

solved for Δ(z) by Newton's method, λ by bisection so that ∫ dz/Δ = K; the knots equidistribute 1/Δ.
Where a layer's events reach many synapses (a hidden layer of width 100: ν ≈ 0.02 on 45nm_fp32) the
knots thin out where most points cross them; where they reach few (SIREN's last hidden layer feeds one
readout: ν = 2) neuron updates dominate and the knots approach the error-optimal ones.
Where interpolation limits (an oscillating sin(30z), T = 128), Δ ∝ (c/(p·A))^⅕; where rounding limits,
Δ ∝ (c/(p·B))^⅓.  Measured on the SIREN fixture's sin(30z) layer (``tests/fixtures/torch_siren.onnx``,
T = 32, 40 pieces per unit, 2048 fresh points): the former curvature rule (density |h'| + |h''|^½
weighted by p^⅓) 4.2e-3 at 3,656 spikes per sample; this rule with c ≡ 1 (error only) 3.2e-3 at 3,382;
with ν = 0.05, 0.5, 1, 2: 5.0e-3 at 2,332, 4.3e-3 at 2,623, 3.9e-3 at 2,735, 3.7e-3 at 2,858 (by the
default ν = 2 of its fan-out 1, the auto budget then lands at 4.0e-3 with 2,733 spikes and 531 neurons,
21x the ANN on 45nm_fp32, against 24x before).

The model is exact only for a static layer (constant currents: the rounding is as stated) whose error
reaches the outputs only through its values; ``KnotRule`` prices knots there and uses the curvature rule
(density |h'| + |h''|^½ weighted by p^⅓) elsewhere.  Used for every layer it cost the shipped Poisson
network (T = 32, default budget) 5 % more spikes at the same error: on its first layer, which spiking
layers read, the wider central pieces' rounding also moves their spike timing (``budget.py``), and on
layers fed by spikes the input's step-to-step fluctuation makes narrow pieces near the median fire and
keep charge the model does not count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .energy import DEFAULT_MODEL, load_tables

GRID = 513
PARABOLA = 720.0        # a parabola's least-squares line residual on a piece: (h''·Δ²)²/720
CUBIC = 100800.0        # a cubic's: (h'''·Δ³)²/100800 (where h'' changes sign within the piece)
BINS = 64               # histogram of a unit's currents
DENSITY_FLOOR = 0.05    # of the mean density: the tails keep pieces
FLAT = 1e-6             # of a unit's mean error terms: flat stretches still get finite pieces
SPACING_STEPS = 8       # Newton steps of log Δ(z) (quadratic convergence from within a factor 2)
LAMBDA_STEPS = 16       # bisection steps of log λ within its bracket
MIN_UPDATE_COST = 1e-3  # ν's floor: the tails, crossed by no point, still get finite pieces


@dataclass(frozen=True)
class KnotRule:
    """How one layer's knots are placed: ``priced`` (where the error model above is exact) by ``spike_knots``
    with its ``timesteps``, ``rounding_weight`` and ``update_cost`` ν, else by ``curvature_knots``."""

    priced: bool = True
    timesteps: int = 32
    rounding_weight: float = 1.0
    update_cost: float = 0.0

    def __call__(self, h: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray,
                 pieces: int | np.ndarray, samples: np.ndarray | None = None) -> np.ndarray:
        if self.priced:
            return spike_knots(h, lo, hi, pieces, samples, self.timesteps, self.rounding_weight, self.update_cost)
        return curvature_knots(h, lo, hi, pieces, samples)


def neuron_update_cost(fan_out: int) -> float:
    """ν = e_update / (fan-out·e_synop) on ``DEFAULT_MODEL``: one neuron's update per step priced in the
    synaptic operations of a layer whose events reach ``fan_out`` synapses."""
    price = load_tables()[DEFAULT_MODEL]
    return float(price["neuron_update"] / (max(fan_out, 1) * price["synop"]))


def spike_knots(h: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, pieces: int | np.ndarray,
                samples: np.ndarray | None = None, timesteps: int = 32, rounding_weight: float = 1.0,
                update_cost: float = 0.0, grid: int = GRID) -> np.ndarray:
    """Knots [K + 1, n] on [lo, hi] per unit (module docstring), K = max ``pieces`` (an int or [n]); a unit
    with fewer pieces repeats its last knot.  ``samples`` [N, n]: the units' currents (without them p is
    uniform and F linear on [lo, hi]); ``update_cost``: ν, a neuron update in synaptic operations."""
    pieces = np.broadcast_to(np.asarray(pieces, dtype=int), lo.shape)
    s, z, (d1, d2, d3) = _derivatives(h, lo, hi, grid)
    width = (hi - lo).astype(np.float64)
    errors = [(d2 ** 2 / PARABOLA * width ** 4, 4),                       # in units of the range
              (d3 ** 2 / CUBIC * width ** 6, 6),
              (rounding_weight ** 2 * d1 ** 2 / (12.0 * timesteps ** 2) * width ** 2, 2)]
    floor = FLAT * np.mean(sum(e for e, _ in errors), axis=0, keepdims=True) + 1e-300
    if samples is None:
        p, F = np.ones_like(z), np.broadcast_to(s, z.shape)
    else:
        p, F = _density(samples, lo, hi, grid), _distribution(samples, z)
    c = np.minimum(F, 1.0 - F) + max(update_cost, MIN_UPDATE_COST)
    return _equidistribute(1.0 / _spacing([(p * (e + floor), q) for e, q in errors], c, pieces), z, hi, pieces)


def curvature_knots(h: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray,
                    pieces: int | np.ndarray, samples: np.ndarray | None = None, grid: int = GRID) -> np.ndarray:
    """Knots [K + 1, n] (as ``spike_knots``) equidistributing ρ = |h'| + |h''|^½, weighted by p(z)^⅓ with
    ``samples`` [N, n] (the piece-width density that minimises the mean squared rounding error |h'|·Δ/(2T)
    over the data, as in optimal quantiser design)."""
    pieces = np.broadcast_to(np.asarray(pieces, dtype=int), lo.shape)
    _, z, (d1, d2, _) = _derivatives(h, lo, hi, grid)
    rho = np.abs(d1) + np.sqrt(np.abs(d2))
    rho = rho + 1e-3 * rho.mean(axis=0, keepdims=True) + 1e-12
    if samples is not None:
        rho = rho * _density(samples, lo, hi, grid) ** (1.0 / 3.0)
    return _equidistribute(rho, z, hi, pieces)


def _derivatives(h, lo: np.ndarray, hi: np.ndarray, grid: int):
    """The grid s [grid, 1] on [0, 1], z = lo + (hi - lo)·s [grid, n] and h', h'', h''' on it."""
    s = np.linspace(0.0, 1.0, grid)[:, None]
    z = lo + (hi - lo) * s
    dz = ((hi - lo) / (grid - 1)).astype(np.float64)
    derivatives, values = [], h(z).astype(np.float64)
    for _ in range(3):
        values = np.gradient(values, axis=0) / dz
        derivatives.append(values)
    return s, z, derivatives


def _equidistribute(density: np.ndarray, z: np.ndarray, hi: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """Knots [K + 1, n] splitting ∫ density dz into pieces[j] equal parts per unit; the rest repeat hi."""
    cdf = np.concatenate([np.zeros((1, z.shape[1])), np.cumsum((density[1:] + density[:-1]) / 2, axis=0)])
    cdf /= cdf[-1:]
    K = int(pieces.max())
    knots = np.stack([np.interp(np.minimum(np.arange(K + 1) / pieces[j], 1.0), cdf[:, j], z[:, j])
                      for j in range(z.shape[1])], axis=1)
    knots[0] = z[0]
    return np.where(np.arange(K + 1)[:, None] >= pieces[None], hi, knots)


def _spacing(terms: list[tuple[np.ndarray, int]], c: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """δ(z) = Δ/(hi - lo) [grid, n] solving Σ_i q_i·P_i·δ^(q_i+1) = λ·c with ∫ dz/Δ = ``pieces`` [n] per unit
    (λ per unit), for the error terms P_i·δ^q_i of ``terms`` [(P_i [grid, n], q_i)] in units of the range.

    For a given λ, g(s) = log Σ_i q_i·P_i·e^{(q_i+1)s} is convex and increasing in s = log δ (a log-sum-exp
    of lines): Newton from the smallest one-term solution, where g ≥ log(λc), descends to the root without
    overshooting.  log ∫ dz/Δ falls in log λ with a slope within [-1/(q_min+1), -1/(q_max+1)]
    (d log δ / d log λ = 1/g' at every z), which brackets λ from one trial; bisection finds it."""
    scale = np.mean(sum(P for P, _ in terms), axis=0, keepdims=True)
    terms = [(q * P / scale, q + 1) for P, q in terms]
    grid = c.shape[0]
    low_power, high_power = min(e for _, e in terms), max(e for _, e in terms)

    def solve(log_lam: np.ndarray) -> np.ndarray:
        target = log_lam + np.log(c)
        s = np.min([(target - np.log(P)) / e for P, e in terms], axis=0)
        for _ in range(SPACING_STEPS):
            parts = [P * np.exp(e * s) for P, e in terms]
            total = sum(parts)
            s = s - (np.log(total) - target) * total / sum(e * part for part, (_, e) in zip(parts, terms))
        return np.exp(s)

    def log_count(log_lam: np.ndarray) -> np.ndarray:
        inverse = 1.0 / solve(log_lam[None])
        return np.log(np.sum((inverse[1:] + inverse[:-1]) / 2, axis=0) / (grid - 1))

    goal = np.log(pieces.astype(np.float64))
    uniform = 1.0 / pieces[None]                                  # δ of K equal pieces
    start = np.log(np.mean(sum(P * uniform ** e for P, e in terms) / c, axis=0))
    miss = log_count(start) - goal               # the root lies within start + [q_min+1, q_max+1]·miss
    low = start + np.minimum(low_power * miss, high_power * miss)
    high = start + np.maximum(low_power * miss, high_power * miss)
    for _ in range(LAMBDA_STEPS):
        mid = 0.5 * (low + high)
        many = log_count(mid) > goal
        low, high = np.where(many, mid, low), np.where(many, high, mid)
    return solve(0.5 * (low + high)[None])


def _density(samples: np.ndarray, lo: np.ndarray, hi: np.ndarray, grid: int) -> np.ndarray:
    """Histogram density of each column of ``samples`` on the grid, smoothed (at the ends by the kernel's
    part inside the range), floored at ``DENSITY_FLOOR`` of its mean."""
    position = np.clip((samples - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0 - 1e-9)
    counts = np.stack([np.bincount((position[:, j] * BINS).astype(int), minlength=BINS)
                       for j in range(samples.shape[1])], axis=1).astype(np.float64)
    kernel = np.array([1.0, 2.0, 3.0, 2.0, 1.0]) / 9.0
    inside = np.convolve(np.ones(BINS), kernel, mode="same")[:, None]     # the kernel's mass within the range
    counts = np.apply_along_axis(lambda col: np.convolve(col, kernel, mode="same"), 0, counts) / inside
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
