"""The seeded data set of the 1-D Poisson operator learning task (a spiking DeepONet learns f -> u).

The problem::

    -u''(x) = f(x)  on [-1, 1],     u(-1) = u(1) = 0.

**Forcing.**  f is a zero-mean Gaussian random field with the squared-exponential covariance

    k(x, x') = σ_f² exp(-(x - x')² / (2ℓ²)),     ℓ = 0.2, σ_f = 1 by default,

so f is smooth (analytic) with about (b - a)/ℓ = 10 independent wiggles on the interval, and u = O(σ_f).
ℓ = 0.2 is the usual DeepONet benchmark choice: rough enough that f -> u is not trivially low-rank, smooth
enough that 51 sensors resolve f (sensor spacing 0.04 = ℓ/5).  f is drawn on a fine equispaced grid
x_0..x_{G-1} (G >= 1025, chosen so that the sensors are grid nodes) by the discrete Karhunen–Loève expansion
of the covariance matrix K_ij = k(x_i, x_j) = V diag(λ) Vᵀ:

    f = Σ_r sqrt(λ_r) ξ_r v_r,    ξ_r ~ N(0, 1) i.i.d.,  over the modes with λ_r > 1e-12 · λ_max

(29 modes for ℓ = 0.2 on 1025 or 1051 nodes; the truncated covariance matches k to 6e-12 entrywise, and unlike
a Cholesky factor no jitter is needed).  Eigenvector signs are fixed (largest entry of the left half positive)
so that a seed gives the same functions wherever the same LAPACK eigenvectors come out.

**Solution operator.**  u(x) = ∫_{-1}^{1} G(x, s) f(s) ds with the Green's function

    G(x, s) = (1 + min(x, s)) (1 - max(x, s)) / 2,

which is linear in x on either side of s, vanishes at x = ±1 and whose x-derivative jumps by
-(1 + s)/2 - (1 - s)/2 = -1 at x = s, i.e. -∂²G/∂x² = δ(x - s).  Splitting the integral at s = x (where G
has its kink) leaves two smooth integrands; on a general interval [a, b] of length L = b - a::

    u(x) = (b - x)/L · ∫_a^x (s - a) f(s) ds  +  (x - a)/L · ∫_x^b (b - s) f(s) ds.

**Quadrature.**  Both integrals come from cumulative integrals on the uniform grid: each cell [x_i, x_{i+1}]
is integrated exactly for the cubic through the four nearest nodes,
h/24 (-g_{i-1} + 13 g_i + 13 g_{i+1} - g_{i+2}) (one-sided h/24 (9, 19, -5, 1) in the end cells), which is
fourth order; u at the nodes is then exact at x = a and x = b (both terms vanish identically) and u between
nodes is the local cubic (4-point Lagrange) interpolant of the nodal u, also fourth order.  Measured on
G = 1025 nodes, max error relative to max|u|, at nodes and between them: 6.4e-11 (f = π² sin πx -> sin πx),
2.2e-16 (f = 2 -> 1 - x², exact: the rules are exact for cubics) and 4.0e-12 (f = π²/4 cos(πx/2) ->
cos(πx/2)); halving G multiplies the error by 16.  For the ℓ = 0.2 field the Richardson estimate
(G = 1025 against G = 513, divided by 15) is 2e-10 relative -- far under the 1e-6 target.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MIN_FINE_POINTS = 1025
KL_CUTOFF = 1e-12


@dataclass
class OperatorData:
    """One operator-learning set: sensors [m], f [n_functions, m] at the sensors, points [p], u [n_functions, p]."""

    sensors: np.ndarray
    f: np.ndarray
    points: np.ndarray
    u: np.ndarray


def _uniform_step(grid: np.ndarray) -> float:
    if grid.ndim != 1 or grid.size < 4:
        raise ValueError("the grid must be one-dimensional with at least 4 points")
    h = (grid[-1] - grid[0]) / (grid.size - 1)
    if not h > 0 or not np.allclose(np.diff(grid), h, rtol=1e-9, atol=0):
        raise ValueError("the grid must be increasing and equispaced")
    return float(h)


def _cumulative_integral(g: np.ndarray, h: float) -> np.ndarray:
    """∫_{x_0}^{x_i} g for every node i (along the last axis), cell by cell by the local cubic: fourth order."""
    cells = np.empty(g.shape[:-1] + (g.shape[-1] - 1,))
    cells[..., 1:-1] = -g[..., :-3] + 13 * g[..., 1:-2] + 13 * g[..., 2:-1] - g[..., 3:]
    cells[..., 0] = 9 * g[..., 0] + 19 * g[..., 1] - 5 * g[..., 2] + g[..., 3]
    cells[..., -1] = g[..., -4] - 5 * g[..., -3] + 19 * g[..., -2] + 9 * g[..., -1]
    out = np.zeros(g.shape)
    np.cumsum(cells * (h / 24), axis=-1, out=out[..., 1:])
    return out


def solve_poisson(f_fine: np.ndarray, grid: np.ndarray, x: np.ndarray) -> np.ndarray:
    """u(x) for -u'' = f on [grid[0], grid[-1]] with zero boundary values; f_fine [..., G] on the equispaced grid.

    Returns [..., len(x)].  u = (b - x)/L ∫_a^x (s - a) f + (x - a)/L ∫_x^b (b - s) f by fourth-order cumulative
    quadrature on the grid, then 4-point Lagrange interpolation between nodes (see the module docstring).
    """
    f_fine = np.asarray(f_fine, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if f_fine.shape[-1] != grid.size:
        raise ValueError(f"f has {f_fine.shape[-1]} values on the last axis, the grid {grid.size} points")
    h = _uniform_step(grid)
    a, b = grid[0], grid[-1]
    if np.any(x < a - 1e-12 * (b - a)) or np.any(x > b + 1e-12 * (b - a)):
        raise ValueError("x must lie in the grid's interval")
    left = _cumulative_integral((grid - a) * f_fine, h)            # ∫_a^{x_i} (s - a) f
    right = _cumulative_integral((b - grid) * f_fine, h)
    right = right[..., -1:] - right                               # ∫_{x_i}^b (b - s) f
    nodal = ((b - grid) * left + (grid - a) * right) / (b - a)

    pos = np.clip((x - a) / h, 0, grid.size - 1)
    snap = np.abs(pos - np.round(pos)) < 1e-9                       # a node: its value exactly (u(a) = u(b) = 0)
    pos = np.where(snap, np.round(pos), pos)
    first = np.clip(np.floor(pos).astype(int) - 1, 0, grid.size - 4)
    t = pos - first                                                 # nodes of the stencil at t = 0, 1, 2, 3
    weights = np.stack([-(t - 1) * (t - 2) * (t - 3) / 6, t * (t - 2) * (t - 3) / 2,
                        -t * (t - 1) * (t - 3) / 2, t * (t - 1) * (t - 2) / 6])
    return sum(weights[j] * nodal[..., first + j] for j in range(4))


@lru_cache(maxsize=8)
def _kl_modes(n_grid: int, length_scale: float, sigma_f: float) -> np.ndarray:
    """[n_grid, r] columns sqrt(λ_r) v_r of the covariance matrix on linspace(-1, 1, n_grid), λ_r > 1e-12 λ_max."""
    grid = np.linspace(-1.0, 1.0, n_grid)
    cov = sigma_f ** 2 * np.exp(-((grid[:, None] - grid[None, :]) ** 2) / (2 * length_scale ** 2))
    lam, vec = np.linalg.eigh(cov)
    keep = lam > KL_CUTOFF * lam[-1]
    lam, vec = lam[keep][::-1], vec[:, keep][:, ::-1]
    half = vec[: n_grid // 2]
    signs = np.sign(half[np.argmax(np.abs(half), axis=0), np.arange(vec.shape[1])])
    modes = vec * (signs * np.sqrt(lam))
    modes.setflags(write=False)
    return modes


def gaussian_field(n_functions: int, n_grid: int, *, length_scale: float = 0.2, sigma_f: float = 1.0,
                   rng: np.random.Generator) -> np.ndarray:
    """[n_functions, n_grid] samples of the zero-mean squared-exponential field on linspace(-1, 1, n_grid)."""
    modes = _kl_modes(n_grid, float(length_scale), float(sigma_f))
    return rng.standard_normal((n_functions, modes.shape[1])) @ modes.T


def poisson_operator_data(n_functions: int, *, n_sensors: int = 51, n_points: int = 101,
                          length_scale: float = 0.2, sigma_f: float = 1.0, seed: int = 0) -> OperatorData:
    """n_functions pairs (f at n_sensors equispaced sensors, u at n_points equispaced points) on [-1, 1].

    f is drawn with ``np.random.default_rng(seed)`` on a fine grid of G = (n_sensors - 1)·k + 1 >= 1025 nodes
    (the sensors are every k-th node) and u is solved on that grid by ``solve_poisson``.  Deterministic given
    the seed; the caller makes train and test sets with different seeds.
    """
    if n_sensors < 2 or n_points < 2 or n_functions < 0:
        raise ValueError("need n_sensors >= 2, n_points >= 2 and n_functions >= 0")
    stride = -(-(MIN_FINE_POINTS - 1) // (n_sensors - 1))
    n_grid = (n_sensors - 1) * stride + 1
    grid = np.linspace(-1.0, 1.0, n_grid)
    f_fine = gaussian_field(n_functions, n_grid, length_scale=length_scale, sigma_f=sigma_f,
                            rng=np.random.default_rng(seed))
    points = np.linspace(-1.0, 1.0, n_points)
    return OperatorData(sensors=np.linspace(-1.0, 1.0, n_sensors), f=f_fine[:, ::stride].copy(),
                        points=points, u=solve_poisson(f_fine, grid, points))
