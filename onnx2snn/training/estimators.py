"""Gradient estimators behind one interface: loss, gradient estimate and cost in forward-pass equivalents.

The loss is a mean of elements, L(w) = (1/N) Σ_e ℓ_e(w) (squared errors of every output), over a batch.
With K directions averaged (k = 1..K, fresh draws each call):

* ``bptt``: ∇L by back-propagation through time through the surrogate (the baseline).
* ``rfg-global`` (the paper): u ~ N(0, I) over all weights, d = ∇L·u by forward-mode differentiation
  (``torch.autograd.forward_ad``: one pass carries the primal and its tangent), g = d·u.  E g = ∇L.
* ``rfg-layer`` (the paper's layer-wise form): per layer l a direction u_l on that layer's weights only,
  d_l = ∇_l L·u_l, g_l = d_l·u_l: the other layers' noise leaves each layer's estimate.  All K·L
  directional derivatives come from one pass (``model.run_tangents``): the spikes, membranes and
  surrogate slopes once, the L tangents side by side on a channel axis (channel l is zero before layer
  l, so layer l carries l·K channels in and adds its own K); each d_l is the forward-mode derivative
  along u_l alone (equal to a ``directional`` pass per layer with a deterministic surrogate; with a
  Stein surrogate all channels see one draw of its noise, the draw BPTT uses with the same seed).
* ``weight-fd``: d = [L(w + εu) - L(w)]/ε, g = d·u: forward passes only, no surrogate (the spikes
  themselves respond to the perturbation), biased by O(ε) and by the loss's steps.
* ``activity`` (beyond the paper; Ren et al. 2022): perturb each layer's *current* instead of its
  weights, ξ_l(t) ∈ {-1, +1} (Rademacher: E ξξᵀ = I like a Gaussian, a lower fourth moment, and
  3.6x cheaper to draw than torch's float64 normals) per sample b, step t and unit, all layers in one
  forward-mode pass (``run_tangents`` with a perturbation: ż_l += ξ_l).  With
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
  With ξ constant in time the first pass sums each layer's input Σ_t h_{l-1}(t) [B, n_{l-1}] as it
  goes, and g_{W_l} = (Σ_t h_{l-1}/T)ᵀ·(d ⊙ ξ_l) follows at the end: no second pass.
* ``activity-layer``, ``activity-rate-layer``: as ``activity`` / ``activity-rate`` with one tangent
  channel per layer: channel l carries ξ_l alone (``run_tangents`` opens a channel for a perturbation
  given as [1, B, n_l]) and layer l's estimate takes d_{l,b} from its own channel.  With one shared
  channel, d_b = Σ_{l'} ∇_{z_l'} L_b·ξ_{l'}, so every other layer's draw adds noise to layer l's estimate;
  separated, only layer l's own units do: the variance falls by about the number of layers (1-6-6-6-1
  MLP, 300 draws: 6.4x per step, 4.5x per rate; a small DeepONet 13.6x), for L channels carried
  instead of one.  Still unbiased where ``activity`` / ``activity-rate`` are (the expectation is the
  same sum over independent draws without the cross terms).  With ``activity-rate-layer`` a layer
  whose channels are cheap (carried by little after it: the readout, a hidden layer before a readout)
  gets n_l identity channels ξ_i = e_i instead of one Rademacher channel when they cost at most
  ``EXACT_COST`` FPE: its forward Jacobian, so d_{l,i,b} = Σ_t ∂L_b/∂z_{l,i}(t) exactly and that layer's
  rate estimate has no noise (for a readout: the local delta rule ∂L/∂W_L = m̄ᵀ·∂L/∂y).  The per-step
  ``activity-layer`` keeps one channel per layer: a channel held over T steps gives the rate gradient,
  not the per-step one (that would take n_l·T channels).
* ``rate-jacobian`` (beyond the paper): no draws at all.  One forward pass measures each spiking unit's
  rate gain D_{l,i} = (1/T) Σ_t ∂h_{l,i}(t)/∂c for a constant shift c of its own current (one diagonal
  tangent state per layer, as the identity channels' on their own layer), then every layer's forward
  Jacobian of the rate network, J_l = diag(D_l)·W_{l+1}·diag(D_{l+1})···W_L, is accumulated forward
  once per pass (not per step) and d_l = J_l·∂L/∂y, g_{W_l} = Σ_b h̄_{l-1,b} ⊗ d_{l,b}
  (``network.RatePass``).  Exact for the last hidden layer and the readout (J = diag(D)·W_L: their
  identity channels' estimate); for earlier layers it treats each later layer's change of input as a
  constant shift (the rate approximation at every layer, beyond activity-rate's at the first).  Biased
  but noise-free, so it takes BPTT's step size; K does not apply.

Cost in forward-pass equivalents (FPE), counted from the multiply-adds actually executed: with f_l each
layer's share of one forward pass (``model.layer_flops``, normalised) and j_l its depth in its chain of
layers (``model.layer_depths``: 0 for a layer that reads the input x), a forward pass is 1 and a
tangent channel costs f_l on each layer where it is a matrix product (Ẇ_l·h on the layer it perturbs,
W_l·ḣ on every layer after its first one in the chain; the activity ξ is added, not multiplied):

* ``bptt`` 3 (a forward pass, then δ·Wᵀ and hᵀ·δ per layer);  ``weight-fd`` 1 + K;
* ``rfg-global`` K·(2 + C) with C = Σ_l f_l·[j_l > 0]: per direction the primal, Ẇ·h on every layer and
  W·ḣ after the first;
* ``rfg-layer`` 1 + K·Σ_l f_l·(j_l + 1): one primal; layer l computes Ẇ_l·h for its own K channels and
  W_l·ḣ for the j_l·K channels of the layers before it (x²'s 1-64×4-1: 1 + K·(2 + 3 + 4)/3 ≈ 1 + 3K,
  against L·K + K·Σ_l f_l·(j_l + 1) ≈ 8 with one forward-mode pass per layer);
* ``activity`` K·(3 + C): the forward-mode pass 1 + C, the replay 2 (the primal and the accumulation
  hᵀ·(d ⊙ ξ));
* ``activity-rate`` K·(1 + C + P): the forward-mode pass and each layer's one product hᵀ·(d ⊙ ξ) of
  the summed inputs, P = Σ_l n_{l-1}·n_l / (T·Σ_l F_l) with F_l the unnormalised ``layer_flops`` (per
  point and step).
* ``activity-layer`` K·(3 + C_L), ``activity-rate-layer`` K·(1 + C_L + P), with
  C_L = Σ_l (k_l·Σ_{l' after l} (F_l' + n_l') + n_l) / Σ F over the layers' k_l channels (1, or n_l where
  exact: rate only): a channel opened at layer l is carried (W·ḣ) by the layers after it in its chain,
  and the neuron updates of the channels (u̇, ḣ, v̇: one multiply-add per unit and step) are counted too,
  since n_l channels make them as many as a matrix product's; on layer l itself its channels cost n_l
  (one, or the n_l identity channels held as one diagonal).
* ``rate-jacobian`` 1 + Σ_l n_l / Σ F + (Σ_l n_l·(Σ_{l' after l} (N_l' + n_l') + n_L) + Σ_l N_l) / (T·Σ F),
  N_l = n_{l-1}·n_l the weights: the primal, the gains' updates (one per unit and step), and once per
  pass the Jacobians' products W·J and diag(D)·J, their contraction with ∂L/∂y and g_W (every layer's
  units counted as spiking: an overcount of an analog readout's n_L and n_L² terms).

Elsewhere neuron updates, and everywhere the ξ draws and the Stein surrogate's threshold tests, are not
counted (elementwise, O(n) per layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from .network import IdentityChannels

ESTIMATORS = ("bptt", "rfg-global", "rfg-layer", "weight-fd", "activity", "activity-rate", "activity-layer",
              "activity-rate-layer", "rate-jacobian")
FD_STEP = 1e-2   # ε of weight-fd, relative to each tensor's RMS magnitude


class Model(Protocol):
    parameters: list[torch.Tensor]
    timesteps: int

    def run(self, inputs, parameters=None, *, generator=None) -> torch.Tensor: ...
    def run_tangents(self, inputs, directions=None, *, generator=None, perturbation=None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]: ...
    def layer_slices(self) -> list[list[int]]: ...
    def layer_flops(self) -> np.ndarray: ...
    def layer_depths(self) -> np.ndarray: ...
    def sample_axis(self, layer: int) -> int: ...
    def rate_gradient(self, inputs, cotangent, *, generator=None) -> tuple[torch.Tensor, list[torch.Tensor]]: ...


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

    def elements(self, parameters=None, generator=None) -> torch.Tensor:
        return (self.model.run(self.inputs, parameters, generator=generator) - self.target) ** 2

    def tangents(self, directions, generator=None, perturbation=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The elements e = (y - target)² and their tangents ė = ẏ·2(y - target) [K, *e.shape] along the
        model's K tangent channels (``run_tangents``: layer-wise directions or an activity perturbation)."""
        y, y_dot = self.model.run_tangents(self.inputs, directions, generator=generator, perturbation=perturbation)
        residual = y - self.target
        return residual ** 2, y_dot * (2 * residual)

    def cotangent(self, output: torch.Tensor) -> torch.Tensor:
        """∂L/∂y = 2(y - target)/|y| for the model's output y."""
        return 2 * (output - self.target) / output.numel()


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


def _shares(model: Model) -> np.ndarray:
    """f_l: each layer's share of one forward pass's multiply-adds."""
    flops = model.layer_flops()
    return flops / flops.sum()


def _carried(model: Model) -> float:
    """C: one tangent channel's W·ḣ on every layer but a chain's first, in FPE."""
    return float(_shares(model) @ (model.layer_depths() > 0))


def _activity_cost(model: Model, per_step: bool, per_layer: bool) -> float:
    """One activity estimate in FPE (module docstring): 3 + C with the replay, else 1 + C + P (C_L for
    layer-separated channels)."""
    exact = _exact_layers(model) if per_layer and not per_step else set()
    carried = (sum(_channel_cost(model, l, l in exact) for l in range(len(model.layer_slices())))
               if per_layer else _carried(model))
    if per_step:
        return 3.0 + carried
    weights = sum(model.parameters[s[0]].numel() for s in model.layer_slices())
    return 1.0 + carried + weights / (model.timesteps * model.layer_flops().sum())


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


def layer_directional(objective: Objective, directions: list, seed: int | None = None
                      ) -> tuple[float, torch.Tensor]:
    """(L, d) with d [K] = ∇L·u_c for the K layer-wise directions of ``model.run_tangents`` (``directions[l]``
    = (Ẇ_l [k_l, ...], ḃ_l [k_l, ...]) or None; channels by layer, then k), all in one forward pass."""
    with torch.no_grad():
        elements, tangents = objective.tangents(directions, _generator(seed))
    return float(elements.mean()), tangents.flatten(1).mean(1)


def _rfg_global(objective, directions, rng, seed) -> Estimate:
    model = objective.model
    grads = [torch.zeros_like(p) for p in model.parameters]
    cost, losses = 0.0, []
    for _ in range(directions):
        u = [torch.randn(p.shape, dtype=p.dtype, generator=rng) for p in model.parameters]
        loss, d = directional(objective, u, seed)
        losses.append(loss)
        for g, v in zip(grads, u):
            g += d * v / directions
        cost += 2.0 + _carried(model)
    return Estimate(losses[0], grads, cost)


def _rfg_layer(objective, directions, rng, seed) -> Estimate:
    model = objective.model
    slices = model.layer_slices()
    draws = [[torch.randn(model.parameters[i].shape, dtype=model.parameters[i].dtype, generator=rng) for i in s]
             for _ in range(directions) for s in slices]          # direction k of layer l: draws[k·L + l]
    stacked = [[torch.stack(d) for d in zip(*draws[l::len(slices)])] for l in range(len(slices))]
    loss, d = layer_directional(objective, stacked, seed)
    grads = [torch.zeros_like(p) for p in model.parameters]
    for s, u, d_layer in zip(slices, stacked, d.reshape(len(slices), directions)):
        for i, v in zip(s, u):
            grads[i] = torch.tensordot(d_layer, v, 1) / directions
    return Estimate(loss, grads, 1.0 + directions * float(_shares(model) @ (model.layer_depths() + 1)))


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


def _activity(objective, directions, rng, seed, per_step: bool = True, per_layer: bool = False) -> Estimate:
    model = objective.model
    slices = model.layer_slices()
    exact = _exact_layers(model) if per_layer and not per_step else set()
    offsets: dict[int, tuple[int, int]] = {}            # layer -> its channels [start, stop) in the tangents
    grads = [torch.zeros_like(p) for p in model.parameters]
    cost, first_loss = 0.0, None

    def add(layer: int, h: torch.Tensor, weighted: torch.Tensor) -> None:
        iw, ib = slices[layer]                          # g_W += hᵀ·(d ⊙ ξ), g_b += Σ_b d ⊙ ξ
        grads[iw] += h.T @ weighted / directions
        grads[ib] += weighted.sum(0) / directions

    for _ in range(directions):
        state = rng.get_state()
        held: dict[int, torch.Tensor] = {}
        calls: dict[int, int] = {}
        input_sums: dict[int, torch.Tensor] = {}

        def draw(layer: int, h: torch.Tensor) -> torch.Tensor:
            calls[layer] = calls.get(layer, 0) + 1
            if not per_step and layer in held:
                return held[layer]
            width = _width(model, layer)
            if layer in exact:                          # ξ_i = e_i for every sample: n channels
                held[layer] = IdentityChannels()
            else:
                held[layer] = torch.randint(0, 2, (h.shape[0], width), dtype=h.dtype, generator=rng).mul_(2).sub_(1)
                held[layer] = held[layer][None] if per_layer else held[layer]
            if layer not in offsets and per_layer:
                start = max((stop for _, stop in offsets.values()), default=0)
                offsets[layer] = (start, start + (width if layer in exact else 1))
            return held[layer]

        def perturb(layer: int, step: int, h: torch.Tensor) -> torch.Tensor:
            if not per_step:                            # Σ_t h_{l-1}(t), for the rate's g_W
                input_sums[layer] = h if layer not in input_sums else input_sums[layer] + h
            return draw(layer, h)                       # per layer: [k, B, n], channels of the layer's own

        with torch.no_grad():                           # pass 1: the loss's tangent per element [rows, cols]
            elements, tangents = objective.tangents(None, _generator(seed), perturb)
        first_loss = float(elements.mean()) if first_loss is None else first_loss
        summed = None if per_layer else tangents.sum(0)  # a product network: one channel per net

        def weighted(layer: int, xi: torch.Tensor) -> torch.Tensor:
            """Σ_k d_{k,b}·ξ_{k,b} [B, n] over the layer's channels k (d per row / column of the loss)."""
            axis = model.sample_axis(layer)
            if not per_layer:
                return (summed.sum(dim=1 - axis) / summed.numel()).reshape(-1, 1) * xi
            start, stop = offsets[layer]
            own = tangents[start:stop]
            shares = own.sum(dim=2 - axis) / own[0].numel()                  # [k, B]
            return shares.T if isinstance(xi, IdentityChannels) else torch.einsum("kb,kbn->bn", shares, xi)

        if per_step:
            def accumulate(layer: int, step: int, h: torch.Tensor) -> None:
                add(layer, h, weighted(layer, draw(layer, h)))    # pass 2: the same draws, in the same order

            held.clear()
            rng.set_state(state)
            with torch.no_grad():
                model.run_tangents(objective.inputs, generator=_generator(seed), perturbation=accumulate)
        else:
            for layer, total in input_sums.items():     # calls[layer]: T for a spiking layer, 1 for a readout
                add(layer, total / calls[layer], weighted(layer, held[layer]))
        cost += _activity_cost(model, per_step, per_layer)
    return Estimate(first_loss, grads, cost)


# FPE: a layer gets the n_l channels of its exact forward Jacobian when they cost at most this.  DeepONet
# Poisson, T = 128, 6,000 FPE, seed 0, activity-rate-layer: the readouts exact 10.5 %, the second hidden
# layers too 9.9 % (both counted as dense channels then, 3.09 and 5.52 FPE/step; carried as a diagonal,
# the second layers' 64 channels cost 0.75 FPE per net), one Rademacher channel everywhere 14.0 %.
EXACT_COST = 2.0


def _exact_layers(model: Model) -> set[int]:
    """Layers whose n_l identity channels cost at most ``EXACT_COST`` FPE (those carried by little after them)."""
    return {l for l in range(len(model.layer_slices())) if _channel_cost(model, l, True) <= EXACT_COST}


def _width(model: Model, layer: int) -> int:
    return model.parameters[model.layer_slices()[layer][0]].shape[1]


def _chain_from(model: Model, layer: int) -> list[int]:
    """``layer`` and the layers after it in its chain (depths rising by one)."""
    depths, chain = model.layer_depths(), [layer]
    while chain[-1] + 1 < len(depths) and depths[chain[-1] + 1] == depths[chain[-1]] + 1:
        chain.append(chain[-1] + 1)
    return chain


def _channel_cost(model: Model, layer: int, exact: bool = False) -> float:
    """FPE of the channels opened at ``layer`` (one, or its n_l identity channels when ``exact``): W·ḣ on
    the layers after it in its chain and their neuron updates (u̇, ḣ, v̇: one multiply-add per unit and
    step) for each channel, and the updates on the layer's own units: n_l per channel, or n_l for all
    identity channels together (``network.IdentityChannels``: channel i lives on unit i there)."""
    chain = _chain_from(model, layer)
    flops = model.layer_flops()
    carried = float(sum(flops[l] + _width(model, l) for l in chain[1:]))
    channels = _width(model, layer) if exact else 1
    return (channels * carried + _width(model, layer)) / float(flops.sum())


def _activity_rate(objective, directions, rng, seed) -> Estimate:
    return _activity(objective, directions, rng, seed, per_step=False)


def _activity_layer(objective, directions, rng, seed) -> Estimate:
    return _activity(objective, directions, rng, seed, per_layer=True)


def _activity_rate_layer(objective, directions, rng, seed) -> Estimate:
    return _activity(objective, directions, rng, seed, per_step=False, per_layer=True)


def _rate_jacobian(objective, directions, rng, seed) -> Estimate:
    model = objective.model
    y, grads = model.rate_gradient(objective.inputs, objective.cotangent, generator=_generator(seed))
    return Estimate(float(((y - objective.target) ** 2).mean()), grads, _rate_jacobian_cost(model))


def _rate_jacobian_cost(model: Model) -> float:
    """``rate-jacobian``'s FPE (module docstring)."""
    flops = model.layer_flops()
    layers = range(len(model.layer_slices()))
    weights = [model.parameters[model.layer_slices()[l][0]].numel() for l in layers]
    per_pass = float(sum(weights))                      # g_W
    for l in layers:
        chain = _chain_from(model, l)
        carried = sum(weights[k] + _width(model, k) for k in chain[1:]) + _width(model, chain[-1])
        per_pass += _width(model, l) * carried
    return 1.0 + sum(_width(model, l) for l in layers) / flops.sum() + per_pass / (model.timesteps * flops.sum())


_METHODS: dict[str, Callable] = {"bptt": _bptt, "rfg-global": _rfg_global, "rfg-layer": _rfg_layer,
                                 "weight-fd": _weight_fd, "activity": _activity, "activity-rate": _activity_rate,
                                 "activity-layer": _activity_layer, "activity-rate-layer": _activity_rate_layer,
                                 "rate-jacobian": _rate_jacobian}
