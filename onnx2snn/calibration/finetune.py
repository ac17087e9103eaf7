"""End-to-end calibration ("finetune"): all spiking layers and readouts fitted jointly to the ANN's outputs.

The layer-by-layer methods match each layer's activation h(z_ANN), which a unit whose response is a
clipped identity g(z) cannot do where h is curved; the next layer can only partly repair it.  Here the
objective is the network's output, so the layers may redistribute that shape error among themselves
(the SNN becomes the hard-tanh-like network g that best reproduces the ANN's function):

    L(θ) = Σ_o ‖y_o(θ) - y_o^ANN‖² / ‖y_o^ANN‖²  +  Σ_{l read directly} ‖ū_l(θ) - h_l^ANN‖² / ‖h_l^ANN‖²

over the readouts o (relative squared errors), plus the decoded values of every layer that analog nodes
read as they are (a residual connection, a graph output): nothing downstream can repair those, so they
must stay the activation's values.  θ = {(W_l, b_l)} of every spiking layer and readout.  Forward values are the exact T-step simulation
(``simulate_layer``: the runtime's neuron code) of each layer l fed by the simulated series of its
upstream layer; with the decoded mean ū_l the forward pass is, exactly,

    z̄_l = ū_up(l)·W_l + b_l,    ū_l = (1/T) Σ_t u_l(t),    y_o = ū_up(o)·W_o + b_o.

The backward pass goes straight through the quantiser: ∂ū_l/∂z̄_l ≈ g_l'(z̄_l), the slope of the
unquantised response (``layer.static_response``), so with δ_l = ∂L/∂ū_l

    δz_l = δ_l ⊙ g_l'(z̄_l),   ∂L/∂W_l = ū_up(l)ᵀ·δz_l,   ∂L/∂b_l = Σ_N δz_l,   δ_up(l) += δz_l·W_lᵀ.

Adam (``adam.py``) with a cosine schedule on minibatches.
The thresholds stay those of the layer-by-layer pass.  Finally each readout is refit exactly by least
squares on all calibration points (for a linear readout that is the optimum of L given the layers).
"""

from __future__ import annotations

import numpy as np

from .adam import Adam
from .layer import ConvertedLayer, simulate_layer, static_response

ITERATIONS = 600
BATCH = 256
LEARNING_RATE = 1e-2
MIN_POINTS = 64


def finetune(layers: list[ConvertedLayer], upstream: list[int | None], static_inputs: list[np.ndarray | None],
             readouts: list[tuple[np.ndarray, np.ndarray, int, np.ndarray]], timesteps: int,
             rng: np.random.Generator, held: dict[int, np.ndarray] | None = None, iterations: int = ITERATIONS, batch: int = BATCH,
             lr: float = LEARNING_RATE) -> list[ConvertedLayer]:
    """Fit all (W, b) end to end; returns the fitted layers (the caller refits the readouts exactly).

    ``layers`` in topological order, ``upstream[l]`` the index of the layer feeding layer l (None: static
    input ``static_inputs[l]`` [N, m]); ``readouts`` = (W [m, p], b [p], upstream index, target y^ANN [N, p]),
    trained alongside; ``held`` = {layer index: h^ANN [N, n]} for the layers read directly."""
    held = held or {}
    N = readouts[0][3].shape[0]
    weights = [l.weight.astype(np.float64) for l in layers] + [r[0].astype(np.float64) for r in readouts]
    biases = [l.bias.astype(np.float64) for l in layers] + [r[1].astype(np.float64) for r in readouts]
    norms = [max(float(np.mean(r[3].astype(np.float64) ** 2)), 1e-30) for r in readouts]
    held_norms = {l: max(float(np.mean(h.astype(np.float64) ** 2)), 1e-30) for l, h in held.items()}
    adam = Adam(weights + biases)
    L = len(layers)

    def current(l: int) -> ConvertedLayer:
        return layers[l].with_(weight=weights[l].astype(layers[l].weight.dtype),
                               bias=biases[l].astype(layers[l].bias.dtype))

    for step in range(iterations):
        idx = np.sort(rng.choice(N, min(batch, N), replace=False))
        series, means = [], []
        for l in range(L):
            static = upstream[l] is None
            x = static_inputs[l][idx] if static else series[upstream[l]]
            trace = simulate_layer(x, current(l), timesteps, static)
            series.append(trace.series)
            means.append(trace.mean.astype(np.float64))
        delta = [np.zeros_like(m) for m in means]
        grads_w = [None] * len(weights)
        grads_b = [None] * len(biases)
        for o, (_, _, up, target) in enumerate(readouts):
            k = L + o
            y = means[up] @ weights[k] + biases[k]
            dy = 2.0 * (y - target[idx]) / (len(idx) * target.shape[1] * norms[o])
            grads_w[k], grads_b[k] = means[up].T @ dy, dy.sum(axis=0)
            delta[up] += dy @ weights[k].T
        for l, target in held.items():
            delta[l] += 2.0 * (means[l] - target[idx]) / (len(idx) * target.shape[1] * held_norms[l])
        for l in reversed(range(L)):
            up = upstream[l]
            u_in = static_inputs[l][idx].astype(np.float64) if up is None else means[up]
            _, slope = static_response(u_in @ weights[l] + biases[l], current(l))
            dz = delta[l] * slope
            grads_w[l], grads_b[l] = u_in.T @ dz, dz.sum(axis=0)
            if up is not None:
                delta[up] += dz @ weights[l].T
        adam.step(grads_w + grads_b, lr * 0.5 * (1 + np.cos(np.pi * step / iterations)))
    return [current(l) for l in range(L)]
