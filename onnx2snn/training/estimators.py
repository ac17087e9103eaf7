"""Gradient estimators behind one interface: loss, gradient estimate and cost in forward-pass equivalents.

The loss is a mean of elements, L(w) = (1/N) Σ_e ℓ_e(w) (squared errors of every output), over a batch.
With K directions averaged (k = 1..K, fresh draws each call):

* ``bptt``: ∇L by back-propagation through time through the surrogate (the baseline).
* ``rfg-global`` (the paper): u ~ N(0, I) over all weights, d = ∇L·u by forward-mode differentiation
  (``torch.autograd.forward_ad``: one pass carries the primal and its tangent), g = d·u.  E g = ∇L.
* ``rfg-layer`` (the paper's layer-wise form): per layer l a direction u_l on that layer's weights only,
  d_l = ∇_l L·u_l in its own forward-mode pass, g_l = d_l·u_l: the other layers' noise leaves each
  layer's estimate, at the price of one pass per layer.
* ``weight-fd``: d = [L(w + εu) - L(w)]/ε, g = d·u: forward passes only, no surrogate (the spikes
  themselves respond to the perturbation), biased by O(ε) and by the loss's steps.
* ``activity`` (beyond the paper; Ren et al. 2022): perturb each layer's *current* instead of its
  weights, ξ_l(t) ∈ {-1, +1} (Rademacher: E ξξᵀ = I like a Gaussian, a lower fourth moment, and
  3.6x cheaper to draw than torch's float64 normals) per sample b, step t and unit, all layers in one
  forward-mode pass.  With
  d_b = the tangent of sample b's share of L (its own loss elements: one point, or for a DeepONet
  layer the row or column of the loss that its branch or trunk sample feeds),

      g_{W_l} = Σ_b d_b Σ_t h_{l-1,b}(t) ⊗ ξ_{l,b}(t),     g_{b_l} = Σ_b d_b Σ_t ξ_{l,b}(t),

  unbiased because E[d_b ξ_{l,b}(t)] = ∂L/∂z_{l,b}(t) (independent draws cancel in expectation), with
  a variance lower by about the fan-in than weight perturbation.  d_b is known only at the end of the
  pass, so a second, primal-only pass replays the same draws (the generator's state is restored) and
  accumulates g_{W_l} += h_{l-1}(t)ᵀ·(d ⊙ ξ_l(t)) step by step: memory independent of T.
* ``activity-rate``: as ``activity`` with one draw ξ_{l,b} per sample and unit for all T steps (the
  variance of a time-averaged rate code, about T times lower), g_{W_l} = Σ_b d_b ((1/T) Σ_t h_{l-1,b}(t))
  ⊗ ξ_{l,b}.  Then E[d_b ξ_{l,b}] = Σ_t ∂L/∂z_{l,b}(t), and the estimate is unbiased only where a
  layer's input is constant in time (the first layer) or its gradient is (the rate approximation).

Cost in forward-pass equivalents (FPE), counted from the multiply-adds actually executed (each layer's
share f_l of one forward pass, ``model.layer_flops``): a forward pass is 1; a forward-mode pass adds
its tangent, Ẇ·h on perturbed layers and W·ḣ on every layer after the first perturbed one; a backward
pass is 2 (δ·Wᵀ and hᵀ·δ per layer); the activity estimator's replay pass is 2 (the primal and the
accumulation hᵀ·(d ⊙ ξ)), so it costs 4 less the first layer's tangent share.  Neuron
updates and the Stein surrogate's threshold tests are not counted (elementwise, O(n) per layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

ESTIMATORS = ("bptt", "rfg-global", "rfg-layer", "weight-fd", "activity", "activity-rate")
FD_STEP = 1e-2   # ε of weight-fd, relative to each tensor's RMS magnitude


class Model(Protocol):
    parameters: list[torch.Tensor]

    def run(self, inputs, parameters=None, *, generator=None, perturbation=None) -> torch.Tensor: ...
    def layer_slices(self) -> list[list[int]]: ...
    def layer_flops(self) -> np.ndarray: ...
    def sample_axis(self, layer: int) -> int: ...


@dataclass
class Estimate:
    loss: float
    gradient: list[torch.Tensor]
    cost_fpe: float


@dataclass
class Objective:
    """L = mean((model(inputs) - target)²): the elements' shape is the model's output's."""

    model: Model
    inputs: object
    target: torch.Tensor

    def elements(self, parameters=None, generator=None, perturbation=None) -> torch.Tensor:
        return (self.model.run(self.inputs, parameters, generator=generator,
                               perturbation=perturbation) - self.target) ** 2


def estimate(name: str, objective: Objective, directions: int = 1, *,
             rng: torch.Generator, surrogate_seed: int | None = None) -> Estimate:
    """One gradient estimate by estimator ``name`` (``ESTIMATORS``) with K = ``directions``."""
    try:
        method = _METHODS[name]
    except KeyError:
        raise ValueError(f"estimator {name!r}: expected one of {', '.join(ESTIMATORS)}") from None
    return method(objective, directions, rng, surrogate_seed)


def _generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(seed)


def _tangent_cost(flops: np.ndarray, perturbed: set[int]) -> float:
    first = min(perturbed)
    share = flops / flops.sum()
    return float(sum(share[l] * ((l in perturbed) + (l > first)) for l in range(len(flops))))


def _bptt(objective, directions, rng, seed) -> Estimate:
    params = [p.detach().clone().requires_grad_(True) for p in objective.model.parameters]
    with torch.enable_grad():
        loss = objective.elements(params, _generator(seed)).mean()
        grads = torch.autograd.grad(loss, params)
    return Estimate(float(loss.detach()), [g.detach() for g in grads], 3.0)


def directional(objective: Objective, directions: list[torch.Tensor | None], seed: int | None = None
                ) -> tuple[float, float]:
    """(L, ∇L·u) by one forward-mode pass; ``directions`` per parameter (None: not perturbed)."""
    with torch.no_grad(), fwAD.dual_level():
        params = [p if u is None else fwAD.make_dual(p, u)
                  for p, u in zip(objective.model.parameters, directions)]
        loss = objective.elements(params, _generator(seed)).mean()
        primal, tangent = fwAD.unpack_dual(loss)
    return float(primal), 0.0 if tangent is None else float(tangent)


def _rfg(objective, directions, rng, seed, groups) -> Estimate:
    model = objective.model
    grads = [torch.zeros_like(p) for p in model.parameters]
    flops, cost, losses = model.layer_flops(), 0.0, []
    for _ in range(directions):
        for group, layers in groups:
            u = [torch.randn(p.shape, dtype=p.dtype, generator=rng) if i in group else None
                 for i, p in enumerate(model.parameters)]
            loss, d = directional(objective, u, seed)
            losses.append(loss)
            for i in group:
                grads[i] += d * u[i] / directions
            cost += 1.0 + _tangent_cost(flops, layers)
    return Estimate(losses[0], grads, cost)


def _rfg_global(objective, directions, rng, seed) -> Estimate:
    n = len(objective.model.layer_slices())
    return _rfg(objective, directions, rng, seed,
                [(set(range(len(objective.model.parameters))), set(range(n)))])


def _rfg_layer(objective, directions, rng, seed) -> Estimate:
    return _rfg(objective, directions, rng, seed,
                [(set(s), {l}) for l, s in enumerate(objective.model.layer_slices())])


def _weight_fd(objective, directions, rng, seed) -> Estimate:
    model = objective.model
    with torch.no_grad():
        base = float(objective.elements(None, _generator(seed)).mean())
        grads = [torch.zeros_like(p) for p in model.parameters]
        for _ in range(directions):
            u = [torch.randn(p.shape, dtype=p.dtype, generator=rng) for p in model.parameters]
            steps = [FD_STEP * float(p.pow(2).mean().sqrt().clamp_min(1e-3)) for p in model.parameters]
            shifted = [p + e * v for p, e, v in zip(model.parameters, steps, u)]
            loss = float(objective.elements(shifted, _generator(seed)).mean())
            for g, v, e in zip(grads, u, steps):
                g += (loss - base) / e * v / directions
    return Estimate(base, grads, 1.0 + directions)


def _activity(objective, directions, rng, seed, per_step: bool = True) -> Estimate:
    model = objective.model
    slices = model.layer_slices()
    grads = [torch.zeros_like(p) for p in model.parameters]
    cost, first_loss = 0.0, None
    for _ in range(directions):
        state = rng.get_state()
        held: dict[int, torch.Tensor] = {}
        calls: dict[int, int] = {}

        def draw(layer: int, h: torch.Tensor) -> torch.Tensor:
            calls[layer] = calls.get(layer, 0) + 1
            if not per_step and layer in held:
                return held[layer]
            width = model.parameters[slices[layer][0]].shape[1]
            held[layer] = torch.randint(0, 2, (h.shape[0], width), dtype=h.dtype, generator=rng).mul_(2).sub_(1)
            return held[layer]

        def perturb(layer: int, step: int, h: torch.Tensor) -> torch.Tensor:
            xi = draw(layer, h)
            return fwAD.make_dual(torch.zeros_like(xi), xi)      # zero, with tangent ξ

        with torch.no_grad(), fwAD.dual_level():        # pass 1: the loss's tangent per element [rows, cols]
            primal, tangent = fwAD.unpack_dual(objective.elements(None, _generator(seed), perturb))
        first_loss = float(primal.mean()) if first_loss is None else first_loss
        share = {axis: tangent.sum(dim=1 - axis) / tangent.numel() for axis in (0, 1)}   # d per row / column

        steps = dict(calls)      # calls per layer in one pass: T for a spiking layer, 1 for an analog readout
        held.clear()

        def accumulate(layer: int, step: int, h: torch.Tensor) -> None:
            xi = draw(layer, h)                         # pass 2: the same draws, in the same order
            d = share[model.sample_axis(layer)]
            weighted = d.reshape(-1, 1) * xi / (1 if per_step else steps[layer])
            iw, ib = slices[layer]
            grads[iw] += h.T @ weighted / directions
            grads[ib] += weighted.sum(0) / directions

        rng.set_state(state)
        with torch.no_grad():
            objective.elements(None, _generator(seed), accumulate)
        cost += 4.0 - float(model.layer_flops()[0] / model.layer_flops().sum())
    return Estimate(first_loss, grads, cost)


def _activity_rate(objective, directions, rng, seed) -> Estimate:
    return _activity(objective, directions, rng, seed, per_step=False)


_METHODS: dict[str, Callable] = {"bptt": _bptt, "rfg-global": _rfg_global, "rfg-layer": _rfg_layer,
                                 "weight-fd": _weight_fd, "activity": _activity, "activity-rate": _activity_rate}
