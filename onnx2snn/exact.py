"""Exact reference solutions of the benchmark PINN problems.

Every solution is a function ``f(points) -> values`` where ``points`` is an array of shape ``[N, d]``
whose columns follow the feature order of the corresponding model input, and ``values`` has shape
``[N, m]`` (``m`` outputs, in the order of the model outputs).  All computations are in float64.

Problems (``EXACT`` registry keys):

``poisson1d``
    ``-u'' = pi^2 sin(pi x)`` on ``x in [-1, 1]``, ``u(-1) = u(1) = 0``.  Exact ``u = sin(pi x)``.
    Input ``(x)``, output ``(u)``.

``diffusion_reaction``
    ``u_t = u_xx + e^{-t} (3/2 sin 2x + 8/3 sin 3x + 15/4 sin 4x + 63/8 sin 8x)`` on
    ``x in [-pi, pi]``, ``t in [0, 1]``.  Exact
    ``u = e^{-t} (sin x + sin 2x / 2 + sin 3x / 3 + sin 4x / 4 + sin 8x / 8)``
    (each mode ``sin(kx)/k`` contributes ``(k - 1/k) sin(kx) e^{-t}`` to the source).
    Input ``(x, t)``, output ``(u)``.

``wave``
    ``u_tt = 4 u_xx`` on ``x, t in [0, 1]``, ``u(0, t) = u(1, t) = 0``.  Exact
    ``u = sin(pi x) cos(2 pi t) + 1/2 sin(4 pi x) cos(8 pi t)``.  Input ``(x, t)``, output ``(u)``.

``burgers``
    ``u_t + u u_x = nu u_xx`` with ``nu = 0.01 / pi`` on ``x in [-1, 1]``, ``t in [0, 1]``,
    ``u(x, 0) = -sin(pi x)``, ``u(-1, t) = u(1, t) = 0``.  By the Cole-Hopf transformation
    ``u = -2 nu phi_x / phi`` with ``phi_t = nu phi_xx`` and ``phi(x, 0) = f(x) =
    exp(-cos(pi x) / (2 pi nu))``, so that

        u(x, t) = - int sin(pi (x - eta)) f(x - eta) exp(-eta^2 / (4 nu t)) d eta
                    / int f(x - eta) exp(-eta^2 / (4 nu t)) d eta.

    With ``eta = sqrt(4 nu t) s`` both integrals carry the weight ``exp(-s^2)`` and are evaluated by
    Gauss-Hermite quadrature.  ``f`` spans ``exp(+-50)``, so the exponent
    ``-cos(pi (x - eta)) / (2 pi nu)`` plus the log-weight is shifted by its maximum over the nodes
    before exponentiating (the ratio is unchanged).  ``t = 0`` returns the initial condition.  The
    quadrature converges fast: on 75k points over the domain (a third of them at the shock) 60 nodes
    differ from 2000 nodes by 1e-9 and 100-200 nodes by 5e-15, so the default
    ``BURGERS_QUADRATURE_NODES = 200`` is exact to rounding; the widely used 256 x 100 reference grid
    (Raissi et al.) is matched to 4e-11.  Input ``(x, t)``, output ``(u)``.

``beltrami``
    Unsteady 3-D Navier-Stokes (Ethier & Steinman 1994), ``a = d = 1``, ``Re = 1`` (``nu = 1``,
    density 1) on ``[-1, 1]^3 x [0, 1]``:

        u_t + (u . grad) u = -grad p + nu lap u,   div u = 0,

        u = -a [e^{ax} sin(ay + dz) + e^{az} cos(ax + dy)] e^{-d^2 t}
        v = -a [e^{ay} sin(az + dx) + e^{ax} cos(ay + dz)] e^{-d^2 t}
        w = -a [e^{az} sin(ax + dy) + e^{ay} cos(az + dx)] e^{-d^2 t}
        p = -a^2/2 [e^{2ax} + e^{2ay} + e^{2az}
                    + 2 sin(ax + dy) cos(az + dx) e^{a(y + z)}
                    + 2 sin(ay + dz) cos(ax + dy) e^{a(z + x)}
                    + 2 sin(az + dx) cos(ay + dz) e^{a(x + y)}] e^{-2 d^2 t}

    Input ``(x, y, z, t)``, outputs ``(u, v, w, p)``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.special import roots_hermite

__all__ = [
    "BURGERS_NU",
    "BURGERS_QUADRATURE_NODES",
    "EXACT",
    "INPUT_DIMS",
    "beltrami",
    "burgers",
    "diffusion_reaction",
    "exact_solution",
    "poisson1d",
    "wave",
]

BURGERS_NU = 0.01 / np.pi
BURGERS_QUADRATURE_NODES = 200
BELTRAMI_A = 1.0
BELTRAMI_D = 1.0

_CHUNK = 4096  # points per block in the Burgers quadrature (keeps temporaries ~ 13 MB)


def _points(points: np.ndarray, dims: int, name: str) -> np.ndarray:
    """Return ``points`` as a float64 ``[N, dims]`` array; a 1-D array is accepted when ``dims == 1``."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 1 and dims == 1:
        p = p[:, None]
    if p.ndim != 2 or p.shape[1] != dims:
        raise ValueError(
            f"{name}: points must have shape [N, {dims}], got {list(np.shape(points))}"
        )
    return p


def poisson1d(points: np.ndarray) -> np.ndarray:
    """``u = sin(pi x)``, the solution of ``-u'' = pi^2 sin(pi x)``, ``u(+-1) = 0``.

    ``points``: ``[N, 1]`` (x).  Returns ``[N, 1]`` (u).
    """
    p = _points(points, 1, "poisson1d")
    return np.sin(np.pi * p[:, :1])


def diffusion_reaction(points: np.ndarray) -> np.ndarray:
    """``u = e^{-t} (sin x + sin 2x/2 + sin 3x/3 + sin 4x/4 + sin 8x/8)``.

    Solves ``u_t = u_xx + e^{-t}(3/2 sin 2x + 8/3 sin 3x + 15/4 sin 4x + 63/8 sin 8x)``.
    ``points``: ``[N, 2]`` (x, t).  Returns ``[N, 1]`` (u).
    """
    p = _points(points, 2, "diffusion_reaction")
    x, t = p[:, 0], p[:, 1]
    s = sum(np.sin(k * x) / k for k in (1, 2, 3, 4, 8))
    return (np.exp(-t) * s)[:, None]


def wave(points: np.ndarray) -> np.ndarray:
    """``u = sin(pi x) cos(2 pi t) + 1/2 sin(4 pi x) cos(8 pi t)``, a solution of ``u_tt = 4 u_xx``.

    ``points``: ``[N, 2]`` (x, t).  Returns ``[N, 1]`` (u).
    """
    p = _points(points, 2, "wave")
    x, t = p[:, 0], p[:, 1]
    u = np.sin(np.pi * x) * np.cos(2 * np.pi * t) + 0.5 * np.sin(4 * np.pi * x) * np.cos(8 * np.pi * t)
    return u[:, None]


def burgers(points: np.ndarray, nodes: int = BURGERS_QUADRATURE_NODES) -> np.ndarray:
    """Viscous Burgers, ``nu = 0.01/pi``, ``u(x, 0) = -sin(pi x)``: Cole-Hopf + Gauss-Hermite.

    ``u(x, t) = -sum_i w_i sin(pi y_i) F_i / sum_i w_i F_i`` with Hermite nodes ``s_i``, weights
    ``w_i``, ``y_i = x - sqrt(4 nu t) s_i`` and ``F_i = exp(-cos(pi y_i) / (2 pi nu))``; the
    exponent ``log w_i - cos(pi y_i) / (2 pi nu)`` is shifted by its maximum over ``i``.
    ``t <= 0`` gives ``-sin(pi x)``.  ``nodes``: Gauss-Hermite order.

    ``points``: ``[N, 2]`` (x, t).  Returns ``[N, 1]`` (u).
    """
    p = _points(points, 2, "burgers")
    s, w = roots_hermite(int(nodes))
    keep = w > 0  # extreme weights underflow for large orders; they contribute nothing
    s, logw = s[keep], np.log(w[keep])
    inv = 1.0 / (2.0 * np.pi * BURGERS_NU)
    out = np.empty(p.shape[0])
    for lo in range(0, p.shape[0], _CHUNK):
        x = p[lo : lo + _CHUNK, 0:1]
        t = p[lo : lo + _CHUNK, 1:2]
        scale = np.sqrt(4.0 * BURGERS_NU * np.clip(t, 0.0, None))
        y = np.pi * (x - scale * s[None, :])  # [n, nodes]
        e = logw[None, :] - inv * np.cos(y)
        e -= e.max(axis=1, keepdims=True)
        f = np.exp(e)
        u = -np.einsum("ij,ij->i", np.sin(y), f) / f.sum(axis=1)
        out[lo : lo + _CHUNK] = np.where(t[:, 0] > 0.0, u, -np.sin(np.pi * x[:, 0]))
    return out[:, None]


def beltrami(points: np.ndarray) -> np.ndarray:
    """Ethier-Steinman Beltrami flow, ``a = d = 1``, ``nu = 1``: velocity ``(u, v, w)`` and pressure ``p``.

    ``points``: ``[N, 4]`` (x, y, z, t).  Returns ``[N, 4]`` (u, v, w, p).
    """
    q = _points(points, 4, "beltrami")
    a, d = BELTRAMI_A, BELTRAMI_D
    x, y, z, t = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    ex, ey, ez = np.exp(a * x), np.exp(a * y), np.exp(a * z)
    s_xy, c_xy = np.sin(a * x + d * y), np.cos(a * x + d * y)
    s_yz, c_yz = np.sin(a * y + d * z), np.cos(a * y + d * z)
    s_zx, c_zx = np.sin(a * z + d * x), np.cos(a * z + d * x)
    decay = np.exp(-d * d * t)
    u = -a * (ex * s_yz + ez * c_xy) * decay
    v = -a * (ey * s_zx + ex * c_yz) * decay
    w = -a * (ez * s_xy + ey * c_zx) * decay
    p = (
        -0.5
        * a
        * a
        * (
            ex * ex
            + ey * ey
            + ez * ez
            + 2.0 * s_xy * c_zx * ey * ez
            + 2.0 * s_yz * c_xy * ez * ex
            + 2.0 * s_zx * c_yz * ex * ey
        )
        * decay
        * decay
    )
    return np.stack([u, v, w, p], axis=1)


EXACT: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "poisson1d": poisson1d,
    "diffusion_reaction": diffusion_reaction,
    "wave": wave,
    "burgers": burgers,
    "beltrami": beltrami,
}

INPUT_DIMS: dict[str, int] = {
    "poisson1d": 1,
    "diffusion_reaction": 2,
    "wave": 2,
    "burgers": 2,
    "beltrami": 4,
}


def exact_solution(problem: str, points: np.ndarray) -> np.ndarray:
    """Exact solution of ``problem`` (a key of ``EXACT``) at ``points`` ``[N, d]``; returns ``[N, m]``.

    Raises ``ValueError`` naming the unknown problem and listing the known ones, or when ``points``
    has the wrong shape.
    """
    try:
        fn = EXACT[problem]
    except (KeyError, TypeError):
        known = ", ".join(sorted(EXACT))
        raise ValueError(f"unknown problem {problem!r}; known problems: {known}") from None
    return fn(points)
