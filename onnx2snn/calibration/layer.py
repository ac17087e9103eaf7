"""A converted spiking layer and its simulation on calibration data.

A layer maps its input u_in(t) [N, m] to decoded unit values u(t) [N, n]::

    z(t)  = u_in(t)·W + b                         (affine, W [m, n], b [n])
    s(t)  = IF_step(v, z(t))                      (neurons [n, K], see runtimes.neuron)
    u(t)  = Σ_k w[:, k]·s(t)[:, :, k] + c         (decode weights w [n, K], offset c [n])

Inputs are either static ([N, m], direct encoding) or a time series [T, N, m].
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from runtimes.neuron import NeuronParams, if_step


@dataclass
class ConvertedLayer:
    weight: np.ndarray          # [m, n]
    bias: np.ndarray            # [n]
    neurons: NeuronParams       # [n, K]
    decode_weight: np.ndarray   # [n, K]
    decode_offset: np.ndarray   # [n]

    def with_(self, **changes) -> "ConvertedLayer":
        return replace(self, **changes)

    @property
    def neuron_count(self) -> int:
        live = np.isfinite(self.neurons.theta_pos)
        if self.neurons.signed:
            live = live | np.isfinite(self.neurons.theta_neg)
        return int(live.sum())


@dataclass
class LayerTrace:
    """Simulation record: decoded series u(t) [T, N, n], its mean, and the spike events per neuron."""

    series: np.ndarray
    events: np.ndarray          # [n, K] summed over samples and steps

    @property
    def mean(self) -> np.ndarray:
        return self.series.mean(axis=0)


def simulate_layer(inputs: np.ndarray, layer: ConvertedLayer, timesteps: int, static: bool) -> LayerTrace:
    """Run ``layer`` for T steps on ``inputs`` (static [N, m] or series [T, N, m])."""
    n, K = layer.neurons.shape
    N = inputs.shape[0] if static else inputs.shape[1]
    dtype = layer.weight.dtype
    series = np.empty((timesteps, N, n), dtype=dtype)
    events = np.zeros((n, K), dtype=np.int64)
    v = np.broadcast_to(layer.neurons.v0, (N, n, K)).astype(dtype)
    z_static = inputs @ layer.weight + layer.bias if static else None
    for t in range(timesteps):
        z = z_static if static else inputs[t] @ layer.weight + layer.bias
        s, v = if_step(v, z, layer.neurons)
        events += np.count_nonzero(s, axis=0)
        series[t] = np.einsum("bnk,nk->bn", s, layer.decode_weight) + layer.decode_offset
    return LayerTrace(series=series, events=events)
