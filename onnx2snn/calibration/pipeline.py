"""Layer-by-layer calibration: each layer's inputs come from the already-converted SNN layers.

For spiking layer l (in topological order), with SNN inputs u_in(t) from the converted layers before it:

1. ``refit``: if l is fed by a spiking layer, refit its affine (W_l, b_l) to the ANN pre-activations
   z_l from the SNN's decoded ū_in (closed form, ``refit.py``); for a PWL layer, also refit each unit's
   decode weights to h(z_l) from its neurons' simulated rates.
2. Neurons: one signed neuron per unit with thresholds from ``thresholds.py`` (max, percentile, mse),
   or the PWL expansion on the pre-activation range of each unit (``expansion.py``).
3. ``advanced``: Adam on (W_l, b_l) through the simulated layer (``advanced.py``).
4. ``light``: bias correction b_l += E[h(z_l) - ū_l] (one neuron per unit; the PWL decode offset c
   absorbs it otherwise); ``potential``: v0 += T·E[h(z_l) - ū_l] (charge that shifts the rate).
5. Simulate layer l for T steps; its decoded series feeds the layers after it.

A static layer behind analog nodes that read decoded values is fed what the SNN delivers to them
(``staged.py``) and, with ``refit``, its affine is refit to it as a linked layer's is.

Readouts are refit last from the decoded values of the layer that feeds them (with ``refit`` or
``advanced``: for a linear readout the advanced objective is least squares, solved exactly); a spiking
readout adds one signed output neuron per output with θ± = enlargement × the calibrated output range.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from runtimes.neuron import NeuronParams

from ..energy import layer_fan_out
from ..errors import CalibrationError
from ..expansion import expand
from ..knots import KnotRule, neuron_update_cost
from .budget import STATIC_ROUNDING_WEIGHT, budget_pieces, output_sensitivities
from ..progress import Progress, silent
from ..structure import SpikingLayer, Structure
from .advanced import MIN_POINTS, advanced_calibration
from .finetune import MIN_POINTS as FINETUNE_MIN_POINTS
from .grid_error import GridError
from .end_to_end import fit_end_to_end, simulate_network
from .flows import decoded_means, feeds_spiking, layer_inputs, link_mean, readout_mean
from .layer import ConvertedLayer, LayerTrace, check_finite, flat, fold_unit_affine, simulate_layer
from .options import ConversionOptions
from .refit import refit_affine, refit_decode
from .rest import move_rest
from .staged import staged_inputs
from .tail import OutputTail
from .thresholds import activation_range, mse_neurons, parse_threshold, phase_neurons, signed_neurons

RANGE_MARGIN = 0.05
PHASE_FIRST_DIGITS = 4    # the phase code's curriculum starts here (calibrate)
AUTO_PASSES = 3       # wave at T=128: 1.85e-3, 1.73e-3 real error on the calibration points, τ = 1.6e-3
FEWER_BELOW = 0.5     # of τ: a real error below it starts a pass with fewer pieces


@dataclass
class SpikingReadout:
    """A readout's affine (W, b) and, for a spiking readout, its output neurons."""

    weight: np.ndarray
    bias: np.ndarray
    neurons: NeuronParams | None = None

    def quantisation_step(self, timesteps: int) -> float:
        """The output resolution θ/T of a spiking readout (largest over outputs; 0 for an analog readout).
        A rounding neuron's error is at most half of it, a floor neuron's at most all of it."""
        if self.neurons is None:
            return 0.0
        theta = np.concatenate([self.neurons.theta_pos.ravel(), self.neurons.theta_neg.ravel()])
        return float(np.max(theta[np.isfinite(theta)], initial=0.0)) / timesteps


@dataclass
class LayerBudget:
    """One layer's part of the ``--pieces auto`` budget (``budget.budget_pieces``)."""

    sensitivity: np.ndarray            # [n] output sensitivity per unit
    share: float                       # the layer's share of the tolerance
    max_pieces: int
    least: np.ndarray | None = None    # [n] pieces per unit from a first pass, if any


@dataclass
class Calibration:
    layers: list[ConvertedLayer]
    readouts: dict[str, SpikingReadout]                     # by readout affine name
    pieces: list[np.ndarray] = field(default_factory=list)  # pieces per unit, per layer
    measured_error: float | None = None   # --pieces auto: the kept pass's E on the calibration points


def calibrate(structure: Structure, ann: dict[str, np.ndarray], options: ConversionOptions,
              tail: OutputTail | None = None, grid: GridError | None = None, progress: Progress = silent,
              warm_start: Calibration | None = None) -> Calibration:
    """``ann`` holds the ANN's tensors at the calibration points (affine inputs/outputs, activations);
    ``tail``, if any, runs the analog nodes after the SNN exactly (and linearises them for ``finetune``,
    ``tail.py``); ``grid``, for a separable network, runs its ``Einsum`` on a grid (``grid_error.py``).

    With ``--pieces auto``, a first pass allocates pieces from the error budget (``budget.py``) and the
    real output error E on the calibration points is measured (``_output_error``: the graph outputs' error
    through ``tail`` or ``grid``, else the readouts', which are then the graph outputs); it is returned as
    ``Calibration.measured_error`` for the pass kept.  While E is outside [τ/2, τ] (at most
    ``AUTO_PASSES`` passes), the next pass allocates again with the budget's sensitivities scaled by
    E / predicted error: above τ with twice the previous cap and no unit below its pieces in the previous
    pass; below τ/2 (a pass that can about halve the neurons) with fewer pieces.  Of the passes within τ
    the one with the fewest neurons is kept, else the one with the lowest error: more pieces can make it
    worse (on Burgers at T=128, before the first layer's rounding weight of ``budget.py``: 1.80e-3,
    2.05e-3, 2.39e-3 in three passes, the passes adding pieces to the last hidden layer, whose narrow
    pieces fire on its spiking input's step-to-step fluctuation).  Where the budget's proxy, the error of
    the readouts, overstates the output error (a separable network: 4.1e-3 against 9.0e-4 on
    spinn_burgers at T=32; 6.55e-3 against 3.97e-3 behind torch_residual's tanh and ``Add``), the pass
    below τ/2 removes the surplus.  ``progress``: a line per auto pass and finetune's steps
    (``onnx2snn.progress``).

    ``warm_start``: the calibration of the same network at another T (one neuron per unit, fitted end to
    end) to start from instead of the layer-by-layer pass: only finetune's quantised fit runs, at this T.

    The phase code is fitted as a curriculum of digits: in full at ``PHASE_FIRST_DIGITS``, then each next
    digit's quantised fit starts from the last.  Measured (4,096 fresh points, SNN vs ANN), against each
    T fitted in full: poisson1d T = 5-8 4.3e-3, 2.3e-3, 1.3e-3, 8.2e-4 (5.5e-3, 4.0e-3, 3.8e-3, 2.6e-3),
    Burgers 9.1e-3, 7.0e-3, 5.9e-3, 5.1e-3 (1.1e-2, 9.7e-3, 7.4e-3, 8.0e-3), each further digit a few
    seconds; going down from a fit at more digits is worse (poisson1d T = 6 → 5: 7.3e-3)."""
    if warm_start is not None:
        return _warm_calibration(structure, ann, options, tail, progress, warm_start)
    if options.coding == "phase" and "finetune" in options.methods and options.timesteps > PHASE_FIRST_DIGITS:
        calibration = calibrate(structure, ann, replace(options, timesteps=PHASE_FIRST_DIGITS), tail, grid, progress)
        for T in range(PHASE_FIRST_DIGITS + 1, options.timesteps + 1):
            progress(f"phase code: {T} digits, from the fit with {T - 1}")
            calibration = _warm_calibration(structure, ann, replace(options, timesteps=T), tail, progress,
                                            calibration)
        return calibration
    sensitivity = output_sensitivities(structure, ann) if options.pieces == "auto" else None
    cap = options.max_pieces
    layers, traces, predicted = _calibrate_layers(structure, ann, options, sensitivity, cap)
    measured = None
    if sensitivity is not None:
        tolerance = options.tolerance
        exact = grid if grid is not None else tail
        error = _output_error(structure, traces, ann, exact)
        passes = [(error, layers, traces)]
        progress(f"pieces auto: pass 1 measured output error {error:.2e} (tolerance {tolerance:.2e})")
        for _ in range(AUTO_PASSES - 1):
            if predicted <= 0 or tolerance * FEWER_BELOW <= error <= tolerance:
                break
            more = error > tolerance
            sensitivity = [s * (error / predicted) for s in sensitivity]
            least = [l.neurons.live.sum(axis=1) for l in layers] if more else None
            cap = cap * 2 if more else cap
            layers, traces, predicted = _calibrate_layers(structure, ann, options, sensitivity, cap, least)
            error = _output_error(structure, traces, ann, exact)
            passes.append((error, layers, traces))
            progress(f"pieces auto: pass {len(passes)} measured output error {error:.2e}")
        within = [p for p in passes if p[0] <= tolerance]
        kept = (min(within, key=lambda p: sum(int(l.neurons.live.sum()) for l in p[1])) if within
                else min(passes, key=lambda p: p[0]))
        measured, layers, traces = kept
    rng = np.random.default_rng(options.seed)
    fitted = {}
    if options.end_to_end:
        layers, traces, fitted = fit_end_to_end(structure, layers, traces, ann, options, rng, tail, progress)
    readouts = {a.name: _readout(a, readout_mean(structure, a, traces, ann), ann, options, fitted.get(a.name))
                for a in structure.readouts}
    pieces = [l.neurons.live.sum(axis=1) if options.max_pieces > 1 else np.ones(l.neurons.shape[0], int)
              for l in layers]
    return Calibration(layers=layers, readouts=readouts, pieces=pieces, measured_error=measured)


def _warm_calibration(structure: Structure, ann, options: ConversionOptions, tail, progress: Progress,
                      warm_start: Calibration) -> Calibration:
    if options.max_pieces != 1 or "finetune" not in options.methods or \
            len(warm_start.layers) != len(structure.layers):
        raise CalibrationError("a warm start needs one neuron per unit, finetune, and the same layers")
    affines = {name: (r.weight, r.bias) for name, r in warm_start.readouts.items()}
    traces = simulate_network(structure, warm_start.layers, ann, options.timesteps, affines)
    layers, traces, fitted = fit_end_to_end(structure, warm_start.layers, traces, ann, options,
                                            np.random.default_rng(options.seed), tail, progress, analog=False,
                                            readout_start=affines)
    readouts = {a.name: _readout(a, readout_mean(structure, a, traces, ann), ann, options, fitted.get(a.name))
                for a in structure.readouts}
    return Calibration(layers=layers, readouts=readouts, pieces=[np.ones(l.neurons.shape[0], int) for l in layers],
                       measured_error=None)


def _calibrate_layers(structure: Structure, ann, options: ConversionOptions, sensitivity, max_pieces: int,
                      least: list[np.ndarray] | None = None):
    """Every spiking layer in topological order (see the module docstring); returns the layers, their
    traces on the calibration points and the budget's predicted output error (0 without a budget)."""
    T = options.timesteps
    rng = np.random.default_rng(options.seed)
    layers: list[ConvertedLayer] = []
    traces: list[LayerTrace] = []
    share = options.tolerance / np.sqrt(len(structure.layers))      # each layer's part of the budget
    predicted = []
    staged = staged_inputs(structure, ann)
    for k, spec in enumerate(structure.layers):
        static = spec.static
        inputs = staged[k](traces) if k in staged else layer_inputs(spec, traces, ann)
        budget = None if sensitivity is None else LayerBudget(sensitivity[k], share, max_pieces,
                                                              None if least is None else least[k])
        layer, layer_predicted = _calibrate_layer(spec, inputs, static, traces, ann, options, rng, budget,
                                                  _knot_rule(structure, k, options), staged=k in staged)
        layers.append(layer)
        predicted.append(layer_predicted)
        traces.append(simulate_layer(inputs, layers[-1], T, static, rates=not feeds_spiking(structure, k)))
        check_finite(layers[-1], spec.name)
    return layers, traces, float(np.sqrt(np.sum(np.square(predicted))))


def _knot_rule(structure: Structure, k: int, options: ConversionOptions) -> KnotRule:
    """Layer k's knot placement: priced by spikes (``knots.spike_knots``) where its error model is exact, a
    static layer (constant currents) read only by readouts and analog nodes; else the curvature rule.  A
    static layer read by spiking layers has its rounding weighted by ``STATIC_ROUNDING_WEIGHT`` (its
    rounding reaches the outputs again through their spike timing, ``budget.py``)."""
    spec = structure.layers[k]
    read_by_spikes = feeds_spiking(structure, k)
    return KnotRule(spec.static and not read_by_spikes, options.timesteps,
                    STATIC_ROUNDING_WEIGHT if spec.static and read_by_spikes else 1.0,
                    neuron_update_cost(layer_fan_out(spec)))


def _output_error(structure: Structure, traces: list[LayerTrace], ann,
                  exact: OutputTail | GridError | None = None) -> float:
    """Real relative output error of the SNN on the calibration points, readouts refit by least squares.

    With ``exact`` (the analog tail run exactly: ``OutputTail`` for a plain network, ``GridError`` for a
    separable one), the graph outputs' error (Σ_m E|y_m(b) - y_m^ANN|² / E|y_m^ANN|²)^½, b the boundary
    values [N, w] in ``tail.boundary_tensors`` order: the refit readouts ū·W + b, then the decoded means ū
    of the layers read directly.  Without one (every graph output is a readout), the readouts' error
    (Σ_m E|y_m - y_m^ANN|² / s_m²)^½ over readout columns m (s_m from ``Structure.relative_scale``), the
    quantity the budget predicts."""
    total, boundary = 0.0, []
    for affine in structure.readouts:
        mean = readout_mean(structure, affine, traces, ann)
        target = flat(ann[affine.output]).astype(np.float64)
        weight, bias = refit_affine(mean, target)
        fitted = mean.astype(np.float64) @ weight + bias
        boundary.append(fitted)
        total += float(np.sum(np.mean((fitted - target) ** 2, axis=0) / structure.relative_scale(affine, target) ** 2))
    if exact is not None:
        boundary += decoded_means(structure, traces, ann)
        return exact.output_error(boundary)
    return float(np.sqrt(total))


def _calibrate_layer(spec: SpikingLayer, inputs, static: bool, traces, ann, options: ConversionOptions,
                     rng, budget: LayerBudget | None = None, knots: KnotRule = KnotRule(), staged: bool = False
                     ) -> tuple[ConvertedLayer, float]:
    """One layer, and its predicted output error from the budget (0 without one); ``staged``: a static
    layer fed what the SNN delivers to the analog nodes before it (``staged.py``), whose affine is refit as a
    linked layer's is."""
    T = options.timesteps
    weight, bias = spec.affine.weight, spec.affine.bias
    z_ann, h_ann = flat(ann[spec.activation.input]), flat(ann[spec.activation.output])
    _check_points(spec, z_ann.shape[0], options)
    mean_in = inputs if static else link_mean(spec.link, traces, ann)
    if (staged or not static) and "refit" in options.methods and not spec.identity:
        weight, bias = refit_affine(mean_in, z_ann)
    z_snn = mean_in @ weight + bias                     # the mean current the neurons will see
    layer, predicted = _neurons(spec, weight, bias, z_snn, h_ann, options, rng, budget, knots)
    if "advanced" in options.methods and not spec.identity:     # an identity affine is not the layer's to train
        layer = advanced_calibration(layer, inputs, static, h_ann, T, rng)
    if "refit" in options.methods and layer.neurons.shape[1] > 1:
        trace = simulate_layer(inputs, layer, T, static, rates=True)
        compact = trace.compact
        weight_k, offset = refit_decode(trace.rates, compact.unit, h_ann, compact.weight, layer.decode_offset)
        decode_weight = layer.decode_weight.copy()
        decode_weight[layer.neurons.live] = weight_k
        layer = layer.with_(decode_weight=decode_weight, decode_offset=offset)
    if "light" in options.methods or "potential" in options.methods:
        layer = _correct(layer, simulate_layer(inputs, layer, T, static, rates=True).mean, h_ann, options)
    if spec.identity:       # the artifact writes no affine here: a corrected bias goes into the neurons
        layer = fold_unit_affine(layer)
    return layer, predicted


def _check_points(spec: SpikingLayer, count: int, options: ConversionOptions) -> None:
    needed = 2
    if "refit" in options.methods:
        needed = max(needed, spec.affine.fan_in + 1)
    if "advanced" in options.methods:
        needed = max(needed, MIN_POINTS)
    if options.end_to_end:
        needed = max(needed, FINETUNE_MIN_POINTS)
    if count < needed:
        raise CalibrationError(f"layer '{spec.name}': calibration with {'+'.join(options.methods) or 'none'} "
                               f"needs at least {needed} calibration points, got {count}; raise --samples")


def _neurons(spec: SpikingLayer, weight, bias, z_snn, h_ann, options: ConversionOptions, rng,
             budget: LayerBudget | None = None, knots: KnotRule = KnotRule()) -> tuple[ConvertedLayer, float]:
    """The layer's neurons and decode, and the budget's predicted error for them (0 without a budget);
    ``knots``: how a PWL layer's knots are placed (``_knot_rule``)."""
    n, dtype = spec.width, weight.dtype
    if options.max_pieces == 1:
        method, scope = parse_threshold(options.threshold)
        if method == "mse":
            neurons, gain, offset = mse_neurons(z_snn, h_ann, options.timesteps, options.neuron, scope,
                                                options.v0, options.shift, rng)
            return ConvertedLayer(weight, bias, neurons, gain[:, None].astype(dtype), offset.astype(dtype)), 0.0
        lo, hi = activation_range(h_ann, method, scope)
        neurons = signed_neurons(lo, hi, options.neuron, options.v0, options.timesteps if options.shift else None)
        if options.coding == "phase":
            neurons = phase_neurons(neurons)
        layer = ConvertedLayer(weight, bias, neurons, np.ones((n, 1), dtype), np.zeros(n, dtype))
        moved = options.rest == "typical" and not options.end_to_end    # else moved after the fit
        return (move_rest(layer, z_snn) if moved else layer), 0.0
    lo, hi = z_snn.min(axis=0), z_snn.max(axis=0)
    pad = np.maximum(RANGE_MARGIN * (hi - lo), 1e-3 * (1.0 + np.abs(lo) + np.abs(hi)))
    lo, hi = (lo - pad).astype(dtype), (hi + pad).astype(dtype)
    pieces, predicted = options.max_pieces, 0.0
    if budget is not None:
        pieces, predicted = budget_pieces(spec.activation, lo, hi, z_snn, budget.sensitivity, knots, budget.share,
                                          budget.max_pieces, budget.least)
    found = expand(spec.activation, lo, hi, pieces, np.median(z_snn, axis=0), z_snn, knots)
    return ConvertedLayer(weight, bias, found.neurons, found.decode_weight, found.decode_offset), predicted


def _correct(layer: ConvertedLayer, rate: np.ndarray, h_ann: np.ndarray, options: ConversionOptions):
    """Bias ('light') and initial-potential ('potential') correction from the mean decoding error."""
    error = (h_ann - rate).mean(axis=0)                # E[h(z) - ū] per unit
    if layer.neurons.shape[1] > 1:                     # PWL: the decode offset absorbs it exactly
        return layer.with_(decode_offset=layer.decode_offset + error.astype(layer.decode_offset.dtype))
    gain = np.where(np.abs(layer.decode_weight[:, 0]) > 1e-12, layer.decode_weight[:, 0], 1.0)
    shift = error / gain                               # in units of the neuron's own rate
    if "light" in options.methods:
        layer = layer.with_(bias=layer.bias + shift.astype(layer.bias.dtype))
    if "potential" in options.methods:
        n = layer.neurons
        v0 = n.v0 + (options.timesteps * shift)[:, None].astype(n.v0.dtype)
        layer = layer.with_(neurons=replace(n, v0=v0))
    return layer


def _readout(affine, mean: np.ndarray, ann, options: ConversionOptions, fitted=None) -> SpikingReadout:
    """The readout's affine (``fitted`` by finetune through a tail, else refit or the original) from its
    decoded input ``mean`` [N, m] and, for a spiking readout, its output neurons."""
    target = flat(ann[affine.output])
    weight, bias = affine.weight, affine.bias
    if fitted is not None:
        weight, bias = (a.astype(affine.weight.dtype) for a in fitted)
    elif {"refit", "advanced"} & set(options.methods) or options.end_to_end:
        # for a linear readout the advanced objective E|ū·W + b - y|² is least squares: solved exactly
        weight, bias = refit_affine(mean, target)
    if options.readout == "analog":
        return SpikingReadout(weight, bias)
    y = mean @ weight + bias
    lo, hi = options.readout_enlargement * y.min(axis=0), options.readout_enlargement * y.max(axis=0)
    neurons = signed_neurons(lo, hi, options.neuron, options.v0)
    return SpikingReadout(weight, bias, neurons)
