"""The signed integrate-and-fire neuron of ``spec.IF`` in numpy: the single definition every simulation
in this project (runtime and calibration) calls.

Symbols (shapes broadcast): v membrane [..., n, K], z current [..., n], β bias, θ+ / θ- thresholds
[n, K], a fire fraction, λ leak (1: no leak).  One step::

    u = λ·v + (z[..., None] + β)          (λ = 1: u = v + (z[..., None] + β), no multiply)
    s = +θ+ if u >= a·θ+;  -θ- if signed and u <= -a·θ-;  else 0
    v' = u - s

Without leak charge is conserved: v_T + Σ_t s_t = v_0 + Σ_t (z_t + β).

A phase-coded neuron (``coding = "phase"``, ``spec``) integrates z once into a membrane saturating at
[-θ-, θ+] and fires its signed binary digits against the thresholds θ±·2^-t of step t = 0..T-1
(``phase_step``).

A delta-coded neuron (``coding = "delta"``, ``spec``) keeps r, the value it has sent so far, and sends
the change of its activation a in multiples of θ± once it reaches a·θ± (``delta_step``)::

    u = (a[..., None] + β) - r;   k = ±max(1, floor(±u/θ± + (1 - a))) past ±a·θ±, else 0;   r' = r + k·θ±
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NeuronParams:
    """Per-neuron parameters of one IF layer, each [n, K]; ``signed``, ``fire_fraction``, ``leak`` (λ,
    1.0: integrate-and-fire without leak) and ``coding`` ("rate" or "phase", ``spec``) are shared."""

    bias: np.ndarray
    theta_pos: np.ndarray
    theta_neg: np.ndarray
    v0: np.ndarray
    signed: bool
    fire_fraction: float
    leak: float = 1.0
    coding: str = "rate"
    graded: bool = False        # delta coding: one graded event per sending unit instead of |k| binary ones

    @property
    def shape(self) -> tuple[int, int]:
        return self.theta_pos.shape

    @property
    def live(self) -> np.ndarray:
        """[n, K] mask of neurons that can fire (θ+ finite, or θ- finite and signed); others are padding."""
        return live_mask(self.theta_pos, self.theta_neg, self.signed)


def live_mask(theta_pos: np.ndarray, theta_neg: np.ndarray, signed: bool) -> np.ndarray:
    return np.isfinite(theta_pos) | (np.isfinite(theta_neg) & bool(signed))


def if_step(v: np.ndarray, z: np.ndarray, p: NeuronParams) -> tuple[np.ndarray, np.ndarray]:
    """One IF step.  ``v`` [..., n, K] (or [n, K] at t = 1), ``z`` [..., n]; returns (spikes, v')."""
    u = leaky(v, p.leak) + (z[..., None] + p.bias)
    return fire(u, p.theta_pos, p.theta_neg, p.signed, p.fire_fraction)


def leaky(v: np.ndarray, leak: float) -> np.ndarray:
    """λ·v in v's dtype (λ rounded to it, as every runtime rounds it), or ``v`` itself when λ = 1."""
    return v if leak == 1 else v * v.dtype.type(leak)


def fire(u: np.ndarray, theta_pos: np.ndarray, theta_neg: np.ndarray, signed: bool,
         fire_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Threshold and reset an integrated membrane ``u``: returns (spikes, u - spikes)."""
    with np.errstate(invalid="ignore"):
        s = np.where(u >= fire_fraction * theta_pos, theta_pos, 0.0).astype(u.dtype, copy=False)
        if signed:
            s = np.where(u <= -fire_fraction * theta_neg, -theta_neg, s).astype(u.dtype, copy=False)
    return s, u - s


def phase_step(v: np.ndarray, z: np.ndarray, step: int, p: NeuronParams, timesteps: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Step ``step`` (0 = the first) of a phase-coded layer as ``spec`` defines it: (events
    s = T·d·θ±·2^-step, v') from ``phase_digits``."""
    d, v = phase_digits(v, z, step, p)
    return d * d.dtype.type(timesteps), v


def phase_digits(v: np.ndarray, z: np.ndarray, step: int, p: NeuronParams) -> tuple[np.ndarray, np.ndarray]:
    """The digit of step ``step`` (0 = the first) of a phase-coded layer, as amplitudes d·θ±·2^-step, and
    the membrane after it: ``v`` [..., n, K] (or [n, K] at step 0), ``z`` [..., n] (read, and the membrane
    clipped to [-θ-, θ+], at step 0 only)."""
    if step == 0:
        lower = -p.theta_neg if p.signed else -np.inf
        u = np.clip(v + (z[..., None] + p.bias), lower, p.theta_pos).astype(v.dtype, copy=False)
    else:
        u = v
    scale = u.dtype.type(2.0 ** -step)
    return fire(u, p.theta_pos * scale, p.theta_neg * scale, p.signed, p.fire_fraction)


def simulate_constant(z: np.ndarray, p: NeuronParams, timesteps: int) -> tuple[np.ndarray, np.ndarray]:
    """Drive the layer with a constant current ``z`` [..., n] for T steps.

    Returns (rate, spike_count): rate = (1/T)·Σ_t s_t [..., n, K], spike_count = number of non-zero
    events [..., n, K].
    """
    v = np.broadcast_to(p.v0, z.shape + (p.shape[1],)).astype(z.dtype)
    total = np.zeros_like(v)
    count = np.zeros(v.shape, dtype=np.int64)
    for _ in range(timesteps):
        s, v = if_step(v, z, p)
        total += s
        count += s != 0
    return total / timesteps, count


def delta_step(r: np.ndarray, a: np.ndarray, p: NeuronParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step (one point) of a delta-coded layer as ``spec`` defines it: ``r`` [..., n, 1] the value sent
    so far (or r(0) [n, 1]), ``a`` [..., n] the activation; returns (s = k·θ±, r' = r + s, |k|)."""
    dtype = r.dtype.type
    u = (a[..., None] + p.bias) - r
    rest = dtype(1 - p.fire_fraction)
    up = np.where(u >= dtype(p.fire_fraction) * p.theta_pos, np.maximum(np.floor(u / p.theta_pos + rest), 1), 0)
    down = np.where(u <= -(dtype(p.fire_fraction) * p.theta_neg), np.maximum(np.floor(-u / p.theta_neg + rest), 1), 0)
    s = (up.astype(r.dtype) * p.theta_pos - down.astype(r.dtype) * p.theta_neg).astype(r.dtype, copy=False)
    return s, r + s, (up + down).astype(r.dtype, copy=False)
