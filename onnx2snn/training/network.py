"""The trainable spiking MLP in torch: the T-step simulation of ``parameters.py``, differentiable in both modes.

Symbols: x [B, n_0] input, W_l [n_{l-1}, n_l], b_l [n_l], λ leak, a fire fraction, θ± [n_l], v0 [n_l].
For t = 1..T, with h_0(t) = x (direct encoding: the first current z_1 = x·W_1 + b_1 is computed once)::

    z_l(t) = h_{l-1}(t)·W_l + b_l + ξ_l(t)      ξ: the activity perturbation (zero but for its tangent)
    u_l(t) = λ·v_l(t-1) + z_l(t),  h_l(t) = s(u_l(t)),  v_l(t) = u_l(t) - h_l(t)

(``surrogate.spike``: exact spikes, surrogate derivatives), and the readout

    analog: y = ((1/T) Σ_t h_{L-1}(t))·W_L + b_L + ξ_L;      rate: y = (1/T) Σ_t h_L(t).

Gradients flow through the reset (v = u - s differentiates s too), as in the paper's group's code.  The
parameters are passed to ``run`` as a flat list [W_1, b_1, ..., W_L, b_L] so the estimators can run the
network at perturbed weights (finite differences), with dual tensors (forward mode) or with autograd
(BPTT).  A forward-mode run under ``torch.no_grad`` keeps no graph: its memory does not grow with T.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .parameters import DenseLayer, SpikingMLPParams
from .surrogate import Surrogate, spike

# ξ_l(t) for layer l (0-based; the readout is len(layers) - 1), step t and the layer's input h (or None
# for an analog readout, perturbed once): a [B, n_l] tensor to add to the current, or None.
Perturbation = Callable[[int, int, torch.Tensor], "torch.Tensor | None"]


class SpikingMLP:
    """A spiking MLP with torch parameters (float64 by default); ``run`` simulates it."""

    def __init__(self, params: SpikingMLPParams, surrogate: Surrogate, dtype=torch.float64):
        self.timesteps = params.timesteps
        self.leak = float(np.float32(params.leak))   # the artifact stores λ as a float32 attribute
        self.fire_fraction = float(params.fire_fraction)
        self.surrogate = surrogate
        self.readout = params.readout
        self.dtype = dtype
        self.parameters = [torch.tensor(np.asarray(t), dtype=dtype)
                           for layer in params.layers for t in (layer.weight, layer.bias)]
        self._neurons = [tuple(torch.tensor(np.asarray(t), dtype=dtype) for t in (l.theta_pos, l.theta_neg, l.v0))
                         for l in params.layers if l.spiking]

    @property
    def n_layers(self) -> int:
        return len(self.parameters) // 2

    def layer_slices(self) -> list[list[int]]:
        """Indices into ``parameters`` of each layer's (W, b)."""
        return [[2 * l, 2 * l + 1] for l in range(self.n_layers)]

    def sample_axis(self, layer: int) -> int:
        """Every layer's samples are the rows of the output (one point each)."""
        return 0

    def layer_flops(self) -> np.ndarray:
        """Multiply-adds of each layer's affine map per point and step (the readout's counted once per T)."""
        flops = np.array([self.parameters[2 * l].numel() for l in range(self.n_layers)], float)
        flops[0] /= self.timesteps          # the first current is computed once
        if self.readout == "analog":
            flops[-1] /= self.timesteps
        return flops

    def run(self, x: torch.Tensor, parameters: list[torch.Tensor] | None = None, *,
            generator: torch.Generator | None = None, perturbation: Perturbation | None = None) -> torch.Tensor:
        """Outputs y [B, n_L] of inputs x [B, n_0]."""
        p = self.parameters if parameters is None else parameters
        spiking = len(self._neurons)
        state = [v0.expand(x.shape[0], -1).to(x.dtype) for _, _, v0 in self._neurons]
        first = x @ p[0] + p[1]
        total = None
        for t in range(self.timesteps):
            h = x
            for l in range(spiking):
                z = first if l == 0 else h @ p[2 * l] + p[2 * l + 1]
                if perturbation is not None:
                    xi = perturbation(l, t, h)
                    if xi is not None:
                        z = z + xi
                theta_pos, theta_neg, _ = self._neurons[l]
                u = self.leak * state[l] + z if self.leak != 1.0 else state[l] + z
                h = spike(u, theta_pos, theta_neg, self.fire_fraction, self.surrogate, generator)
                state[l] = u - h
            total = h if total is None else total + h
        mean = total / self.timesteps
        if self.readout == "rate":
            return mean
        y = mean @ p[-2] + p[-1]
        if perturbation is not None:
            xi = perturbation(self.n_layers - 1, 0, mean)
            if xi is not None:
                y = y + xi
        return y

    def to_params(self) -> SpikingMLPParams:
        """The current weights as numpy parameters (thresholds and v0 unchanged)."""
        layers, neurons = [], iter(self._neurons)
        for l in range(self.n_layers):
            spiking = l < self.n_layers - 1 or self.readout == "rate"
            theta = next(neurons) if spiking else (None, None, None)
            layers.append(DenseLayer(self.parameters[2 * l].detach().numpy().copy(),
                                     self.parameters[2 * l + 1].detach().numpy().copy(), spiking,
                                     *(None if v is None else v.numpy().copy() for v in theta)))
        return SpikingMLPParams(layers, self.timesteps, self.leak, self.fire_fraction)


def initial_mlp(widths: list[int], timesteps: int, *, readout: str = "analog", leak: float = 1.0,
                seed: int = 0, dtype=np.float64) -> SpikingMLPParams:
    """A fresh network n_0 → ... → n_L: W, b ~ U(-1/√n_in, 1/√n_in) (torch's ``Linear`` rule),
    θ± = 1, v0 = 0, fire fraction 1 (the papers' neuron)."""
    if readout not in ("analog", "rate"):
        raise ValueError(f"readout {readout!r}: expected 'analog' or 'rate'")
    rng = np.random.default_rng(seed)
    layers = []
    for l, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        bound = 1.0 / np.sqrt(n_in)
        spiking = l < len(widths) - 2 or readout == "rate"
        layers.append(DenseLayer(rng.uniform(-bound, bound, (n_in, n_out)).astype(dtype),
                                 rng.uniform(-bound, bound, n_out).astype(dtype), spiking))
    return SpikingMLPParams(layers, timesteps, leak)
