"""Layer-by-layer calibration: each layer's inputs come from the already-converted SNN layers.

For spiking layer l (in topological order):

1. ``refit``: if l is fed by spiking layer l-1, refit its affine (W_l, b_l) to the ANN pre-activations
   z_l from the SNN's decoded ū_{l-1} (closed form, ``refit.py``).
2. Neurons: one signed neuron per unit (thresholds from the activation range), or the PWL expansion on the
   pre-activation range of the unit (``expansion.py``).
3. ``light``: bias correction b_l += E[h(z_l) - ū_l] with ū_l the SNN's decoded value (one neuron per
   unit; the PWL decode offset absorbs it otherwise); ``potential``: v0 += T·E[...] likewise.
4. Simulate layer l for T steps on its SNN inputs; its decoded series feeds the layers after it.

Readouts are refit last, from the decoded values of the layer that feeds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from runtimes.neuron import NeuronParams

from ..errors import CalibrationError
from ..expansion import expand
from ..structure import Structure
from .layer import ConvertedLayer, LayerTrace, simulate_layer
from .options import ConversionOptions
from .refit import refit_affine
from .thresholds import activation_range, signed_neurons

RANGE_MARGIN = 0.05


@dataclass
class Calibration:
    layers: list[ConvertedLayer]
    readouts: dict[str, tuple[np.ndarray, np.ndarray]]     # by readout affine name: (W, b)
    pieces: list[np.ndarray] = field(default_factory=list)  # pieces per unit, per layer


def calibrate(structure: Structure, ann: dict[str, np.ndarray], options: ConversionOptions) -> Calibration:
    """``ann`` holds the ANN's tensors at the calibration points (affine inputs/outputs, activations)."""
    T = options.timesteps
    layers: list[ConvertedLayer] = []
    traces: list[LayerTrace] = []
    pieces = []
    for l, spec in enumerate(structure.layers):
        weight, bias = spec.affine.weight, spec.affine.bias
        upstream = spec.upstream
        inputs = ann[spec.affine.input] if upstream is None else traces[upstream].series
        if upstream is not None and "refit" in options.methods:
            weight, bias = refit_affine(traces[upstream].mean, _flat(ann[spec.affine.output]))
        z_ann, h_ann = _flat(ann[spec.activation.input]), _flat(ann[spec.activation.output])
        layer = _initial_layer(spec, weight, bias, z_ann, h_ann, options)
        static = upstream is None
        flat_inputs = _flat(inputs) if static else inputs.reshape(T, -1, inputs.shape[-1])
        trace = simulate_layer(flat_inputs, layer, T, static)
        if "light" in options.methods or "potential" in options.methods:
            layer, trace = _correct(layer, trace, h_ann, flat_inputs, T, static, options)
        _check_finite(layer, spec.name)
        layers.append(layer)
        traces.append(trace)
        pieces.append(np.full(spec.width, layer.neurons.shape[1]) if options.max_pieces == 1 else
                      np.isfinite(layer.neurons.theta_pos).sum(axis=1))
    readouts = {}
    for affine in structure.readouts:
        upstream = structure.upstream_of(affine)
        weight, bias = affine.weight, affine.bias
        if "refit" in options.methods:
            weight, bias = refit_affine(traces[upstream].mean, _flat(ann[affine.output]))
        readouts[affine.name] = (weight, bias)
    return Calibration(layers=layers, readouts=readouts, pieces=pieces)


def _flat(a: np.ndarray) -> np.ndarray:
    """[..., n] → [N, n] (rank-3 exports and separable axes alike)."""
    return a.reshape(-1, a.shape[-1])


def _initial_layer(spec, weight, bias, z_ann, h_ann, options: ConversionOptions) -> ConvertedLayer:
    n = spec.width
    dtype = weight.dtype
    if options.max_pieces == 1:
        lo, hi = activation_range(h_ann, options.threshold)
        neurons = signed_neurons(lo.astype(dtype), hi.astype(dtype), options.neuron)
        return ConvertedLayer(weight, bias, neurons, np.ones((n, 1), dtype), np.zeros(n, dtype))
    lo, hi = z_ann.min(axis=0), z_ann.max(axis=0)
    pad = np.maximum(RANGE_MARGIN * (hi - lo), 1e-3 * (1.0 + np.abs(lo) + np.abs(hi)))
    lo, hi = (lo - pad).astype(dtype), (hi + pad).astype(dtype)
    tolerance = None
    if options.pieces == "auto":
        spread = np.maximum(h_ann.max(axis=0) - h_ann.min(axis=0), 1e-12)
        tolerance = float(np.median(spread)) / (8.0 * options.timesteps)
    found = expand(spec.activation, lo, hi, options.max_pieces, tolerance)
    return ConvertedLayer(weight, bias, found.neurons, found.decode_weight, found.decode_offset)


def _correct(layer: ConvertedLayer, trace: LayerTrace, h_ann, inputs, T, static, options):
    """Bias ('light') and initial-potential ('potential') correction from the mean decoding error."""
    error = (h_ann - trace.mean).mean(axis=0)          # E[h(z) - ū] per unit
    if layer.neurons.shape[1] == 1:
        if "light" in options.methods:
            layer = layer.with_(bias=layer.bias + error.astype(layer.bias.dtype))
        if "potential" in options.methods:
            n = layer.neurons
            v0 = n.v0 + (T * error)[:, None].astype(n.v0.dtype)      # Δv0 = T·Δrate
            layer = layer.with_(neurons=NeuronParams(n.bias, n.theta_pos, n.theta_neg, v0, n.signed,
                                                     n.fire_fraction))
    else:
        layer = layer.with_(decode_offset=layer.decode_offset + error.astype(layer.decode_offset.dtype))
    return layer, simulate_layer(inputs, layer, T, static)


def _check_finite(layer: ConvertedLayer, name: str) -> None:
    for key in ("weight", "bias", "decode_weight", "decode_offset"):
        if not np.all(np.isfinite(getattr(layer, key))):
            raise CalibrationError(f"layer '{name}': calibration produced non-finite {key}")
    if np.any(np.isnan(layer.neurons.theta_pos)) or np.any(np.isnan(layer.neurons.bias)):
        raise CalibrationError(f"layer '{name}': calibration produced NaN thresholds")
