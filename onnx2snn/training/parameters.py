"""The numpy parameters of a trainable spiking network: what training produces and an artifact stores.

A spiking MLP maps x [B, n_0] through layers l = 1..L.  A *spiking* layer l holds n_l signed IF neurons
(one per unit, ``runtimes.spec`` with K = 1, β = 0, fire fraction a = 1) driven by the current
z_l(t) = x_{l-1}(t)·W_l + b_l, where x_0(t) = x (direct encoding: the same analog input every step) and
x_{l-1}(t) = s_{l-1}(t) the previous layer's spikes (amplitudes +θ+ / -θ-)::

    u = λ·v(t-1) + z_l(t);   s = +θ+ if u >= a·θ+,  -θ- if u <= -a·θ-,  else 0;   v(t) = u - s,  v(0) = v0

with leak λ ∈ (0, 1] (λ = 1: integrate-and-fire; λ < 1: the paper's leaky IF) and fire fraction a
(1: the papers' neuron; 1/2 with v0 = 0: the rounding neuron a converted network may use).  The last layer is the
readout: *analog* (``spiking`` False: y = (1/T) Σ_t s_{L-1}(t)·W_L + b_L, accumulate and divide) or
*rate* (``spiking`` True: y = (1/T) Σ_t s_L(t), quantised to θ/T).

A spiking DeepONet is two such MLPs: the branch reads the sensor values f [B, m], the trunk the point
x [B, d]; its output is u = Σ_r branch_r · trunk_r + b0 (the product of two decoded values: analog).
As an artifact its single input is the concatenation [f, x] [B, m + d].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class DenseLayer:
    """One affine map and, when ``spiking``, its neurons.  weight [n_in, n_out]; the rest [n_out]."""

    weight: np.ndarray
    bias: np.ndarray
    spiking: bool = True
    theta_pos: np.ndarray | None = None
    theta_neg: np.ndarray | None = None
    v0: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.weight.shape[1]
        if self.spiking:
            dtype = self.weight.dtype
            self.theta_pos = np.ones(n, dtype) if self.theta_pos is None else np.asarray(self.theta_pos, dtype)
            self.theta_neg = np.ones(n, dtype) if self.theta_neg is None else np.asarray(self.theta_neg, dtype)
            self.v0 = np.zeros(n, dtype) if self.v0 is None else np.asarray(self.v0, dtype)

    @property
    def width(self) -> int:
        return self.weight.shape[1]


@dataclass
class SpikingMLPParams:
    """Layers in order (every layer but the last spiking; the last is the readout), T, λ and a."""

    layers: list[DenseLayer]
    timesteps: int
    leak: float = 1.0
    fire_fraction: float = 1.0

    @property
    def readout(self) -> str:
        return "rate" if self.layers[-1].spiking else "analog"

    @property
    def n_inputs(self) -> int:
        return self.layers[0].weight.shape[0]

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].width


@dataclass
class SpikingDeepONetParams:
    """branch: f [B, m] -> [B, r]; trunk: x [B, d] -> [B, r]; u = Σ_r branch·trunk + bias (one output)."""

    branch: SpikingMLPParams
    trunk: SpikingMLPParams
    bias: float = 0.0
    metadata: dict = field(default_factory=dict)

    @property
    def timesteps(self) -> int:
        return self.branch.timesteps
