"""The order in which a stream visits its points: space-filling paths over a grid or a cloud of points.

A delta network (``runtimes.spec``, coding "delta") pays for each change of its units' values between
consecutive points, so neighbours should follow each other.  ``path_order(points, order)`` returns the
permutation that visits ``points`` [N, d]:

* ``keep``: as given (the user's own order: a trajectory, a time series);
* ``boustrophedon``: the snake — sorted along axis 0 (d = 1), else rows along the last axis, reversed every
  other row, recursively (the reflected mixed-radix order: each step moves one level along one axis);
* ``hilbert``: the Hilbert curve (Skilling 2004, any d) over the points' cells of a 2^b grid;
* ``random``: a seeded shuffle, the honest worst case.

Coordinates are first mapped to integer levels per axis: a grid's own levels where the axis has at most
``GRID_LEVELS(N, d)`` distinct values, else ⌈N^(1/d)⌉ equal bins of the axis' range.
"""

from __future__ import annotations

import numpy as np

from ..errors import DomainError

ORDERS = ("boustrophedon", "hilbert", "random", "keep")
DEFAULT_ORDER = "boustrophedon"
HILBERT_BITS = 63       # b·d bits of a Hilbert index fit an int64


def path_order(points: np.ndarray, order: str = DEFAULT_ORDER, seed: int = 0) -> np.ndarray:
    """The permutation [N] of the rows of ``points`` [N, d] that ``order`` visits (module docstring)."""
    points = np.asarray(points, np.float64).reshape(len(points), -1)
    n, d = points.shape
    if order == "keep" or n < 2:
        return np.arange(n)
    if order == "random":
        return np.random.default_rng(seed).permutation(n)
    if order not in ORDERS:
        raise DomainError(f"unknown order {order!r}; use {', '.join(ORDERS)}")
    levels, sizes = _levels(points)
    if order == "boustrophedon":
        return np.argsort(_snake_index(levels, sizes), kind="stable")
    bits = max(1, int(np.ceil(np.log2(max(int(sizes.max()), 2)))))
    if bits * d > HILBERT_BITS:                   # coarser cells, so that the index fits
        levels, bits = (levels << (HILBERT_BITS // d)) // (1 << bits), HILBERT_BITS // d
    return np.argsort(hilbert_index(levels, bits), kind="stable")


def _levels(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer levels [N, d] per axis and their counts [d] (module docstring)."""
    n, d = points.shape
    bins = max(1, int(np.ceil(n ** (1.0 / d) - 1e-9)))
    levels, sizes = np.zeros((n, d), np.int64), np.zeros(d, np.int64)
    for k in range(d):
        values, index = np.unique(points[:, k], return_inverse=True)
        if len(values) <= 2 * bins:
            levels[:, k], sizes[k] = index.ravel(), len(values)
        else:
            lo, hi = values[0], values[-1]
            levels[:, k] = np.minimum(((points[:, k] - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)
            sizes[k] = bins
    return levels, sizes


def _snake_index(levels: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Position along the boustrophedon: p_k = p_{k-1}·m_k + c_k, c_k = b_k on even p_{k-1}, m_k - 1 - b_k
    on odd ones (float64: exact below 2^53 cells)."""
    position = np.zeros(len(levels), np.float64)
    for k in range(levels.shape[1]):
        odd = (position % 2) == 1
        c = np.where(odd, sizes[k] - 1 - levels[:, k], levels[:, k])
        position = position * sizes[k] + c
    return position


def hilbert_index(levels: np.ndarray, bits: int) -> np.ndarray:
    """The Hilbert index [N] of integer cells ``levels`` [N, d] in [0, 2^bits) (Skilling's transform
    "AxesToTranspose", then the transposed bits interleaved, most significant first)."""
    x = [levels[:, k].astype(np.int64).copy() for k in range(levels.shape[1])]
    d = len(x)
    q = 1 << (bits - 1)
    while q > 1:                                  # inverse undo
        p = q - 1
        for i in range(d):
            high = (x[i] & q) != 0
            x[0] = np.where(high, x[0] ^ p, x[0])
            t = np.where(high, 0, (x[0] ^ x[i]) & p)
            x[0], x[i] = x[0] ^ t, x[i] ^ t
        q >>= 1
    for i in range(1, d):                         # Gray encode
        x[i] = x[i] ^ x[i - 1]
    t = np.zeros_like(x[0])
    q = 1 << (bits - 1)
    while q > 1:
        t = np.where((x[d - 1] & q) != 0, t ^ (q - 1), t)
        q >>= 1
    x = [xi ^ t for xi in x]
    index = np.zeros_like(x[0])
    for bit in range(bits - 1, -1, -1):
        for i in range(d):
            index = (index << 1) | ((x[i] >> bit) & 1)
    return index


def visiting_order(inputs: dict[str, np.ndarray], order: str = DEFAULT_ORDER, seed: int = 0,
                   grid: bool = False) -> dict[str, np.ndarray]:
    """The permutation of each input's rows: one path shared by every input of a row-wise network (its
    points are the rows, features side by side), or one per input of a separable (``grid``) network, whose
    inputs are its grid's axes."""
    if not grid:
        points = np.concatenate([a.reshape(a.shape[0], -1) for a in inputs.values()], axis=1)
        shared = path_order(points, order, seed)
        return {name: shared for name in inputs}
    return {name: path_order(a.reshape(a.shape[0], -1), order, seed + k) for k, (name, a) in enumerate(inputs.items())}
