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
"""

from __future__ import annotations

import numpy as np
import onnx
from scipy import fft as sfft

from runtimes.errors import InputError

METHODS = ("dct", "fft")
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


def filter_outputs(model: onnx.ModelProto, outputs: dict[str, np.ndarray], method: str, cutoff: float | None,
                   reference: dict[str, np.ndarray] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Low-pass every output along its grid axes.  ``cutoff`` None: chosen per output against
    ``reference`` (required then).  Returns the filtered outputs and, per output, the kept fraction and
    (with a reference) the relative L2 to it before and after."""
    if cutoff is None and reference is None:
        raise InputError("low-pass cut-off 'auto' needs the ANN's outputs as reference; give a cut-off instead")
    filtered, info = {}, {}
    for name, y in outputs.items():
        axes = grid_axes(model, name)
        ref = None if reference is None else reference[name]
        fraction = cutoff if cutoff is not None else choose_cutoff(y, ref, axes, method)
        filtered[name] = lowpass(y, fraction, axes, method)
        info[name] = {"kept_fraction": fraction, "axes": list(axes)}
        if ref is not None:
            norm = max(float(np.linalg.norm(ref)), 1e-30)
            info[name]["rel_l2_before"] = float(np.linalg.norm(y - ref)) / norm
            info[name]["rel_l2_after"] = float(np.linalg.norm(filtered[name] - ref)) / norm
    return filtered, info
