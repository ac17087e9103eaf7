"""Adam with bias correction, steps relative to each tensor's size, for the weight calibrations.

For parameter p with gradient g at step t (β1 = 0.9, β2 = 0.999, ε = 1e-8)::

    m ← β1·m + (1-β1)·g,   v ← β2·v + (1-β2)·g²,
    p ← p - η·λ·p - η·s·(m / (1-β1^t)) / (√(v / (1-β2^t)) + ε)

with η the step's learning rate (the caller's schedule), λ the decoupled weight decay of p (AdamW) and
s = max(mean|p⁰|, 1e-3) the initial magnitude of p, so one learning rate suits weights of any scale
(or s given per tensor by the caller: ``scale``).
"""

from __future__ import annotations

import math

import numpy as np


class Adam:
    """Updates ``params`` (float arrays) in place; ``decay[k]`` is the weight decay of ``params[k]``."""

    def __init__(self, params: list[np.ndarray], decay: list[float] | None = None,
                 beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, scale: list[float] | None = None):
        self.params, self.b1, self.b2, self.eps = params, beta1, beta2, eps
        self.decay = decay or [0.0] * len(params)
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.scale = scale or [max(float(np.abs(p).mean()), 1e-3) for p in params]
        self.t = 0

    def step(self, grads: list[np.ndarray], lr: float) -> None:
        self.t += 1
        first, second = 1 - self.b1 ** self.t, math.sqrt(1 - self.b2 ** self.t)
        for p, g, m, v, s, decay in zip(self.params, grads, self.m, self.v, self.scale, self.decay):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            denominator = np.sqrt(v)        # √(v / (1-β2^t)) + ε, scaled by √(1-β2^t) to save a pass
            denominator += self.eps * second
            if decay:
                p -= lr * decay * p
            p -= (lr * s * second / first) * m / denominator
