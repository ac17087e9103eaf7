"""End-to-end calibration ("finetune"): all spiking layers and readouts fitted jointly to the ANN's outputs.

The layer-by-layer methods match each layer's activation h(z_ANN), which a unit whose response is a
clipped identity g(z) cannot do where h is curved; the next layer can only partly repair it.  Here the
objective is the network's output, so the layers may redistribute that shape error among themselves
(the SNN becomes the hard-tanh-like network g that best reproduces the ANN's function):

    L(θ) = Σ_o ‖y_o(θ) - y_o^ANN‖² / ‖y_o^ANN‖²  +  Σ_{l read directly} ‖ū_l(θ) - h_l^ANN‖² / ‖h_l^ANN‖²

over the readouts o (relative squared errors), plus the decoded values of every layer that analog nodes
read as they are (a residual connection, a graph output): nothing downstream can repair those, so they
must stay the activation's values.  Where analog nodes follow these boundary values (``tail.py``), the
loss is instead the linearised error of the graph outputs m,

    L(θ) = Σ_m E_x |Σ_w J[x, w, m]·(b_w(θ) - b_w^ANN)|² / E_x |y_m^ANN|²,

b = (y_o, ū_l) the boundary values, so only the error combinations that reach the outputs count.

θ = {(W_l, b_l)} of every spiking layer and readout.  Forward values are the exact T-step simulation
(``simulate_layer``: the runtime's neuron code) of each layer l fed by the simulated series of its
upstream layer; with the decoded mean ū_l the forward pass is, exactly,

    z̄_l = ū_up(l)·W_l + b_l,    ū_l = (1/T) Σ_t u_l(t),    y_o = ū_up(o)·W_o + b_o.

The backward pass goes straight through the quantiser: ∂ū_l/∂z̄_l ≈ g_l'(z̄_l), the slope of the
unquantised response (``layer.static_response``), so with δ_l = ∂L/∂ū_l

    δz_l = δ_l ⊙ g_l'(z̄_l),   ∂L/∂W_l = ū_up(l)ᵀ·δz_l,   ∂L/∂b_l = Σ_N δz_l,   δ_up(l) += δz_l·W_lᵀ.

Adam (``adam.py``) with a cosine schedule on minibatches.
The thresholds stay those of the layer-by-layer pass.  Without a tail, each readout is then refit exactly
by least squares on all calibration points (for a linear readout that is the optimum of L given the
layers); with one, the caller keeps whichever gives the lower real output error of these fitted readouts
and the closed-form least squares through the linearised tail (``tail.refit_through_tail``).
"""

from __future__ import annotations

import numpy as np

from .adam import Adam
from .layer import ConvertedLayer, simulate_layer, static_response
from .tail import OutputTail

ITERATIONS = 600
BATCH = 256
LEARNING_RATE = 1e-2
MIN_POINTS = 64


def finetune(layers: list[ConvertedLayer], upstream: list[int | None], static_inputs: list[np.ndarray | None],
             readouts: list[tuple[np.ndarray, np.ndarray, int, np.ndarray]], timesteps: int,
             rng: np.random.Generator, held: dict[int, np.ndarray] | None = None, tail: OutputTail | None = None,
             iterations: int = ITERATIONS, batch: int = BATCH,
             lr: float = LEARNING_RATE) -> tuple[list[ConvertedLayer], list[tuple[np.ndarray, np.ndarray]]]:
    """Fit all (W, b) end to end; returns the fitted layers and readout affines (W, b).

    ``layers`` in topological order, ``upstream[l]`` the index of the layer feeding layer l (None: static
    input ``static_inputs[l]`` [N, m]); ``readouts`` = (W [m, p], b [p], upstream index, target y^ANN [N, p]),
    trained alongside; ``held`` = {layer index: h^ANN [N, n]} for the layers read directly; ``tail``: J
    over the boundary values in the order readouts, then ``held`` by layer index (``tail.boundary_tensors``)."""
    held = dict(sorted((held or {}).items()))
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
        errors = [means[up] @ weights[L + o] + biases[L + o] - target[idx]
                  for o, (_, _, up, target) in enumerate(readouts)]
        errors += [means[l] - target[idx] for l, target in held.items()]
        if tail is None:
            scales = [len(idx) * target.shape[1] * norm for (*_, target), norm in zip(readouts, norms)]
            scales += [len(idx) * target.shape[1] * held_norms[l] for l, target in held.items()]
            grads = [2.0 * e / scale for e, scale in zip(errors, scales)]
        else:
            grads = _tail_gradients(errors, tail, idx)
        for o, (_, _, up, _) in enumerate(readouts):
            dy = grads[o]
            grads_w[L + o], grads_b[L + o] = means[up].T @ dy, dy.sum(axis=0)
            delta[up] += dy @ weights[L + o].T
        for g, l in zip(grads[len(readouts):], held):
            delta[l] += g
        for l in reversed(range(L)):
            up = upstream[l]
            u_in = static_inputs[l][idx].astype(np.float64) if up is None else means[up]
            _, slope = static_response(u_in @ weights[l] + biases[l], current(l))
            dz = delta[l] * slope
            grads_w[l], grads_b[l] = u_in.T @ dz, dz.sum(axis=0)
            if up is not None:
                delta[up] += dz @ weights[l].T
        adam.step(grads_w + grads_b, lr * 0.5 * (1 + np.cos(np.pi * step / iterations)))
    return [current(l) for l in range(L)], [(weights[L + o], biases[L + o]) for o in range(len(readouts))]


def _tail_gradients(errors: list[np.ndarray], tail: OutputTail, idx: np.ndarray) -> list[np.ndarray]:
    """∂L/∂e for the boundary errors e [B, w] of the linearised output loss (module docstring)."""
    J = tail.jacobian[idx]                                             # [B, W, P]
    residual = np.einsum("bw,bwp->bp", np.concatenate(errors, axis=1), J)
    grad = 2.0 * np.einsum("bp,bwp->bw", residual / tail.norms, J) / (len(idx) * len(tail.norms))
    return np.split(grad, np.cumsum([e.shape[1] for e in errors])[:-1], axis=1)
