"""Choose the event size θ_l of every delta layer for a target error, at the fewest synaptic operations.

On ordered calibration points (``grid_points``, streamed in the default order, start-up included):

1. per layer, r(0) is the mean of its activation (what the receivers hold before the first point) and
   D_l the mean movement Σ_units |a(t) - a(t-1)| per point (the first point from r(0));
2. per layer, the output error e_l when only that layer is quantised with θ = θ_p (the others with
   θ_p·EXACT_FRACTION, exact in effect): the error grows as ε_l·θ_l with ε_l = e_l/θ_p;
3. events cost about fan-out_l·D_l/θ_l per point, and the errors add up as Σ_l (ε_l·θ_l)² (independent,
   uniform quantisation errors), so minimising Σ_l fan-out_l·D_l/θ_l subject to Σ_l (ε_l·θ_l)² = E²
   gives θ_l = s·(fan-out_l·D_l/ε_l²)^(1/3) (Lagrange);
4. the scale s is then searched on the streamed network itself (a secant on log-error vs log-s, at most
   ``SEARCH_STEPS`` runs) for the largest error within ``TOLERANCE_MARGIN``·E; the same search with one
   θ for every layer runs too, and the cheaper of the two allocations is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from runtimes import spec
from runtimes.stream import StreamRuntime

from ..ann import run_ann
from ..energy import layer_fan_out
from ..errors import CalibrationError
from ..inputs import is_grid_model
from ..report import flatten_outputs, relative_l2
from .artifact import build_delta_artifact
from .order import DEFAULT_ORDER, visiting_order

TOLERANCE_MARGIN = 0.8      # of the target error spent on the calibration points
EXACT_FRACTION = 1e-5       # θ of the layers not probed, relative to the probe's
SEARCH_STEPS = 10


@dataclass
class Thresholds:
    """The chosen ``theta`` [n_l] and ``rest`` r(0) [n_l] per layer, the allocation (``"balanced"`` or
    ``"uniform"``), and the calibration points' error and synaptic operations per point at that choice."""

    theta: list[np.ndarray]
    rest: list[np.ndarray]
    allocation: str
    rel_l2: float
    synops_per_point: float


def choose_thresholds(imported, structure, points: dict[str, np.ndarray], target: float,
                      graded: bool = False, fire_fraction: float = 0.5,
                      progress: Callable[[str], None] = lambda message: None) -> Thresholds:
    """θ per layer for relative L2 ≤ ``TOLERANCE_MARGIN``·``target`` on ``points`` (module docstring);
    raises ``CalibrationError`` when even the finest θ tried misses it."""
    if not target > 0:
        raise CalibrationError(f"the target error must be positive, got {target}")
    order = visiting_order(points, DEFAULT_ORDER, grid=is_grid_model(imported))
    visited = {k: v[order[k]] for k, v in points.items()}
    names = [o.name for o in imported.model.graph.output]
    ann = run_ann(imported.model, visited, [l.activation.output for l in structure.layers], source=imported.path)
    reference = flatten_outputs(ann, names)
    rest, movement = [], []
    for layer in structure.layers:
        a = np.asarray(ann[layer.activation.output], np.float64).reshape(-1, layer.width)
        rest.append(a.mean(axis=0))
        steps = np.abs(np.diff(a, axis=0)).sum() + np.abs(a[0] - rest[-1]).sum()
        movement.append(steps / len(a))
    fan_out = np.array([layer_fan_out(l) for l in structure.layers], np.float64)

    def measure(theta: list[np.ndarray]) -> tuple[float, float]:
        model = build_delta_artifact(imported.model, structure, theta, rest, {spec.META_TIMESTEPS: "1"},
                                     graded=graded, fire_fraction=fire_fraction)
        run = StreamRuntime(model).run(visited)
        synops = sum(run.spikes[l.name].events * f for l, f in zip(structure.layers, fan_out))
        return relative_l2(flatten_outputs(run.outputs, names), reference), synops / len(reference)

    goal = TOLERANCE_MARGIN * target
    probe = goal
    sensitivity = []
    for k, layer in enumerate(structure.layers):
        progress(f"delta thresholds: error of layer {k + 1} of {len(structure.layers)} alone")
        theta = [np.full(l.width, probe * (1.0 if j == k else EXACT_FRACTION)) for j, l in enumerate(structure.layers)]
        sensitivity.append(max(measure(theta)[0], 1e-12) / probe)
    sensitivity = np.array(sensitivity)
    candidates = []
    for allocation, weight in (("balanced", np.cbrt(fan_out * np.array(movement) / sensitivity ** 2)),
                               ("uniform", np.ones(len(structure.layers)))):
        progress(f"delta thresholds: searching the {allocation} allocation")
        weight = weight / np.sqrt(np.sum((sensitivity * weight) ** 2))     # predicted error s at scale s
        candidates.append((allocation, *_search(lambda s: measure([np.full(l.width, s * w) for l, w in
                                                                    zip(structure.layers, weight)]), goal),
                           weight))
    feasible = [c for c in candidates if c[2] is not None]
    if not feasible:
        raise CalibrationError(f"{imported.path}: no delta thresholds reach relative L2 {target:g} on the "
                               f"calibration points (best {min(c[1] for c in candidates):.3g})")
    allocation, _, (scale, error, synops), weight = min(feasible, key=lambda c: c[2][2])
    dtype = structure.layers[0].affine.weight.dtype
    return Thresholds(theta=[np.full(l.width, scale * w, dtype) for l, w in zip(structure.layers, weight)],
                      rest=[r.astype(dtype) for r in rest], allocation=allocation, rel_l2=error,
                      synops_per_point=synops)


def _search(measure: Callable[[float], tuple[float, float]], goal: float):
    """The largest scale s whose error is within ``goal``: a secant on log-error vs log-s from s = goal
    (where the linear model predicts the goal).  Returns (best error seen, (s, error, synops) or None)."""
    s, best, tried = goal, None, []
    for _ in range(SEARCH_STEPS):
        error, synops = measure(s)
        tried.append((s, error))
        if error <= goal and (best is None or s > best[0]):
            best = (s, error, synops)
        if best is not None and 0.9 * goal <= error <= goal:
            break
        feasible = [t for t in tried if t[1] <= goal]
        infeasible = [t for t in tried if t[1] > goal]
        if feasible and infeasible:                # bracketed: bisect in log space
            lo, hi = max(feasible)[0], min(infeasible)[0]
            s = float(np.sqrt(lo * hi))
        else:                                      # error ∝ s: jump to where it reaches the goal
            s = s * min(max(goal / max(error, 1e-15), 0.25), 4.0)
    return min(e for _, e in tried), best

