"""The trainable spiking MLP in torch: the T-step simulation of ``parameters.py``, differentiable in both modes.

Symbols: x [B, n_0] input, W_l [n_{l-1}, n_l], b_l [n_l], λ leak, a fire fraction, θ± [n_l], v0 [n_l].
For t = 1..T, with h_0(t) = x (direct encoding: the first current z_1 = x·W_1 + b_1 is computed once)::

    z_l(t) = h_{l-1}(t)·W_l + b_l,  u_l(t) = λ·v_l(t-1) + z_l(t),  h_l(t) = s(u_l(t)),  v_l(t) = u_l(t) - h_l(t)

(``surrogate.spike``: exact spikes, surrogate derivatives), and the readout

    analog: y = ((1/T) Σ_t h_{L-1}(t))·W_L + b_L;      rate: y = (1/T) Σ_t h_L(t).

Gradients flow through the reset (v = u - s differentiates s too), as in the paper's group's code.  The
parameters are passed to ``run`` as a flat list [W_1, b_1, ..., W_L, b_L] so the estimators can run the
network at perturbed weights (finite differences), with dual tensors (forward mode) or with autograd
(BPTT).  ``run_tangents`` carries tangents by hand instead, several directions at once on one primal
(linear maps of the same form: ż = ḣ·W + h·Ẇ + ḃ + ξ, u̇ = λ·v̇ + ż, ḣ = ψ'(u)·u̇, v̇ = u̇ - ḣ, ξ the
activity perturbation: zero in value, a tangent of its own).  A forward-mode run under ``torch.no_grad``
keeps no graph: its memory does not grow with T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .parameters import DenseLayer, SpikingMLPParams
from .surrogate import Surrogate, spike, spike_and_slope


class IdentityChannels:
    """A perturbation of n_l channels ξ_i = e_i held over every step (the layer's exact forward Jacobian).

    Units of a layer do not interact within it, so channel i's tangent is zero on every unit of its own
    layer but unit i: the layer carries the n_l channels as one diagonal state [B, n_l] (as cheap as one
    channel) and expands them to [n_l, B, n_{l+1}] only as they leave it (ḣ·W, at the readout once)."""


@dataclass
class RatePass:
    """A forward pass seen through the rate approximation (``SpikingMLP.rate_pass``).

    ``output`` y [B, n_L]; ``input_means`` h̄_{l-1} [B, n_{l-1}] per layer (x for the first, then
    (1/T) Σ_t h_{l-1}(t)); ``gains`` D_l [B, n_l] per spiking layer, each unit's rate gain

        D_{l,b,i} = (1/T) Σ_t ∂h_{l,b,i}(t)/∂c     (c: a constant shift of that unit's current on every step)

    through the surrogate dynamics.  The rate approximation treats every layer's change of input as such a
    constant shift, so a constant shift c_l of layer l's currents moves the output by J_l·c_l with
    J_l = diag(D_l)·W_{l+1}·diag(D_{l+1})···W_L (diag(D_L) ends it for a rate readout), and the
    loss's gradient is estimated as d_l = J_l·∂L/∂y ≈ Σ_t ∂L/∂z_l(t), g_W_l = Σ_b h̄_{l-1,b} ⊗ d_{l,b}.
    J_l is accumulated forward (layer by layer from l: forward mode on the n_l unit channels), once per
    pass rather than per step.  Why the approximation is close for IF neurons (λ = 1) with reset by
    subtraction: v̇(t) = v̇(t-1) + ż(t) - ḣ(t) telescopes to Σ_t ḣ(t) = Σ_t ż(t) - v̇(T), so a unit's summed
    output answers its summed input whatever its time profile, up to v̇(T) (bounded while the unit's
    slopes are not all zero; D absorbs the rest).  Measured: cosine 0.9999 with the BPTT gradient on x²."""

    output: torch.Tensor
    input_means: list[torch.Tensor]
    gains: list[torch.Tensor]


# ξ_l(t) for layer l (0-based; the readout is len(layers) - 1, called once), step t and the layer's input h:
# a [B, n_l] tensor to add to the tangent of the current (the value stays), [k, B, n_l] channels of the
# layer's own, ``IdentityChannels()``, or None.
Perturbation = Callable[[int, int, torch.Tensor], "torch.Tensor | IdentityChannels | None"]
# Directions on one layer's weights for ``run_tangents``: (Ẇ [k, n_in, n_out], ḃ [k, n_out]), or None.
LayerDirections = "tuple[torch.Tensor, torch.Tensor] | None"


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

    def layer_depths(self) -> np.ndarray:
        """Each layer's position in its chain of layers: 0, 1, ..., L - 1."""
        return np.arange(self.n_layers)

    def run(self, x: torch.Tensor, parameters: list[torch.Tensor] | None = None, *,
            generator: torch.Generator | None = None) -> torch.Tensor:
        """Outputs y [B, n_L] of inputs x [B, n_0]."""
        p = self.parameters if parameters is None else parameters
        return self._simulate(x, p, generator, [None] * self.n_layers, None)[0]

    def run_tangents(self, x: torch.Tensor, directions: list[LayerDirections] | None = None, *,
                     generator: torch.Generator | None = None, perturbation: Perturbation | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """y [B, n_L] and its tangents ẏ [K, B, n_L] in one pass: along K = Σ_l k_l layer-wise weight
        directions, or along the activity perturbation ξ (K = 1, or one channel per layer).

        ``directions[l]`` = (Ẇ_l [k_l, n_{l-1}, n_l], ḃ_l [k_l, n_l]) or None: k_l directions that move
        layer l's weights only.  Channel c (ordered by layer, then by k) is then zero before its layer,
        so each layer's current carries the channels of the layers before it and adds its own::

            ż_l = [ḣ_{l-1}·W_l ; h_{l-1}·Ẇ_l + ḃ_l]       (the carried channels; layer l's k_l)
            u̇ = λ·v̇ + ż,   ḣ = ψ'(u)·u̇ (``surrogate.spike_and_slope``),   v̇ = u̇ - ḣ,   v̇(0) = 0

        and the readout ẏ = [m̄̇·W_L ; m̄·Ẇ_L + ḃ_L] with m̄ = (1/T) Σ_t h_{L-1}(t) (analog), or
        ẏ = (1/T) Σ_t ḣ_L(t) (rate).  ``perturbation`` (no directions then) adds ξ_l(t) to the one
        channel's ż_l(t) (or, given as [1, B, n_l], starts a channel of layer l's own: channel l carries layer
        l's perturbation alone; ``IdentityChannels()``: n_l channels ξ_i = e_i, held as a diagonal on the
        layer), and sees each layer's input h on the way (with no ξ at all, a primal run).

        The spikes, membranes and surrogate slopes are computed once for all K channels (the forward-mode
        ``run`` recomputes them per direction); channel c equals that run with direction c alone whenever
        the surrogate draws nothing (a Stein surrogate draws its noise once here, for every layer from the
        first one with a tangent, as BPTT does).  Under ``torch.no_grad`` it keeps per layer the state
        (v, v̇): memory independent of T.  ẏ is None when nothing is perturbed."""
        directions = [None] * self.n_layers if directions is None else directions
        if len(directions) != self.n_layers or (perturbation is not None and any(d is not None for d in directions)):
            raise ValueError(f"run_tangents: expected {self.n_layers} layer directions, or a perturbation alone")
        return self._simulate(x, self.parameters, generator, directions, perturbation)

    def _integrate(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """u = λ·v + z (linear: the same map for a membrane and for its tangent)."""
        return self.leak * v + z if self.leak != 1.0 else v + z

    def _gain_step(self, v_dot: torch.Tensor | None, slope: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of each unit's tangent along a constant unit shift of its own current (the diagonal state
        of ``IdentityChannels``, the gains of ``rate_pass``): u̇ = λ·v̇ + 1 (v̇ None: 0), ḣ = ψ'(u)·u̇,
        v̇ = u̇ - ḣ; returns (ḣ, v̇)."""
        u_dot = 1.0 if v_dot is None else self._integrate(v_dot, 1.0)
        h_dot = slope * u_dot
        return h_dot, u_dot - h_dot

    def _simulate(self, x, p, generator, directions, perturbation):
        spiking = len(self._neurons)
        state = [v0.expand(x.shape[0], -1).to(x.dtype) for _, _, v0 in self._neurons]
        state_dot: list[torch.Tensor | None] = [None] * spiking
        state_diagonal: list[torch.Tensor | None] = [None] * spiking    # IdentityChannels' v̇ [B, n]
        first = x @ p[0] + p[1]
        first_dot = _tangent_current(None, x, directions[0])
        total = total_dot = total_diagonal = None
        for t in range(self.timesteps):
            h, h_dot, h_diagonal = x, None, None
            for l in range(spiking):
                if l == 0:
                    z, z_dot = first, first_dot
                else:
                    z = h @ p[2 * l] + p[2 * l + 1]
                    z_dot = _tangent_current(_carry(h_dot, h_diagonal, p[2 * l]), h, directions[l])
                xi = None if perturbation is None else perturbation(l, t, h)
                identity = isinstance(xi, IdentityChannels)
                z_dot = z_dot if identity else _perturbed(z_dot, xi)
                theta_pos, theta_neg, _ = self._neurons[l]
                u = self._integrate(state[l], z)
                h_dot = h_diagonal = None
                if z_dot is None and not identity:
                    h = spike(u, theta_pos, theta_neg, self.fire_fraction, self.surrogate, generator)
                else:
                    h, slope = spike_and_slope(u, theta_pos, theta_neg, self.fire_fraction, self.surrogate, generator)
                    if z_dot is not None:
                        u_dot = self._integrate(torch.zeros_like(z_dot) if state_dot[l] is None else state_dot[l], z_dot)
                        h_dot = slope * u_dot
                        state_dot[l] = u_dot - h_dot
                    if identity:                # channel i on unit i only
                        h_diagonal, state_diagonal[l] = self._gain_step(state_diagonal[l], slope)
                state[l] = u - h
            total = h if total is None else total + h
            if h_dot is not None:
                total_dot = h_dot if total_dot is None else total_dot + h_dot
            if h_diagonal is not None:
                total_diagonal = h_diagonal if total_diagonal is None else total_diagonal + h_diagonal
        mean = total / self.timesteps
        mean_dot = None if total_dot is None else total_dot / self.timesteps
        mean_diagonal = None if total_diagonal is None else total_diagonal / self.timesteps
        if self.readout == "rate":
            if mean_diagonal is None:
                return mean, mean_dot
            expanded = torch.diag_embed(mean_diagonal).transpose(0, 1)      # [n, B, n]: channel i on unit i
            return mean, expanded if mean_dot is None else torch.cat([mean_dot, expanded])
        y_dot = _tangent_current(_carry(mean_dot, mean_diagonal, p[-2]), mean, directions[-1])
        if perturbation is not None:
            xi = perturbation(self.n_layers - 1, 0, mean)
            if isinstance(xi, IdentityChannels):        # the readout's own: ẏ_i = e_i
                n = p[-2].shape[1]
                xi = torch.eye(n, dtype=mean.dtype)[:, None, :].expand(n, mean.shape[0], n)
            y_dot = _perturbed(y_dot, xi)
        return mean @ p[-2] + p[-1], y_dot

    def rate_gradient(self, x: torch.Tensor, cotangent: Callable[[torch.Tensor], torch.Tensor], *,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """y [B, n_L] and the rate-Jacobian gradient estimate [g_W1, g_b1, ...] for the loss whose cotangent
        ∂L/∂y [B, n_L] is ``cotangent(y)`` (one forward pass, ``rate_pass``, then ``rate_pass_gradient``)."""
        rate = self.rate_pass(x, generator=generator)
        return rate.output, self.rate_pass_gradient(rate, cotangent(rate.output))

    def rate_pass(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> "RatePass":
        """One forward pass that also measures each spiking unit's rate gain and each layer's mean input
        (``RatePass``).  The gain's tangent state is one diagonal [B, n_l] per layer (``_gain_step``, the
        recursion of ``IdentityChannels``), never expanded: O(n_l) per step."""
        p, spiking = self.parameters, len(self._neurons)
        with torch.no_grad():
            state = [v0.expand(x.shape[0], -1).to(x.dtype) for _, _, v0 in self._neurons]
            diagonal: list = [None] * spiking
            gains: list = [0.0] * spiking
            outputs: list = [0.0] * spiking                 # Σ_t h_l(t)
            first = x @ p[0] + p[1]
            for _ in range(self.timesteps):
                h = x
                for l in range(spiking):
                    z = first if l == 0 else h @ p[2 * l] + p[2 * l + 1]
                    theta_pos, theta_neg, _ = self._neurons[l]
                    u = self._integrate(state[l], z)
                    h, slope = spike_and_slope(u, theta_pos, theta_neg, self.fire_fraction, self.surrogate, generator)
                    state[l] = u - h
                    h_diagonal, diagonal[l] = self._gain_step(diagonal[l], slope)
                    gains[l] = gains[l] + h_diagonal
                    outputs[l] = outputs[l] + h
            means = [x] + [total / self.timesteps for total in outputs]
            output = means[-1] if self.readout == "rate" else means[-1] @ p[-2] + p[-1]
        return RatePass(output, means[:self.n_layers], [total / self.timesteps for total in gains])

    def rate_pass_gradient(self, rate: "RatePass", cotangent: torch.Tensor) -> list[torch.Tensor]:
        """[g_W1, g_b1, ...] from a ``rate_pass`` and ∂L/∂y [B, n_L] (``RatePass`` has the maths): per layer
        l the forward product J_l = diag(D_l)·W_{l+1}·diag(D_{l+1})···(W_L) [B, n_l, n_L], then
        d_l = J_l·∂L/∂y, g_W = h̄_{l-1}ᵀ·d_l, g_b = Σ_b d_l."""
        p, spiking, grads = self.parameters, len(rate.gains), []
        with torch.no_grad():
            for l in range(self.n_layers):
                shares = cotangent                                      # the analog readout: J = I
                if l < spiking:
                    jacobian = None                                     # [B, n_l, n_k] after layer k
                    for k in range(l + 1, self.n_layers):
                        weight = p[2 * k]
                        jacobian = rate.gains[l][:, :, None] * weight if jacobian is None else jacobian @ weight
                        if k < spiking:
                            jacobian = jacobian * rate.gains[k][:, None, :]
                    shares = (rate.gains[l] * cotangent if jacobian is None            # d_l [B, n_l]
                              else (jacobian @ cotangent[:, :, None])[..., 0])
                grads += [rate.input_means[l].T @ shares, shares.sum(0)]
        return grads

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


def _tangent_current(carried: torch.Tensor | None, h: torch.Tensor, direction: LayerDirections
                     ) -> torch.Tensor | None:
    """ż of a layer [c + k, B, n_out]: the ``carried`` channels' ḣ·W [c, B, n_out], then the layer's own
    directions' h·Ẇ + ḃ [k, B, n_out] (h [B, n_in]: the layer's input)."""
    if direction is None:
        return carried
    w_dot, b_dot = direction
    own = h @ w_dot + b_dot[:, None, :]
    return own if carried is None else torch.cat([carried, own])


def _carry(h_dot: torch.Tensor | None, h_diagonal: torch.Tensor | None, weight: torch.Tensor) -> torch.Tensor | None:
    """The channels' ż of the next layer: [ḣ·W ; the diagonal channels expanded, D[b, i]·W[i, k]] [c + n, B, m]."""
    carried = None if h_dot is None else h_dot @ weight
    if h_diagonal is None:
        return carried
    expanded = torch.einsum("bi,ik->ibk", h_diagonal, weight)
    return expanded if carried is None else torch.cat([carried, expanded])


def _perturbed(z_dot: torch.Tensor | None, xi: torch.Tensor | None) -> torch.Tensor | None:
    """ż + ξ: ξ [B, n] adds to every channel (ż None: the one channel starts here); ξ [k, B, n] is k
    channels of this layer's own, appended after the carried ones (layer-separated perturbations)."""
    if xi is None:
        return z_dot
    if xi.dim() == 3:
        return xi if z_dot is None else torch.cat([z_dot, xi])
    return xi[None] if z_dot is None else z_dot + xi


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
