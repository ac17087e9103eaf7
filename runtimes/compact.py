"""A layer of IF neurons in compact form: only live neurons, flattened, for fast simulation.

An IF layer stores parameters [n, K] with padding neurons (θ+ = θ- = inf) that never fire.  The compact
form keeps the M live neurons in unit order, so a step costs O(N·M) instead of O(N·n·K)::

    x   = z[:, unit] + β                 [N, M]   (each neuron reads its unit's current)
    u   = λ·v + x                                   (λ = 1: u = v + x)
    s   = A+·[u >= a·θ+] - A-·[u <= -a·θ-]          (A± = θ± where finite, else 0: that side never fires)
    v'  = u - s
    y_j = c_j + Σ_{m ∈ unit j} w_m · s_m           (decode; units without live neurons give c_j)

Semantics are exactly those of ``neuron.if_step`` followed by the decode ops of ``spec``.  ``drive``,
``step`` and ``decode`` are the numpy definition; ``advance`` runs the three as one compiled loop
(``kernels``) with the same spikes, and is what calibration and the numpy runtime call.
"""

from __future__ import annotations

import numpy as np

from . import kernels
from .neuron import NeuronParams

CACHE_BYTES = 1 << 18           # per-core cache a block of membranes should fit (L2 is 2 MiB/core here)
COMPILED_CACHE_BYTES = 1 << 20  # the same for the compiled loop, which touches each membrane once per step


def block_rows(neurons: int, cache_bytes: int = CACHE_BYTES, least: int = 32) -> int:
    """Rows per block so that one float32 [rows, ``neurons``] array fills about ``cache_bytes``.

    Points are independent, so a layer (or network) can step a block of rows through all T steps while
    its membranes stay in cache: for 4096 points × 2000 neurons, 64-row blocks step 3-4x faster than all
    rows at once (the step is memory-bound).  ``least`` bounds the per-call overhead of small blocks."""
    return max(least, cache_bytes // (4 * max(int(neurons), 1)))


def compiled_block_rows(neurons: int) -> int:
    """``block_rows`` for ``CompactLayer.advance``: with the compiled loop (``kernels``) fewer, larger
    blocks are faster (poisson1d, 10,000 points, T = 32, numpy step: 1.43 → 1.34 ANN passes with one
    neuron per unit, 5.5 → 4.8 with the default expansion)."""
    return block_rows(neurons, COMPILED_CACHE_BYTES if kernels.available else CACHE_BYTES)


class CompactLayer:
    def __init__(self, params: NeuronParams, decode_weight: np.ndarray, decode_offset: np.ndarray, dtype):
        n, K = params.shape
        pos = np.isfinite(params.theta_pos)
        neg = np.isfinite(params.theta_neg) & bool(params.signed)
        live = params.live
        self.unit = np.nonzero(live)[0]                # row-major order keeps units contiguous
        flat = lambda a: np.broadcast_to(a, (n, K))[live].astype(dtype)
        self.n, self.M = n, int(live.sum())
        self.bias = flat(params.bias)
        self.v0 = flat(params.v0)
        self.pos_amp = flat(np.where(pos, params.theta_pos, 0.0))
        self.neg_amp = flat(np.where(neg, params.theta_neg, 0.0))
        self.pos_thr = flat(np.where(pos, params.fire_fraction * params.theta_pos, np.inf))
        self.neg_thr = flat(np.where(neg, -params.fire_fraction * params.theta_neg, -np.inf))
        self.weight = flat(decode_weight)
        self.leak = np.dtype(dtype).type(params.leak)   # λ rounded to the dtype once, as every runtime does
        self.offset = np.asarray(decode_offset, dtype)
        counts = np.bincount(self.unit, minlength=n)
        self.has_neurons = counts > 0
        self.starts = (np.cumsum(counts) - counts)[self.has_neurons]
        self.first = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)    # unit j: [first_j, first_j+1)
        self.signed = bool(neg.any())
        self._neg_spike = -self.neg_amp
        self._zero = np.zeros((), dtype)
        # both sides can never fire at once: s = A+·[u >= a·θ+] - A-·[u <= -a·θ-] needs no select
        self._exclusive = not np.any(self.pos_thr <= self.neg_thr)
        self._one_per_unit = self.M == n and bool(np.all(self.unit == np.arange(n)))
        # one neuron per unit with w = 1, c = 0 (the default one-neuron conversion): the spikes are the values
        self._identity_decode = (self._one_per_unit and bool(np.all(self.weight == 1))
                                 and bool(np.all(self.offset == 0)))
        self._packed = np.ascontiguousarray(np.stack([self.bias, self.pos_thr, self.pos_amp, self.neg_thr,
                                                      self.neg_amp, self.weight,
                                                      np.full(self.M, self.leak)]).reshape(7, self.M))
        self._no_bias = np.zeros(n, dtype)
        # membranes stored [M, points], so the compiled loops run along points (kernels); numpy: [points, M]
        self.columns = kernels.available

    def initial_membrane(self, rows: int) -> np.ndarray:
        """Membranes of ``rows`` points, [rows, M], or [M, rows] where ``columns`` (see ``by_point``)."""
        if self.columns:
            return np.broadcast_to(self.v0[:, None], (self.M, rows)).copy()
        return np.broadcast_to(self.v0, (rows, self.M)).copy()

    def unit_rows(self, z: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        """The current z (+ bias) [..., n or 1] broadcast to the n units, as rows [points, n] in the layout
        ``advance`` reads without a copy (F-ordered where ``columns``: its transpose [n, points] is
        contiguous)."""
        z = z if bias is None else z + bias
        rows = np.broadcast_to(z, z.shape[:-1] + (self.n,)).reshape(-1, self.n)
        return np.asfortranarray(rows) if self.columns else np.ascontiguousarray(rows)

    def empty_rows(self, points: int) -> np.ndarray:
        """An uninitialised [points, n] array in the layout ``advance`` writes decoded values into directly
        (F-ordered where ``columns``; the numpy runtime's next MatMul keeps that layout: ``ops``)."""
        return np.empty((self.n, points), self.weight.dtype).T if self.columns \
            else np.empty((points, self.n), self.weight.dtype)

    def by_point(self, a: np.ndarray) -> np.ndarray:
        """The [rows, M] view of an array in the membranes' layout (membranes, rates from ``advance``)."""
        return a.T if self.columns else a

    def drive(self, z: np.ndarray) -> np.ndarray:
        """The per-neuron input x = z[:, unit] + β [N, M] (compute once when z is constant)."""
        if self._one_per_unit:                          # unit = identity: no gather
            return z + self.bias
        x = np.take(z, self.unit, axis=1)
        x += self.bias
        return x

    def step(self, v: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Advance membranes ``v`` [N, M] in place by inputs ``x`` = ``drive(z)``; returns spikes [N, M]."""
        if self.leak != 1:
            v *= self.leak
        v += x
        if self._exclusive:                            # masks times amplitudes: ~3x faster than selects
            s = (v >= self.pos_thr) * self.pos_amp
            if self.signed:
                s -= (v <= self.neg_thr) * self.neg_amp
        else:
            s = np.where(v >= self.pos_thr, self.pos_amp, self._zero)
            if self.signed:
                s = np.where(v <= self.neg_thr, self._neg_spike, s)
        v -= s
        return s

    def advance(self, v: np.ndarray, z: np.ndarray, out: np.ndarray | None = None,
                rates: np.ndarray | None = None, pre_bias: np.ndarray | None = None) -> int:
        """One step from the unit currents ``z`` [N, n] (plus ``pre_bias`` [n], the affine's bias, if
        given): membranes ``v`` (from ``initial_membrane``) advanced in place, the decoded values written
        to ``out`` [N, n] (if given), the spikes added to ``rates`` (if given; the layout of ``v``);
        returns the number of non-zero spikes.  ``drive`` + ``step`` + ``decode`` fused into one compiled
        loop (``kernels``), or composed in numpy where numba is missing."""
        if pre_bias is None:
            pre_bias = self._no_bias
        if kernels.available and z.dtype == v.dtype:
            dummy = v[:0]
            z_t = np.ascontiguousarray(z.T)     # a view when z is F-ordered, as the numpy runtime keeps it
            direct = out is not None and out.T.flags.c_contiguous
            out_t = dummy if out is None else out.T if direct else np.empty((self.n, z.shape[0]), v.dtype)
            rates_t = dummy if rates is None else rates
            if self._one_per_unit:
                events = kernels.advance_units(z_t, pre_bias, v, self._packed, self.offset, out_t, rates_t,
                                               out is not None, rates is not None)
            else:
                events = kernels.advance_columns(z_t, pre_bias, v, self.first, self._packed, self.offset, out_t,
                                                 rates_t, out is not None, rates is not None)
            if out is not None and not direct:
                out[...] = out_t.T
            return events
        s = self.step(self.by_point(v), self.drive(z + pre_bias))
        if out is not None:
            out[...] = self.decode(s)
        if rates is not None:
            self.by_point(rates)[...] += s
        return int(np.count_nonzero(s))

    def decode(self, s: np.ndarray) -> np.ndarray:
        """Unit values [N, n] from spikes (or rates) [N, M]; may return ``s`` itself (identity decode)."""
        if self._identity_decode:
            return s
        if self._one_per_unit:                          # one neuron per unit: no gather needed
            out = s * self.weight
            out += self.offset
            return out
        out = np.broadcast_to(self.offset, (s.shape[0], self.n)).copy()
        if self.M:
            out[:, self.has_neurons] += np.add.reduceat(s * self.weight, self.starts, axis=1)
        return out
