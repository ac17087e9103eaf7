"""Advanced calibration: the layer's weights fitted to the ANN by Adam through the simulated SNN.

Objective for spiking layer l with weights (W, b), SNN inputs u_in(t) [T, N, m] (or static [N, m]) and
the ANN's activation h(z_ANN) [N, n]::

    L(W, b) = E_N |r(W, b) - h(z_ANN)|² + λ‖W‖²,     r = (1/T) Σ_t u(t)  (decoded rate, exact simulation)

The forward value r is the exact T-step simulation (the same neuron code the runtime executes); the
gradient passes straight through the quantiser: ∂r/∂z̄ ≈ g'(z̄), the slope of the unquantised response
g (``layer.static_response``) at the mean current z̄ = ū_in·W + b.  Adam (``adam.py``) with a cosine
learning-rate schedule (from ``lr`` to 0) and decoupled weight decay λ, on minibatches.
"""

from __future__ import annotations

import numpy as np

from .adam import Adam
from .layer import ConvertedLayer, simulate_layer, static_response

ITERATIONS = 120
BATCH = 256
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 1e-4
MIN_POINTS = 32


def advanced_calibration(layer: ConvertedLayer, inputs: np.ndarray, static: bool, target: np.ndarray,
                         timesteps: int, rng: np.random.Generator, iterations: int = ITERATIONS,
                         batch: int = BATCH, lr: float = LEARNING_RATE,
                         weight_decay: float = WEIGHT_DECAY) -> ConvertedLayer:
    """Returns ``layer`` with (W, b) fitted; ``target`` is h(z_ANN) [N, n]."""
    N = target.shape[0]
    params = [layer.weight.astype(np.float64), layer.bias.astype(np.float64)]
    adam = Adam(params, decay=[weight_decay, 0.0])          # decoupled weight decay (AdamW) on W only
    for step in range(1, iterations + 1):
        idx = rng.choice(N, min(batch, N), replace=False)
        x = inputs[idx] if static else inputs[:, idx]
        current = layer.with_(weight=params[0].astype(layer.weight.dtype), bias=params[1].astype(layer.bias.dtype))
        rate = simulate_layer(x, current, timesteps, static, rates=True).mean
        mean_in = (x if static else x.mean(axis=0)).astype(np.float64)
        _, slope = static_response(mean_in @ params[0] + params[1], current)
        grad_z = 2.0 * (rate - target[idx]) * slope / len(idx)
        adam.step([mean_in.T @ grad_z, grad_z.sum(axis=0)], lr * 0.5 * (1 + np.cos(np.pi * (step - 1) / iterations)))
    return layer.with_(weight=params[0].astype(layer.weight.dtype), bias=params[1].astype(layer.bias.dtype))
