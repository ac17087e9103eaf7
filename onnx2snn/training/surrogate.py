"""The spike function of training: an exact Heaviside forward, a surrogate derivative for both modes.

A signed neuron with thresholds θ+, θ- and fire fraction a emits (``parameters.py``)

    s(u) = θ+·H(u - a·θ+) - θ-·H(-u - a·θ-),      H(x) = 1 if x >= 0 else 0,

whose derivative is zero almost everywhere.  Training replaces θ·H'(u - a·θ) by ψ(u/θ - a), a
surrogate of the unit-threshold neuron applied to the membrane in units of its threshold (so a layer
of small thresholds is neither steeper nor flatter than one of large ones: ∫ ψ = 1, one spike's worth
of change per threshold crossed), the same in the backward rule (vector-Jacobian product, BPTT) and in
the tangent rule (Jacobian-vector product, forward mode), so both modes differentiate one model:

    ṡ = (ψ(u/θ+ - a) + ψ(-u/θ- - a)) · u̇,      ū = (ψ(u/θ+ - a) + ψ(-u/θ- - a)) · s̄.

For θ = 1 (the paper's group's networks) this is their rule, ψ applied to u - θ.

Surrogates ψ:

* ``gaussian``: ψ(x) = φ_σ(x) = exp(-x²/(2σ²)) / (σ√(2π)), the derivative of H smoothed by N(0, σ²)
  (σ = 0.5 for MLPs, 0.3 for DeepONets in the paper's group's code).
* ``stein``: the same smoothed derivative estimated from forward evaluations of H alone (Stein's lemma,
  the paper's "weak form"): with ε_1..ε_M ~ N(0, 1) drawn per neuron and call, antithetic,

      ψ(x) = (1/M) Σ_m [H(x + σε_m) - H(x - σε_m)]·ε_m / (2σ),      E ψ(x) = φ_σ(x).

  Its noise is drawn from the generator given to ``spike`` and kept for the backward rule, so a BPTT
  pass and a forward-mode pass that draw in the same order see the same ψ.

* ``straight``: the rate code's straight-through rule, ṡ = u̇ while the neuron is not saturated,
  -(1 + a)·θ- <= u <= (1 + a)·θ+ (a unit driven within its range keeps its membrane there), else 0.
  Then v̇ = u̇ - ṡ = 0 and Σ_t ṡ(t) = Σ_t ż(t): the rate's tangent is the mean current's, as
  ``finetune``'s gradient through g(z) = clip(z, -θ-, θ+).  For fine-tuning converted networks.

Amplitudes θ± and the fire fraction are constants (not trained): the weights absorb any scale.  An
infinite threshold (a converted unit that never fires that way) contributes neither spikes nor slope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwAD

SURROGATES = ("gaussian", "stein", "straight")


@dataclass(frozen=True)
class Surrogate:
    """ψ: ``kind`` in SURROGATES, width σ, and for ``stein`` M noise samples per neuron."""

    kind: str = "gaussian"
    sigma: float = 0.5
    samples: int = 8

    def __post_init__(self) -> None:
        if self.kind not in SURROGATES:
            raise ValueError(f"surrogate {self.kind!r}: expected one of {', '.join(SURROGATES)}")
        if not self.sigma > 0 or self.samples < 1:
            raise ValueError(f"surrogate needs σ > 0 and at least one sample (σ={self.sigma}, M={self.samples})")

    def density(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """ψ(x), elementwise."""
        if self.kind == "gaussian":
            return torch.exp(-0.5 * (x / self.sigma) ** 2) / (self.sigma * math.sqrt(2 * math.pi))
        eps = torch.randn((self.samples,) + x.shape, dtype=x.dtype, device=x.device, generator=generator)
        crossed = (x + self.sigma * eps >= 0).to(x.dtype) - (x - self.sigma * eps >= 0).to(x.dtype)
        return (crossed * eps).mean(0) / (2 * self.sigma)


def _fire(u, theta_pos, theta_neg, fire_fraction):
    """+θ+ where u >= a·θ+, -θ- where u <= -a·θ-, else 0 (an infinite threshold never fires)."""
    zero = torch.zeros((), dtype=u.dtype)
    negative = torch.where(-u >= fire_fraction * theta_neg, -theta_neg, zero)
    return torch.where(u >= fire_fraction * theta_pos, theta_pos, negative)


def spike_and_slope(u: torch.Tensor, theta_pos: torch.Tensor, theta_neg: torch.Tensor, fire_fraction: float,
                    surrogate: Surrogate, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(s(u), ∂s/∂u): the spikes and the surrogate slope ψ(u/θ+ - a) + ψ(-u/θ- - a) (``straight``: 1 inside
    the unsaturated range), as plain tensors: what both derivative rules multiply by, and what a
    hand-written tangent (``network.SpikingMLP.run_tangents``) multiplies by."""
    s = _fire(u, theta_pos, theta_neg, fire_fraction)
    zero = torch.zeros((), dtype=u.dtype)
    if surrogate.kind == "straight":
        slope = ((u <= (1 + fire_fraction) * theta_pos) & (-u <= (1 + fire_fraction) * theta_neg)).to(u.dtype)
    else:
        upper = surrogate.density(u / theta_pos - fire_fraction, generator)
        lower = surrogate.density(-u / theta_neg - fire_fraction, generator)
        slope = (torch.where(torch.isfinite(theta_pos), upper, zero)
                 + torch.where(torch.isfinite(theta_neg), lower, zero))
    return s, slope


class _Spike(torch.autograd.Function):
    """s(u) with the surrogate slope computed once in forward and used by both rules."""

    @staticmethod
    def forward(u, theta_pos, theta_neg, fire_fraction, surrogate, generator):
        return spike_and_slope(u, theta_pos, theta_neg, fire_fraction, surrogate, generator)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, slope = output
        ctx.mark_non_differentiable(slope)
        ctx.save_for_backward(slope)
        ctx.save_for_forward(slope)

    @staticmethod
    def backward(ctx, grad_s, _grad_slope):
        slope, = ctx.saved_tensors
        return grad_s * slope, None, None, None, None, None

    @staticmethod
    def jvp(ctx, u_dot, *_):
        slope, = ctx.saved_tensors
        return u_dot * slope, None


def spike(u: torch.Tensor, theta_pos: torch.Tensor, theta_neg: torch.Tensor, fire_fraction: float,
          surrogate: Surrogate, generator: torch.Generator | None = None) -> torch.Tensor:
    """Signed spikes s(u) [..., n] (amplitudes +θ+ / -θ- / 0) with surrogate derivatives in both modes.

    Where no derivative can be asked for (no autograd graph, no forward-mode tangent) the surrogate is
    not evaluated: the spikes are the same and a Stein surrogate draws no noise."""
    if not (u.requires_grad and torch.is_grad_enabled()) and fwAD.unpack_dual(u).tangent is None:
        return _fire(u, theta_pos, theta_neg, fire_fraction)
    return _Spike.apply(u, theta_pos, theta_neg, fire_fraction, surrogate, generator)[0]
