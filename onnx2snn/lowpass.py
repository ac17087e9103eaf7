"""Low-pass post-processing of gridded SNN outputs (DESIGN §4).

A rate-coded output is quantised: on a grid it is the smooth solution plus a small, high-frequency
staircase.  Keeping only the lowest modes removes most of that staircase.  For an output y on a grid
with axes a = 1..d (N_a points each) and a kept fraction f of the modes per axis:

* ``dct``: ŷ = DCT-II(y) (orthonormal, all grid axes), ŷ[k] = 0 where k_a ≥ ⌈f·N_a⌉ on any axis, then
  y' = DCT-III(ŷ).  DCT-II is the Fourier series of y mirrored at both ends (even extension), so the
  boundaries, where y need not be periodic, cause no Gibbs ringing.
* ``fft``: the same with an explicit mirror extension: ỹ = [y, flip(y)] (length 2N_a), rFFT, modes
  ≥ ⌈f·N_a⌉ zeroed, inverse, first N_a samples kept.

The cut-off f is given, or chosen against a reference (the ANN's output on the same grid) as the f of
``CUTOFFS`` that minimises ‖y' - y_ref‖₂ (``choose_cutoff``); errors are always reported before and after.

Grid axes: the output axes whose size is not fixed by the model (a symbolic or unknown dimension: the
points, or the axes of a separable network's grid); fixed-size axes hold features and are not filtered.
A separable network's outputs are a grid already.  A plain network's single points axis is a grid only
if its points are (``point_grid``): the points p [P, d] (the inputs' features side by side) reshaped in C
order to the grid [N_1, ..., N_k, d] must be a regular lattice, consecutive points along each axis a
differing by one constant non-zero step (within ``GRID_RTOL`` of the points' extent).  Without a given
grid, one feature (d = 1) is checked as the grid (P,): sorted, either way, and equally spaced; d > 1
needs the grid given.  The points axis is then reshaped to [N_1, ..., N_k], every axis filtered, and the
result reshaped back.  Filtering points that are not a grid would mix unrelated values, so it is refused.
"""

from __future__ import annotations

import numpy as np
import onnx
from scipy import fft as sfft

from runtimes.errors import InputError

METHODS = ("dct", "fft")
GRID_RTOL = 1e-6
CUTOFFS = tuple(float(f) for f in np.geomspace(1e-3, 1.0, 61))


def grid_axes(model: onnx.ModelProto, output: str) -> tuple[int, ...]:
    """Axes of graph output ``output`` whose size is symbolic or unknown (the grid), in the model's shape."""
    for value in model.graph.output:
        if value.name == output:
            dims = value.type.tensor_type.shape.dim
            return tuple(i for i, d in enumerate(dims) if not d.HasField("dim_value"))
    raise InputError(f"the model has no output named '{output}'")


def lowpass(y: np.ndarray, fraction: float, axes: tuple[int, ...], method: str = "dct") -> np.ndarray:
    """``y`` with the modes above ``fraction`` of each grid axis removed (same shape and dtype)."""
    if method not in METHODS:
        raise InputError(f"unknown low-pass method {method!r}; use {' or '.join(METHODS)}")
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"low-pass cut-off must be in (0, 1], got {fraction}")
    axes = tuple(a for a in axes if y.shape[a] > 1)
    out = y.astype(np.float64)
    if method == "dct":
        coeff = sfft.dctn(out, type=2, norm="ortho", axes=axes)
        for a in axes:
            _zero_above(coeff, a, int(np.ceil(fraction * y.shape[a])))
        out = sfft.idctn(coeff, type=2, norm="ortho", axes=axes)
    else:
        for a in axes:
            n = y.shape[a]
            mirrored = np.concatenate([out, np.flip(out, axis=a)], axis=a)
            spectrum = sfft.rfft(mirrored, axis=a)
            _zero_above(spectrum, a, int(np.ceil(fraction * n)))
            out = np.take(sfft.irfft(spectrum, n=2 * n, axis=a), np.arange(n), axis=a)
    return out.astype(y.dtype)


def _zero_above(coeff: np.ndarray, axis: int, keep: int) -> None:
    index = [slice(None)] * coeff.ndim
    index[axis] = slice(max(keep, 1), None)
    coeff[tuple(index)] = 0


def choose_cutoff(y: np.ndarray, reference: np.ndarray, axes: tuple[int, ...], method: str = "dct") -> float:
    """The kept fraction of ``CUTOFFS`` whose filtered ``y`` is closest to ``reference`` (relative L2)."""
    errors = [np.linalg.norm(lowpass(y, f, axes, method) - reference) for f in CUTOFFS]
    return CUTOFFS[int(np.argmin(errors))]


def point_grid(model: onnx.ModelProto, inputs: dict[str, np.ndarray],
               grid: tuple[int, ...] | None = None) -> tuple[int, ...] | None:
    """The grid [N_1, ..., N_k] that a plain network's points lie on in C order (``grid`` if given, else
    (P,) for points of one feature), or None for a separable network (its outputs are a grid already);
    ``InputError`` where the points are not that grid (module docstring)."""
    if any(len(grid_axes(model, o.name)) > 1 for o in model.graph.output):
        if grid is not None:
            raise InputError("the outputs are a grid already (one axis per input); drop --grid")
        return None
    arrays = [np.asarray(a) for a in inputs.values()]
    if any(a.ndim < 2 for a in arrays) or len({a.shape[0] for a in arrays}) != 1:
        raise InputError("low-pass: the inputs do not share one points axis, so their points are no grid")
    points = np.concatenate([a.reshape(a.shape[0], -1).astype(np.float64) for a in arrays], axis=1)
    if grid is None and points.shape[1] > 1:
        raise InputError(f"low-pass: the points have {points.shape[1]} coordinates; give --grid N1xN2[x...] "
                         f"(the points flattened in C order over that grid) to filter along each grid axis")
    shape = tuple(grid) if grid is not None else (points.shape[0],)
    if int(np.prod(shape)) != points.shape[0]:
        raise InputError(f"--grid {'x'.join(map(str, shape))} has {int(np.prod(shape))} points, the inputs "
                         f"have {points.shape[0]}")
    if not is_regular_grid(points, shape):
        wanted = "sorted and equally spaced" if grid is None else f"a regular {'x'.join(map(str, shape))} grid " \
                                                                  f"in C order"
        raise InputError(f"low-pass: the points are not {wanted}, so filtering along them would mix unrelated "
                         f"values; give points on a grid (and --grid N1xN2[x...] for several coordinates)")
    return shape


def is_regular_grid(points: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether ``points`` [P, d] reshaped in C order to ``shape`` + (d,) step by one constant non-zero vector
    along each axis (within ``GRID_RTOL`` of the points' extent)."""
    lattice = points.reshape(tuple(shape) + (points.shape[1],))
    scale = float(np.ptp(points, axis=0).max(initial=0.0)) or 1.0
    for axis, n in enumerate(shape):
        if n < 2:
            continue
        steps = np.diff(lattice, axis=axis)
        first = steps.reshape(-1, points.shape[1])[0]
        if np.abs(first).max() <= GRID_RTOL * scale or np.abs(steps - first).max() > GRID_RTOL * scale:
            return False
    return True


def filter_outputs(model: onnx.ModelProto, outputs: dict[str, np.ndarray], method: str, cutoff: float | None,
                   reference: dict[str, np.ndarray] | None = None,
                   grid: tuple[int, ...] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Low-pass every output along its grid axes; with ``grid`` (``point_grid``) the points axis is
    reshaped to that grid and filtered along each of its axes.  ``cutoff`` None: chosen per output against
    ``reference`` (required then).  Returns the filtered outputs and, per output, the kept fraction and
    (with a reference) the relative L2 to it before and after."""
    if cutoff is None and reference is None:
        raise InputError("low-pass cut-off 'auto' needs the ANN's outputs as reference; give a cut-off instead")
    filtered, info = {}, {}
    for name, y in outputs.items():
        axes = grid_axes(model, name)
        ref = None if reference is None else reference[name]
        view, view_axes = _on_grid(y, axes, grid)
        ref_view = None if ref is None else _on_grid(ref, axes, grid)[0]
        fraction = cutoff if cutoff is not None else choose_cutoff(view, ref_view, view_axes, method)
        filtered[name] = lowpass(view, fraction, view_axes, method).reshape(y.shape)
        info[name] = {"kept_fraction": fraction, "axes": list(view_axes)}
        if ref is not None:
            norm = max(float(np.linalg.norm(ref)), 1e-30)
            info[name]["rel_l2_before"] = float(np.linalg.norm(y - ref)) / norm
            info[name]["rel_l2_after"] = float(np.linalg.norm(filtered[name] - ref)) / norm
    return filtered, info


def _on_grid(y: np.ndarray, axes: tuple[int, ...], grid: tuple[int, ...] | None) -> tuple[np.ndarray, tuple]:
    """``y`` with its points axis (the first grid axis) split into the axes of ``grid`` (C order), and those
    axes; ``y`` and ``axes`` unchanged without a grid."""
    if grid is None or not axes:
        return y, axes
    a = axes[0]
    return y.reshape(y.shape[:a] + tuple(grid) + y.shape[a + 1:]), tuple(range(a, a + len(grid)))
