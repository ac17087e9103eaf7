"""One IF-layer step as a single compiled loop (numba), the fast path of ``compact.CompactLayer.advance``.

For each point r and unit j, over the unit's live neurons m ∈ [first_j, first_{j+1})::

    u_m  = λ·v[r, m] + ((z[r, j] + b_j) + β_m)   (b_j: the affine's bias, if not yet added to z)
    s_m  = -A-_m if u_m <= -a·θ-_m;  +A+_m if u_m >= a·θ+_m;  else 0
    v[r, m] = u_m - s_m
    y[r, j] = c_j + Σ_m w_m·s_m          (when decoding)
    R[r, m] += s_m                       (when accumulating rates)

the same float operations, in the same order per neuron, as the artifact's ``Add`` followed by
``CompactLayer.drive``, ``step`` and ``decode`` in numpy (only the decode's sum of several neurons may
round differently in the last bit).  The leak λ (a packed row) is multiplied in even when it is 1:
1·v = v exactly in IEEE arithmetic, so a layer without leak gets the same bits as without the multiply.
numpy's version makes ~8 passes over [N, M] arrays per step; these read and write each membrane once.
Both keep points along the last axis (membranes [M, points], currents [n, points]), so each neuron's
parameters are scalars in the loop over points: ``advance_units`` for one neuron per unit,
``advance_columns`` for several.  Measured on one thread (float32): 640 points × 100 units with one
neuron each ~0.28 ns per update (points by rows, as before: 0.79 ns); a PWL layer of 7,000 neurons on 37
points ~0.14 ms vs numpy 0.8-1.1 ms.  Without numba, ``available`` is False and the numpy version runs.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:         # pragma: no cover - numba is a dependency; the numpy path stays the reference
    njit = None

available = njit is not None


BIAS, POS_THR, POS_AMP, NEG_THR, NEG_AMP, WEIGHT, LEAK = range(7)   # rows of the packed per-neuron parameters


def _advance_units(z, pre_bias, v, neuron, offset, out, rates, decode, accumulate):
    """One neuron per unit (M = n, neuron j of unit j), points along the last axis: z [n, N] with
    ``pre_bias`` [n] still to add (the affine's bias, 0 if already added), v [n, N] (updated in place),
    ``neuron`` [7, n] (rows BIAS … LEAK), offset [n]; writes y into ``out`` [n, N] if ``decode``, adds
    spikes to ``rates`` [n, N] if ``accumulate``; returns the number of non-zero spikes.  Per unit the
    parameters are scalars and the loop over points runs without branches, which LLVM vectorises: ~0.3 ns
    per update against ~0.8 ns with points by rows (each update then loads six parameter vectors)."""
    n, N = v.shape
    zero, one = v.dtype.type(0), v.dtype.type(1)
    fired = np.zeros(N, v.dtype)              # spikes per point, exact in float up to 2^24
    for j in range(n):
        pb, bias, pos_thr, pos_amp = pre_bias[j], neuron[BIAS, j], neuron[POS_THR, j], neuron[POS_AMP, j]
        neg_thr, neg_spike, weight, c = neuron[NEG_THR, j], -neuron[NEG_AMP, j], neuron[WEIGHT, j], offset[j]
        leak = neuron[LEAK, j]
        for r in range(N):
            u = leak * v[j, r] + ((z[j, r] + pb) + bias)
            sm = pos_amp if u >= pos_thr else zero
            sm = neg_spike if u <= neg_thr else sm
            v[j, r] = u - sm
            fired[r] += zero if sm == zero else one
            if decode:
                out[j, r] = c + weight * sm
            if accumulate:
                rates[j, r] += sm
    events = 0
    for r in range(N):
        events += np.int64(fired[r])
    return events


def _advance_columns(z, pre_bias, v, first, neuron, offset, out, rates, decode, accumulate):
    """Several neurons per unit, points along the last axis: z [n, N], v [M, N], out [n, N], rates [M, N],
    unit j's neurons ``first[j]:first[j+1]``, the rest as in ``_advance_units``.

    Each neuron's parameters are then scalars and the loops over points vectorise with no gather, and
    the decode's per-unit sum runs as independent sums across points (per point neuron by neuron, then
    the offset): 2-4x faster than a loop over each point's neurons for a PWL layer of thousands."""
    n, N = z.shape
    zero = v.dtype.type(0)
    zb = np.empty(N, v.dtype)
    total = np.zeros(N, v.dtype)
    fired = np.zeros(N, v.dtype)              # spikes per point, exact in float up to 2^24
    for j in range(n):
        for r in range(N):
            zb[r] = z[j, r] + pre_bias[j]
            total[r] = zero
        for m in range(first[j], first[j + 1]):
            bias, pos_thr, pos_amp = neuron[BIAS, m], neuron[POS_THR, m], neuron[POS_AMP, m]
            neg_thr, neg_spike, weight, leak = neuron[NEG_THR, m], -neuron[NEG_AMP, m], neuron[WEIGHT, m], \
                neuron[LEAK, m]
            for r in range(N):
                u = leak * v[m, r] + (zb[r] + bias)
                sm = pos_amp if u >= pos_thr else zero
                sm = neg_spike if u <= neg_thr else sm
                v[m, r] = u - sm
                total[r] += weight * sm
                fired[r] += zero if sm == zero else v.dtype.type(1)
                if accumulate:
                    rates[m, r] += sm
        if decode:
            for r in range(N):
                out[j, r] = offset[j] + total[r]
    events = 0
    for r in range(N):
        events += np.int64(fired[r])
    return events


advance_units = njit(cache=True, nogil=True)(_advance_units) if available else None
advance_columns = njit(cache=True, nogil=True)(_advance_columns) if available else None


def _run_chain(x0, timesteps, block, packed, offsets, firsts, pre_biases, v0s, one_per_unit, weights,
               has_weight, out_bias, has_bias, total, events):
    """T steps of a chain of m spiking layers (``chain``), points along the last axis, in blocks of
    ``block`` points whose state stays in cache::

        x_0 = x0 (constant),  y_l(t) = layer_l(x_l(t)),  x_{l+1}(t) = W_{l+1}ᵀ·y_l(t),
        total += x_m(t) (+ b)          with x_m = y_{m-1} where the chain has no output matrix

    x0 [n_0, N]; per layer l (tuples of length m): ``packed`` [7, M_l], ``offsets`` [n_l], ``firsts``
    [n_l + 1], ``pre_biases`` [n_l], ``v0s`` [M_l], ``one_per_unit[l]``, ``weights[l]`` = W_{l+1}ᵀ
    [n_{l+1}, n_l] (the last one, the output matrix, used only if ``has_weight``); ``out_bias`` [n_out]
    (if ``has_bias``); ``total`` [n_out, N] accumulates Σ_t, ``events`` [m] the non-zero spikes.  Each
    layer step is ``advance_units`` / ``advance_columns``, each product one BLAS call (``np.dot``)."""
    m = len(packed)
    n0, N = x0.shape
    dtype = x0.dtype
    dummy = np.empty((0, 0), dtype)
    for start in range(0, N, block):
        b = min(block, N - start)
        x = np.ascontiguousarray(x0[:, start:start + b])
        membranes, decoded, currents = [], [], []
        for k in range(m):
            v = np.empty((packed[k].shape[1], b), dtype)
            for i in range(v.shape[0]):
                v[i, :] = v0s[k][i]
            membranes.append(v)
            decoded.append(np.empty((offsets[k].shape[0], b), dtype))
            currents.append(np.empty((weights[k].shape[0], b), dtype))
        acc = np.zeros((total.shape[0], b), dtype)
        for _ in range(timesteps):
            current = x
            for k in range(m):
                if one_per_unit[k]:
                    events[k] += advance_units(current, pre_biases[k], membranes[k], packed[k], offsets[k],
                                               decoded[k], dummy, True, False)
                else:
                    events[k] += advance_columns(current, pre_biases[k], membranes[k], firsts[k], packed[k],
                                                 offsets[k], decoded[k], dummy, True, False)
                if k < m - 1 or has_weight:
                    np.dot(weights[k], decoded[k], currents[k])
                    current = currents[k]
                else:
                    current = decoded[k]
            for i in range(acc.shape[0]):
                for r in range(b):
                    acc[i, r] += current[i, r] + out_bias[i] if has_bias else current[i, r]
        total[:, start:start + b] = acc
    return events


run_chain = njit(cache=True, nogil=True)(_run_chain) if available else None


def needs_compile() -> bool:
    """Whether the first call of a kernel will compile it (all three: ~13 s, once per installation):
    numba is installed, a kernel is neither compiled nor loaded in this process (its dispatcher has no
    signatures) and numba's on-disk cache (``cache=True``: an index beside this file, or under
    ``NUMBA_CACHE_DIR``) holds nothing current for it: no index, or one written for another source stamp
    or numba version.  A cached kernel called with a new dtype (a float64 model after float32 ones)
    compiles that version silently: a few seconds, not counted here."""
    if not available:
        return False
    return any(not kernel.signatures and not _cached(kernel) for kernel in (advance_units, advance_columns, run_chain))


def _cached(kernel) -> bool:
    """Whether numba's cache index of ``kernel`` lists compiled versions for this source and numba."""
    try:
        return bool(kernel._cache._cache_file._load_index())
    except Exception:       # noqa: BLE001 - numba's private cache API moved, or the index is unreadable
        return False
