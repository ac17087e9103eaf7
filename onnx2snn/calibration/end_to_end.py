"""End-to-end calibration as a pipeline stage: ``finetune`` from the layer-by-layer result, with the
spike penalty priced per layer and, with ``--rest typical``, the rest values moved after the fit and the
quantised fit run again on the moved neurons (``rest.py``).  Layers read their inputs as ``wiring.py``
says (links, analog nodes between stages), in the fit and in the final simulation alike."""

from __future__ import annotations

import numpy as np

from ..energy import layer_fan_out
from ..progress import Progress, silent
from ..structure import Structure
from .finetune import finetune
from .flows import readout_mean
from .layer import ConvertedLayer, check_finite, flat, fold_unit_affine, simulate_layer
from .options import ConversionOptions
from .refit import refit_affine
from .rest import move_rest
from .tail import refit_through_tail
from .wiring import FitWiring, fit_wiring


def fit_end_to_end(structure: Structure, layers, traces, ann, options: ConversionOptions, rng, tail,
                   progress: Progress = silent, analog: bool = True, readout_start: dict | None = None):
    """End-to-end fit of all layers (``finetune.py``) from the layer-by-layer result; returns the new
    layers, their traces on all calibration points, and the fitted readout affines by name that the
    caller must keep: with a ``tail`` all of them, else those an analog node between stages reads
    (*interior*, ``wiring.py``); the others are refit exactly afterwards.  ``progress``:
    ``onnx2snn.progress``; ``analog=False``: the quantised fit only (a warm start from layers already
    fitted end to end); ``readout_start``: {readout name: (W, b)} to start from instead of the least-squares
    refit (a warm start's interior readouts)."""
    T = options.timesteps
    if tail is not None and tail.jacobian is None:       # J too large or failed: the per-boundary loss
        tail = None
    wiring = fit_wiring(structure, ann)
    targets = [flat(ann[a.output]) for a in structure.readouts] + [flat(ann[link.output]) for link in structure.decoded]
    readouts = []
    for affine, target in zip(structure.readouts, targets):
        start = (readout_start or {}).get(affine.name) if len(readouts) in wiring.interior else None
        readouts.append(start if start is not None else refit_affine(readout_mean(structure, affine, traces, ann), target))
    spike_cost = _spike_costs(structure, options.spike_penalty)
    diagonal = {k for k, spec in enumerate(structure.layers) if spec.identity}
    common = dict(iterations=options.finetune_iterations, spike_cost=spike_cost, progress=progress,
                  gradient=options.gradient, diagonal=diagonal)
    layers, affines = finetune(layers, wiring, readouts, targets, T, rng, tail,
                               analog_iterations=options.finetune_analog_iterations if analog else 0, **common)
    if options.rest == "typical":       # move each unit's rest to where the fit left it, then refit to it
        layers = run_network(wiring, layers, affines, T, move=True)[0]
        layers, affines = finetune(layers, wiring, affines, targets, T, rng, tail, analog_iterations=0, **common)
    layers = [fold_unit_affine(layer) if k in diagonal else layer for k, layer in enumerate(layers)]
    traces = run_network(wiring, layers, affines, T)[1]
    for k, spec in enumerate(structure.layers):
        check_finite(layers[k], spec.name)
    interior = {a.name: affine for k, (a, affine) in enumerate(zip(structure.readouts, affines)) if k in wiring.interior}
    if tail is None:
        return layers, traces, interior
    R = len(structure.readouts)
    inputs = [readout_mean(structure, a, traces, ann) for a in structure.readouts]
    held_means = [flat(wiring.decoded[k].link.evaluate([traces[s].mean for s in wiring.decoded[k].sources], ann))
                  for k in range(len(wiring.decoded))]
    held_errors = [m - t for m, t in zip(held_means, targets[R:])]
    # an interior readout's affine also sets what later stages read: the closed-form refit leaves it (and
    # there is nothing to refit without readouts: every boundary value a decoded layer's, ``gates.py``)
    exact = None if interior or not R else refit_through_tail(inputs, targets[:R], held_errors, tail)

    def error(affines) -> float:          # the real output error, the tail run exactly
        return tail.output_error([u @ w + b for u, (w, b) in zip(inputs, affines)] + held_means)

    best = affines if exact is None or error(affines) <= error(exact) else exact
    return layers, traces, {a.name: affine for a, affine in zip(structure.readouts, best)}


def simulate_network(structure: Structure, layers: list[ConvertedLayer], ann, T: int,
                     readouts: dict | None = None) -> list:
    """Every layer's trace on the calibration points, each fed as ``wiring.py`` says (the analog nodes
    between stages on the boundary values that ``readouts``, {name: (W, b)}, give); checks the layers
    are finite."""
    wiring = fit_wiring(structure, ann)
    affines = [(readouts or {}).get(a.name) for a in structure.readouts]
    traces = run_network(wiring, layers, affines, T)[1]
    for k, spec in enumerate(structure.layers):
        check_finite(layers[k], spec.name)
    return traces


def run_network(wiring: FitWiring, layers: list[ConvertedLayer], affines: list, T: int, move: bool = False):
    """The layers simulated in order on all calibration points, each fed its input as ``wiring`` says
    (readout (W, b) ``affines`` for the boundary values analog nodes read); with ``move``, each one-neuron
    layer's rest value is first moved (``rest.py``) at its mean currents (a moved layer changes what the
    next one sees).  Returns (layers, traces)."""
    traces, out, means, series, values = [], [], [], [], {}
    R = len(wiring.readouts)
    every = None        # all calibration points

    def boundary(k: int) -> np.ndarray:
        if k not in values:
            if k < R:
                w, b = affines[k]
                values[k] = wiring.readouts[k].mean(means, every, boundary, np.float64) @ w + b
            else:
                values[k] = wiring.decoded[k - R].mean(means, every, boundary, np.float64)
        return values[k]

    for k, layer in enumerate(layers):
        source = wiring.layers[k]
        feed, static = source.series(series, every, boundary, layer.weight.dtype)
        if move and layer.neurons.shape[1] == 1:
            inputs = feed if static else source.mean(means, every, boundary, feed.dtype)
            layer = move_rest(layer, inputs @ layer.weight + layer.bias)
        trace = simulate_layer(feed, layer, T, static)
        out.append(layer)
        traces.append(trace)
        means.append(trace.mean)
        series.append(trace.series)
    return out, traces


def _spike_costs(structure: Structure, penalty: float) -> list[float] | None:
    """The loss of one spike per sample of each layer: λ·fan-out_l / (the ANN's MACs per sample), so that
    the penalty is λ × the SNN's synaptic operations per ANN MAC (``finetune.py``)."""
    if not penalty:
        return None
    macs = sum(a.fan_in * a.width for a in structure.affines)
    return [penalty * layer_fan_out(layer) / macs for layer in structure.layers]
