"""Pieces per unit from an error budget (``--pieces auto``): spikes go where the output needs accuracy.

Output sensitivity of unit j of spiking layer l (back-propagated through the ANN, averaged over the
calibration points, each output scaled by its RMS so the budget is relative, ``Structure.relative_scale``)::

    δ_l = W_c·(h'(z_c) ⊙ δ_c)  summed over consumer layers c,  δ_readout = W_readout / rms(y)
    s_j = ( E_x Σ_m δ_l[x, j, m]² )^½

Without readouts (every layer's output decoded into analog nodes: the modified MLP with spiking gates, whose
products (1 - Z)·U + Z·V multiply two spiking signals and whose output Gemm is analog) y is the graph
outputs and δ_l = ∂y/∂h_l / rms(y) is taken through the analog tail and the later layers by central
differences (``tail_sensitivities``); with readouts priced instead, such a structure had s = 0 everywhere,
one piece per unit, and 1.17 relative error at T = 32 (3.8e-3 priced at the outputs).

Predicted error of unit j with K pieces, as seen at the outputs (RMS), from its knots (``knots.KnotRule``)
placed with K₀ = 4 pieces per monotone stretch of h on its range (``oscillation.oscillation``: 4 for tanh,
4·TV/range for an oscillating sin), measured at the unit's calibration currents:

    e_j(K)² = s_j² · ( (R_j·K₀/K)²  +  min(I_j·(K₀/K)², L_j)² )

R_j the rounding error of the partly active piece, uniform in ±(r_j/K₀)/(2T) (r_j the total variation of h_j
over the data, its range for a monotone h; w the rounding weight: w·r_j/(K₀·T·√12)), I_j the RMS residual of
the least-squares PWL fit with the K₀ pieces (``fitted_interpolation_error``, what the decode refit leaves; on
wave the interpolant's max overstated it 4-5x), L_j that of one piece (the best line: the interpolation term's
ceiling, where K₀/K > 1 would extrapolate past it).  Per layer, pieces minimise Σ_j K_j (each a neuron updated
every step, whose spikes grow with K) subject to (Σ_j e_j²)^½ ≤ τ/√L, L the number of spiking layers, solved
exactly for the Lagrangian  K_j = argmin_K e_j(K)² + λ·K  with λ by bisection.  Pricing a piece by its energy
instead, ν + C_j/K₀ synaptic operations per step (ν = e_update/(fan-out·e_synop), C_j the pieces a point
crosses whole, ``knots.crossed_pieces``), changed nothing on SIREN (4.0e-3 at 2,733 spikes either way, T = 32)
and took Poisson at T = 128 from 1.02e-3 to 1.06e-3 at the same spikes: not kept. Measuring K₀ per monotone
stretch matters for oscillating units: SIREN's sin(30z) spans 1-4 periods, where 4 pieces fit nothing and
their (K₀/K)² extrapolation put the first pass at 5.1e-3 against τ = 4e-3 at T = 32 (three passes, 607 neurons
kept); with it the first pass lands at 4.2e-3 and the second at 4.0e-3 (531 neurons).

Measured per layer on wave (T=32 and 128) the two terms match the simulation: the rounding term the
decoded error u - g(z̄) (g the layer's exact PWL response to its time-averaged current z̄, fluctuations of
the spiking input included) within 0.8-1.3x, the fitted interpolation term g(z̄) - h(z̄); so did Burgers'
first three layers, but in its last hidden layer u - g(z̄) is 5x the rounding term and grows with the
pieces (very sensitive units with a wide tanh range, whose narrow central pieces fire on the input's
step-to-step fluctuation and cannot take the spike back).  What drives it is the first layer's rounding:
doubling the pieces of the directly encoded layer cut Burgers' output error at T=128 from 2.27e-3 to
1.58e-3 (16 % more spikes), while doubling those of the second or third hidden layer made it worse (2.6e-3,
2.7e-3); the same doubling took diffusion-reaction at T=128 from 3.0e-3 to 2.0e-3 (4 % more spikes) and
Burgers at T=32 from 6.4e-3 to 3.9e-3 — each more than that layer's whole predicted share.  A static
layer's rounding error is a fixed function of the input, and it reaches the outputs once through the
values (the model above) and again through the spike timing of every later layer; where later spiking
layers read it, its rounding term is therefore weighted by ``STATIC_ROUNDING_WEIGHT`` = 2 (the doubling
measured), which gives rounding-limited units of that layer twice the pieces; a static layer read only by
readouts (SIREN's last hidden layer) keeps weight 1.  What the model also misses is how unit errors combine at the
outputs: they are correlated (units share their inputs) and propagate through later layers, so the real
output error is 0.7-1.7x the prediction depending on the network.  ``calibrate`` therefore measures the
real output error E of a pass on the calibration points and, if E > τ, allocates again with the
sensitivities scaled by E / E_pred (E_pred the prediction for that pass), the cap doubled and no unit
below its pieces in that pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..expansion import fitted_interpolation_error
from ..knots import KnotRule
from ..oscillation import oscillation
from ..structure import Structure

MODEL_POINTS = 1024          # calibration points the budget's sensitivities and error model are measured on
INTERPOLATION_REFERENCE = 4
STATIC_ROUNDING_WEIGHT = 2.0   # on the rounding term of a layer with a static (directly encoded) input


def output_sensitivities(structure: Structure, ann: dict[str, np.ndarray]) -> list[np.ndarray]:
    """s_l [n_l] for every spiking layer (see the module docstring); for layers joined by links
    (``Structure.plain`` false), by central differences through the ANN (``linked_sensitivities``); for a
    structure without readouts, at the graph outputs through the analog tail (``tail_sensitivities``)."""
    flat = lambda a: a.reshape(-1, a.shape[-1])
    if not structure.readouts:
        return tail_sensitivities(structure, ann)
    if not structure.plain:
        return linked_sensitivities(structure, ann)
    rows = min(flat(ann[structure.layers[0].activation.input]).shape[0], MODEL_POINTS)
    columns: dict[str, slice] = {}
    total = 0
    for readout in structure.readouts:
        columns[readout.name] = slice(total, total + readout.width)
        total += readout.width
    index = {id(layer.affine): k for k, layer in enumerate(structure.layers)}
    deltas: list[np.ndarray | None] = [None] * len(structure.layers)
    for k in reversed(range(len(structure.layers))):
        layer = structure.layers[k]
        N = min(flat(ann[layer.activation.input]).shape[0], rows)
        delta = np.zeros((N, layer.width, total))
        for consumer in layer.consumers:
            if consumer.name in columns:
                scale = structure.relative_scale(consumer, flat(ann[consumer.output]))
                delta[:, :, columns[consumer.name]] += (consumer.weight / scale)[None]
            elif id(consumer) in index and deltas[index[id(consumer)]] is not None:
                nxt = structure.layers[index[id(consumer)]]
                down = deltas[index[id(consumer)]][:N] * _derivative(nxt, flat(ann[nxt.activation.input])[:N])[..., None]
                delta += np.einsum("ji,nim->njm", consumer.weight.astype(np.float64), down)
        deltas[k] = delta
    return [np.sqrt(np.mean(np.sum(d ** 2, axis=2), axis=0)) for d in deltas]


def _derivative(layer, z: np.ndarray) -> np.ndarray:
    eps = (1e-3 * (1.0 + np.abs(z))).astype(z.dtype)
    return (layer.activation(z + eps).astype(np.float64) - layer.activation(z - eps)) / (2 * eps)


def budget_pieces(activation, lo: np.ndarray, hi: np.ndarray, currents: np.ndarray, sensitivity: np.ndarray,
                  knots: KnotRule, tolerance: float, max_pieces: int, least: np.ndarray | None = None
                  ) -> tuple[np.ndarray, float]:
    """Pieces per unit [n] meeting ``tolerance`` (this layer's share of the relative output error) with the
    fewest pieces, at least ``least`` [n] if given, and the layer's predicted error (Σ_j e_j(K_j)²)^½ with
    them (above ``tolerance`` when the cap binds).  ``currents`` [N, n]: the units' calibration inputs;
    ``knots``: the layer's knot placement, its T and rounding weight (``STATIC_ROUNDING_WEIGHT`` for a static
    layer that feeds spiking layers)."""
    currents = currents[:MODEL_POINTS]
    model = unit_error_model(activation, lo, hi, currents, knots, max_pieces)
    K = np.arange(1, max_pieces + 1, dtype=np.float64)[None, :]
    ratio = model.reference[:, None] / K
    quant = (model.rounding[:, None] * ratio) ** 2
    curve = np.minimum(model.interpolation[:, None] * ratio ** 2, model.line[:, None]) ** 2
    error = (sensitivity[:, None] ** 2) * (quant + curve)           # [n, K_max]
    if least is not None:
        error = np.where(K < np.minimum(least, max_pieces)[:, None], np.inf, error)
    target = tolerance ** 2

    def choose(lam: float) -> np.ndarray:
        return np.argmin(error + lam * K, axis=1) + 1

    def total(pieces: np.ndarray) -> float:
        return float(error[np.arange(len(pieces)), pieces - 1].sum())

    lo_lam, hi_lam = 0.0, float(error[np.isfinite(error)].max()) + 1.0
    if total(choose(0.0)) > target:            # even K_max everywhere misses: spend the cap
        chosen = choose(0.0)
    elif total(choose(hi_lam)) <= target:      # one piece per unit already meets it
        chosen = choose(hi_lam)
    else:
        for _ in range(60):
            mid = 0.5 * (lo_lam + hi_lam)
            if total(choose(mid)) <= target:
                lo_lam = mid
            else:
                hi_lam = mid
        chosen = choose(lo_lam)
    return chosen, float(np.sqrt(total(chosen)))


@dataclass
class UnitErrorModel:
    """Per unit [n], measured with ``reference`` pieces (the layer's ``knots.KnotRule``) at the calibration
    currents: RMS ``interpolation`` and ``rounding`` error and the one-piece fit's RMS error (``line``, the
    interpolation term's ceiling)."""

    reference: np.ndarray
    interpolation: np.ndarray
    rounding: np.ndarray
    line: np.ndarray


def unit_error_model(activation, lo: np.ndarray, hi: np.ndarray, currents: np.ndarray, knots: KnotRule,
                     max_pieces: int) -> UnitErrorModel:
    """The budget's error and spike model of each unit (module docstring): ``INTERPOLATION_REFERENCE``
    pieces per monotone stretch of h on [lo, hi] (``oscillation.oscillation``), at most ``max_pieces``."""
    reference = np.clip(np.rint(INTERPOLATION_REFERENCE * oscillation(activation, lo, hi)), INTERPOLATION_REFERENCE,
                        max(max_pieces, INTERPOLATION_REFERENCE)).astype(int)
    placed = knots(activation, lo, hi, reference, currents)                                   # [K + 1, n]
    interpolation = fitted_interpolation_error(activation, placed, currents)
    along = activation(np.sort(currents, axis=0)).astype(np.float64)
    variation = np.abs(np.diff(along, axis=0)).sum(axis=0)     # r_j: pieces of equal rise r_j/K₀
    rounding = knots.rounding_weight * variation / (reference * np.sqrt(12.0) * knots.timesteps)
    line = fitted_interpolation_error(activation, np.stack([lo, hi]), currents)
    return UnitErrorModel(reference, interpolation, rounding, line)


def linked_sensitivities(structure: Structure, ann: dict[str, np.ndarray]) -> list[np.ndarray]:
    """s_l [n_l] with δ_l[x, j, m] = ∂y_m/∂h_l[x, j] / rms(y_m) taken through the ANN graph itself (links,
    analog nodes and later layers included) by central differences in onnxruntime: the readouts y computed
    from h_l and the graph inputs, h_l[:, j] moved by ±10⁻³·rms(h_l[:, j]), 2·n_l runs on ``MODEL_POINTS``
    calibration points per layer (``ann`` holds the graph inputs too)."""
    rows = min(next(iter(ann.values())).shape[0], MODEL_POINTS)
    scales = [structure.relative_scale(a, ann[a.output].reshape(-1, a.width)) for a in structure.readouts]
    return _sensitivities_through_graph(structure, ann, [a.output for a in structure.readouts], scales, rows)


def tail_sensitivities(structure: Structure, ann: dict[str, np.ndarray]) -> list[np.ndarray]:
    """s_l [n_l] of a structure without readouts (every layer decoded into analog nodes: the modified MLP
    with spiking gates, whose gate products ``(1 - Z)·U + Z·V`` multiply two spiking signals), priced at the
    graph outputs y through everything after h_l, the analog tail (``tail.py``) and the later layers:
    δ_l[x, j, m] = ∂y_m/∂h_l[x, j] / rms(y_m), each output column m relative to its own RMS (``tail.py``'s
    relative error), by the central differences of ``linked_sensitivities``."""
    outputs = [o.name for o in structure.model.graph.output if o.name in ann]
    values = [ann[name] for name in outputs]
    rows = min(next(iter(ann.values())).shape[0], MODEL_POINTS)
    scales = [np.sqrt(np.mean(np.square(v.reshape(v.shape[0], -1)[:rows], dtype=np.float64), axis=0)) + 1e-12
              for v in values]
    return _sensitivities_through_graph(structure, ann, outputs, scales, rows)


def _sensitivities_through_graph(structure: Structure, ann: dict[str, np.ndarray], outputs: list[str],
                                 scales: list[np.ndarray], rows: int) -> list[np.ndarray]:
    """s_l [n_l] = (E_x Σ_m (∂y_m/∂h_l[x, j] / scale_m)²)^½ for the tensors ``outputs`` (each flattened to
    columns matching its ``scales``), by central differences through the graph (``linked_sensitivities``)."""
    from .tail import tail_outputs_runner
    model = structure.model
    inputs = {i.name: ann[i.name][:rows] for i in model.graph.input if i.name in ann}
    found = []
    for layer in structure.layers:
        name = layer.activation.output
        h = ann[name][:rows]
        squares = np.zeros(h.shape[-1])
        if not outputs:
            found.append(squares)
            continue
        run = tail_outputs_runner(model, [name], outputs)
        step = 1e-3 * np.sqrt(np.mean(np.square(h.reshape(-1, h.shape[-1]), dtype=np.float64), axis=0)) + 1e-6
        for j in range(h.shape[-1]):
            ys = []
            for sign in (1.0, -1.0):
                moved = h.copy()
                moved[..., j] += h.dtype.type(sign * step[j])
                ys.append(run({**inputs, name: moved}))
            for plus, minus, scale in zip(*ys, scales):
                delta = (plus - minus).reshape(-1, len(scale)) / (2 * step[j]) / scale
                squares[j] += np.mean(np.sum(delta ** 2, axis=1))
        found.append(np.sqrt(squares))
    return found
