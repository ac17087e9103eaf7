"""``convert(..., coding="delta")``: the ANN with a sigma-delta layer after each spiking layer, its event
sizes chosen for a target error on ordered calibration points, measured on fresh ordered points.

Calibration points: the user's (``calib``), else a grid of about max(``samples``, ``MIN_POINTS``) points
spanning the domain (endpoints included; a separable network: values per input axis).  Validation points:
the grid of about max(``validation_points``, ``MIN_POINTS``) cell midpoints, which the calibration grid
never visits.  Both
are streamed in the default order (``order.DEFAULT_ORDER``), so the report's error and energy are those of
a stream from its first point (start-up included).
"""

from __future__ import annotations

import time

import numpy as np

from runtimes import spec
from runtimes.network import SpikingNetwork

from ..domain import Domain, format_domain
from ..inputs import calibration_inputs, is_grid_model
from ..report import finish_timing
from .artifact import build_delta_artifact
from .order import DEFAULT_ORDER
from .stream import stream_report
from .thresholds import choose_thresholds

DEFAULT_TARGET_ERROR = 3e-3     # relative L2 vs the ANN on fresh ordered points, without --target-error
# At least this many calibration and validation points: a stream's error at fixed θ grows with its density
# until its steps are small against θ, then stays (burgers, θ for 3e-3 chosen on 64x64: 2.3e-3 on 64x64,
# 2.9e-3 on 128x128, 3.4e-3 on 256x256, 512x512 and 1000x1000), so a dense grid covers any denser one.
MIN_POINTS = 1 << 16
FIRE_FRACTION = {"round": 0.5, "floor": 1.0}


def grid_points(imported, box: Domain, count: int, midpoints: bool = False) -> dict[str, np.ndarray]:
    """A regular grid of about ``count`` points over ``box`` (module docstring): per coordinate m values,
    m = ⌈count^(1/D)⌉ over the D coordinates of a row-wise network's inputs (all its inputs' features
    together) or over the d inputs of a separable one; ``midpoints``: the m cell centres instead of m
    values from lo to hi."""
    grid = is_grid_model(imported)
    coordinates = [(name, lo, hi) for name, intervals in box.items() for lo, hi in intervals]
    axes = len(box) if grid else len(coordinates)
    m = max(2, int(np.ceil(count ** (1.0 / axes) - 1e-9)))
    fractions = (np.arange(m) + 0.5) / m if midpoints else np.linspace(0.0, 1.0, m)
    values = [lo + (hi - lo) * fractions for _, lo, hi in coordinates]
    if grid:
        columns = {name: [v for (n, _, _), v in zip(coordinates, values) if n == name] for name in box}
        return {name: np.stack(c, axis=1).astype(imported.dtype) for name, c in columns.items()}
    mesh = [a.ravel() for a in np.meshgrid(*values, indexing="ij")]
    points, start = {}, 0
    for name, intervals in box.items():
        block = np.stack(mesh[start:start + len(intervals)], axis=1)
        start += len(intervals)
        rank = len(imported.input_shapes[name])
        points[name] = block.reshape((len(block),) + (1,) * max(rank - 2, 0) + (len(intervals),)).astype(imported.dtype)
    return points


def convert_delta(imported, box: Domain, structure, options, target_error: float | None, calib, samples: int,
                  seed: int, validation_points: int, validate: bool, progress, energy_table, started: float,
                  graded: bool = False):
    """The delta conversion of ``imported`` (module docstring) as a ``convert.ConversionResult``;
    ``options``: the checked ``ConversionOptions`` (coding "delta"); ``started``: ``time.perf_counter()``
    at the call."""
    from ..convert import ConversionResult
    target = DEFAULT_TARGET_ERROR if target_error is None else float(target_error)
    points = grid_points(imported, box, max(samples, MIN_POINTS)) if calib is None else \
        calibration_inputs(imported, box, calib, samples, np.random.default_rng(seed))
    progress(f"choosing delta thresholds for relative L2 {target:g} on {_count(points, imported)} ordered "
             f"calibration points")
    calibrating = time.perf_counter()
    chosen = choose_thresholds(imported, structure, points, target, graded, FIRE_FRACTION[options.neuron], progress)
    metadata = {spec.META_FORMAT: spec.FORMAT_VERSION, spec.META_TIMESTEPS: "1", spec.META_ENCODING: "stream",
                spec.META_READOUT: "analog", spec.META_DOMAIN: format_domain(box), spec.META_NEURON: options.neuron,
                spec.META_SOURCE: imported.path.name}
    artifact = build_delta_artifact(imported.model, structure, chosen.theta, chosen.rest, metadata, graded,
                                    FIRE_FRACTION[options.neuron])
    result = ConversionResult(model=artifact, structure=structure, calibration=None, domain=box, options=options,
                              source=imported.path)
    timing = {"convert": time.perf_counter() - started, "calibrate": time.perf_counter() - calibrating}
    if validate:
        validating = time.perf_counter()
        fresh = grid_points(imported, box, max(validation_points, MIN_POINTS), midpoints=True)
        progress(f"validating on {_count(fresh, imported)} fresh ordered points")
        measured = stream_report(imported, structure, SpikingNetwork(artifact, source="converted model"), fresh,
                                 DEFAULT_ORDER, seed, energy_table)
        report = {"model": imported.path.name, "timesteps": 1, "pieces": 1, "calibration": "none",
                  "neuron": options.neuron, "readout": "analog", "coding": spec.CODING_DELTA, "graded": graded,
                  "first_layer": "spiking", "rest": "mean", "target_error": target,
                  "calibration_output_error": chosen.rel_l2, "threshold_allocation": chosen.allocation,
                  "thresholds": [{"layer": l.name, "theta": float(np.mean(t))}
                                 for l, t in zip(structure.layers, chosen.theta)],
                  **measured, "timing_s": {k: round(v, 4) for k, v in timing.items()}}
        result.report = finish_timing(report, started, validating)
    return result


def _count(points: dict[str, np.ndarray], imported) -> str:
    sizes = [a.shape[0] for a in points.values()]
    return "x".join(map(str, sizes)) if is_grid_model(imported) else f"{sizes[0]:,}"
