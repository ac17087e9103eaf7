"""End-to-end calibration as a pipeline stage: ``finetune`` from the layer-by-layer result, with the
spike penalty priced per layer and, with ``--rest typical``, the rest values moved after the fit and the
quantised fit run again on the moved neurons (``rest.py``)."""

from __future__ import annotations

import numpy as np

from ..energy import layer_fan_out
from ..progress import Progress, silent
from ..structure import Structure
from .finetune import finetune
from .layer import ConvertedLayer, check_finite, flat, simulate_layer
from .options import ConversionOptions
from .refit import refit_affine
from .rest import move_rest
from .tail import refit_through_tail


def fit_end_to_end(structure: Structure, layers, traces, ann, options: ConversionOptions, rng, tail,
                   progress: Progress = silent, analog: bool = True):
    """End-to-end fit of all layers (``finetune.py``) from the layer-by-layer result; returns the new
    layers, their traces on all calibration points, and with a ``tail`` the fitted readout affines by name
    (without one the readouts are refit exactly afterwards).  ``progress``: ``onnx2snn.progress``;
    ``analog=False``: the quantised fit only (a warm start from layers already fitted end to end)."""
    T = options.timesteps
    if tail is not None and tail.jacobian is None:       # J too large or failed: the per-boundary loss
        tail = None
    specs = structure.layers
    upstream = [spec.upstream for spec in specs]
    static = [flat(ann[spec.affine.input]) if spec.upstream is None else None for spec in specs]
    readouts = []
    for affine in structure.readouts:
        up = structure.upstream_of(affine)
        target = flat(ann[affine.output])
        readouts.append((*refit_affine(traces[up].mean, target), up, target))
    held = {k: flat(ann[spec.activation.output]) for k, spec in enumerate(specs) if spec.read_directly}
    spike_cost = _spike_costs(structure, options.spike_penalty)
    layers, affines = finetune(layers, upstream, static, readouts, T, rng, held, tail,
                               iterations=options.finetune_iterations,
                               analog_iterations=options.finetune_analog_iterations if analog else 0,
                               spike_cost=spike_cost, progress=progress, gradient=options.gradient)
    if options.rest == "typical":       # move each unit's rest to where the fit left it, then refit to it
        layers = _move_rests(layers, upstream, static, T)
        readouts = [(w, b, up, target) for (w, b), (_, _, up, target) in zip(affines, readouts)]
        layers, affines = finetune(layers, upstream, static, readouts, T, rng, held, tail,
                                   iterations=options.finetune_iterations, analog_iterations=0,
                                   spike_cost=spike_cost, progress=progress, gradient=options.gradient)
    traces = simulate_network(structure, layers, static, T)
    if tail is None:
        return layers, traces, {}
    inputs, held_means = [traces[r[2]].mean for r in readouts], [traces[k].mean for k in held]
    held_errors = [m - h for m, h in zip(held_means, held.values())]
    exact = refit_through_tail(inputs, [r[3] for r in readouts], held_errors, tail)

    def error(affines) -> float:          # the real output error, the tail run exactly
        return tail.output_error([u @ w + b for u, (w, b) in zip(inputs, affines)] + held_means)

    best = affines if exact is None or error(affines) <= error(exact) else exact
    return layers, traces, {a.name: affine for a, affine in zip(structure.readouts, best)}


def simulate_network(structure: Structure, layers: list[ConvertedLayer], static: list, T: int) -> list:
    """Every layer's trace on the calibration points, each fed by its upstream layer's series (or its
    static input ``static[k]``); checks the layers are finite."""
    traces = []
    for k, spec in enumerate(structure.layers):
        inputs = static[k] if spec.upstream is None else traces[spec.upstream].series
        traces.append(simulate_layer(inputs, layers[k], T, spec.upstream is None))
        check_finite(layers[k], spec.name)
    return traces


def _move_rests(layers: list[ConvertedLayer], upstream: list[int | None], static: list, T: int) -> list:
    """Each one-neuron layer's rest value moved (``rest.py``) at its mean currents, layer by layer through
    the simulated SNN (a moved layer changes what the next one sees)."""
    moved, means, series = [], [], []
    for k, layer in enumerate(layers):
        inputs = static[k] if upstream[k] is None else means[upstream[k]]
        if layer.neurons.shape[1] == 1:
            layer = move_rest(layer, inputs @ layer.weight + layer.bias)
        moved.append(layer)
        feed = static[k] if upstream[k] is None else series[upstream[k]]
        trace = simulate_layer(feed, layer, T, upstream[k] is None)
        means.append(trace.mean)
        series.append(trace.series)
    return moved


def _spike_costs(structure: Structure, penalty: float) -> list[float] | None:
    """The loss of one spike per sample of each layer: λ·fan-out_l / (the ANN's MACs per sample), so that
    the penalty is λ × the SNN's synaptic operations per ANN MAC (``finetune.py``)."""
    if not penalty:
        return None
    macs = sum(a.fan_in * a.width for a in structure.affines)
    return [penalty * layer_fan_out(layer) / macs for layer in structure.layers]
