"""Two spiking MLPs whose decoded outputs multiply: a spiking DeepONet, or a separable network in 2-D.

Inputs (a, c): a [F, m] for the first net (the branch: sensor values of f; or the x coordinates),
c [P, d] for the second (the trunk: the points; or the y coordinates).  With A = net_a(a) [F, r] and
C = net_c(c) [P, r] decoded (``network.SpikingMLP``), the output on the whole F × P product is

    y[f, p] = Σ_r A[f, r]·C[p, r]      (DeepONet:  u(f_f)(x_p);  separable:  u(x_f, y_p))

computed once per pair of sample sets, so a batch of F functions costs F + P network evaluations, not
F·P.  The product of two decoded values is analog (``parameters.SpikingDeepONetParams``).

For the activity estimator each layer's samples are the rows (first net) or the columns (second net)
of y: ``sample_axis``.
"""

from __future__ import annotations

import numpy as np
import torch

from .network import SpikingMLP
from .parameters import SpikingDeepONetParams
from .surrogate import Surrogate


class SpikingProduct:
    def __init__(self, params: SpikingDeepONetParams, surrogate: Surrogate, dtype=torch.float64):
        self.first = SpikingMLP(params.branch, surrogate, dtype)
        self.second = SpikingMLP(params.trunk, surrogate, dtype)
        self.timesteps = params.timesteps
        self.parameters = self.first.parameters + self.second.parameters
        self._split = len(self.first.parameters)
        self._first_layers = self.first.n_layers

    def layer_slices(self) -> list[list[int]]:
        return self.first.layer_slices() + [[i + self._split for i in s] for s in self.second.layer_slices()]

    def layer_flops(self) -> np.ndarray:
        return np.concatenate([self.first.layer_flops(), self.second.layer_flops()])

    def layer_depths(self) -> np.ndarray:
        return np.concatenate([self.first.layer_depths(), self.second.layer_depths()])

    def sample_axis(self, layer: int) -> int:
        return 0 if layer < self._first_layers else 1

    def run(self, inputs, parameters=None, *, generator=None) -> torch.Tensor:
        a, c = inputs
        p = self.parameters if parameters is None else parameters
        return self.first.run(a, p[:self._split], generator=generator) @ self.second.run(
            c, p[self._split:], generator=generator).T

    def run_tangents(self, inputs, directions=None, *, generator=None, perturbation=None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """y [F, P] and its tangents [K, F, P] (``SpikingMLP.run_tangents``; the first net's layers first):
        ẏ = [Ȧ·Cᵀ ; A·Ċᵀ], each net's channels through the other's primal.  A perturbation gives each net
        a channel of its own (two channels; their sum is the tangent of both perturbations at once)."""
        a, c = inputs
        split = self._first_layers
        directions = [None] * len(self.layer_slices()) if directions is None else directions
        second_perturbation = None if perturbation is None else (
            lambda layer, step, h: perturbation(layer + split, step, h))
        first, first_dot = self.first.run_tangents(a, directions[:split], generator=generator,
                                                   perturbation=perturbation)
        second, second_dot = self.second.run_tangents(c, directions[split:], generator=generator,
                                                      perturbation=second_perturbation)
        parts = ([] if first_dot is None else [first_dot @ second.T]) + (
            [] if second_dot is None else [first @ second_dot.transpose(1, 2)])
        return first @ second.T, torch.cat(parts) if parts else None

    def rate_gradient(self, inputs, cotangent, *, generator=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """y [F, P] and the rate-Jacobian gradient estimate (``network.RatePass``) for ∂L/∂y = ``cotangent(y)``
        [F, P]: each net's from its output's cotangent, ∂L/∂A = ȳ·C and ∂L/∂C = ȳᵀ·A."""
        a, c = inputs
        first = self.first.rate_pass(a, generator=generator)
        second = self.second.rate_pass(c, generator=generator)
        y = first.output @ second.output.T
        y_bar = cotangent(y)
        return y, (self.first.rate_pass_gradient(first, y_bar @ second.output)
                   + self.second.rate_pass_gradient(second, y_bar.T @ first.output))

    def to_params(self, metadata: dict | None = None) -> SpikingDeepONetParams:
        return SpikingDeepONetParams(self.first.to_params(), self.second.to_params(), 0.0, dict(metadata or {}))
