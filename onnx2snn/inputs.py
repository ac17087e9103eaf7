"""Model inputs for calibration and validation: the domain box, sampled points, user calibration files."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from runtimes import spec

from .ann import magnitude_limit
from .domain import Domain, normalise_domain, sample_domain
from .errors import DomainError, first_line
from .importer import ImportedModel


def resolve_domain(imported: ImportedModel, domain: Domain | str | None) -> Domain:
    """The user's domain, else the model's ``onnx2snn.domain`` metadata; checked against the inputs.  In the
    text form a model with one input may leave out its name (``-1:1,0:1``)."""
    names = list(imported.input_shapes)
    if isinstance(domain, str) and len(names) == 1:
        domain = ";".join(p if "=" in p or not p.strip() else f"{names[0]}={p}" for p in domain.split(";"))
    if domain is not None:
        return _check_domain(imported, normalise_domain(domain))
    text = imported.metadata.get(spec.META_DOMAIN)
    if text is None:
        example = ";".join(f"{n}=" + _intervals_example(_features(imported, n) or 1) for n in names)
        raise DomainError(f"{imported.path}: no input domain; give --domain {example} "
                          f"(or store it in the model's '{spec.META_DOMAIN}' metadata)")
    try:
        return _check_domain(imported, normalise_domain(text))
    except DomainError as e:
        raise DomainError(f"{imported.path}: metadata '{spec.META_DOMAIN}': {e}") from None


def _check_domain(imported: ImportedModel, box: Domain) -> Domain:
    names = list(imported.input_shapes)
    unknown = [n for n in box if n not in names]
    if unknown:
        raise DomainError(f"domain names unknown input(s) {unknown}; the model's inputs are {names}")
    missing = [n for n in names if n not in box]
    if missing:
        raise DomainError(f"domain misses input(s) {missing}; give one LO:HI per feature for each of {names}")
    for name, intervals in box.items():
        features = _features(imported, name)
        if features is not None and features != len(intervals):
            raise DomainError(f"domain of input '{name}' has {len(intervals)} interval(s) but the input has "
                              f"{features} feature(s)")
    _check_representable(box, imported.dtype)
    return box


def _intervals_example(features: int) -> str:
    return ",".join(["LO:HI"] * features) if features <= 8 else f"LO:HI,...({features} intervals)"


def _check_representable(box: Domain, dtype: np.dtype) -> None:
    """Bounds within ``magnitude_limit`` of the model's dtype, intervals that do not collapse to a point."""
    limit = magnitude_limit(dtype)
    for name, intervals in box.items():
        for lo, hi in intervals:
            if max(abs(lo), abs(hi)) > limit:
                raise DomainError(f"domain of input '{name}': interval {lo:g}:{hi:g} exceeds {limit:.3g}, the "
                                  f"largest magnitude the model's {dtype} inputs can be calibrated with")
            if dtype.type(lo) >= dtype.type(hi):
                raise DomainError(f"domain of input '{name}': interval {lo:g}:{hi:g} is a single point in the "
                                  f"model's {dtype}")


def _features(imported: ImportedModel, name: str) -> int | None:
    shape = imported.input_shapes[name]
    last = shape[-1] if shape else None
    return last if isinstance(last, int) and last > 0 else None


def calibration_inputs(imported: ImportedModel, box: Domain, calib, samples: int,
                       rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``calib`` (array, dict, or path to .npy/.npz) if given, else ``samples`` domain points from a
    scrambled Sobol sequence (``domain.sample_domain``)."""
    if calib is None:
        if not isinstance(samples, int) or samples < 1:
            raise DomainError(f"samples must be a positive integer, got {samples!r}")
        return sample_domain(box, imported.input_shapes, samples, rng, imported.dtype, design="sobol")
    what = "calibration data"
    if isinstance(calib, (str, os.PathLike)):
        what = f"calibration data {calib}"
        calib = load_arrays(Path(calib), list(imported.input_shapes))
    if not isinstance(calib, dict):
        names = list(imported.input_shapes)
        if len(names) != 1:
            raise DomainError(f"the model has inputs {names}; give calibration data as .npz keyed by name")
        calib = {names[0]: calib}
    return check_arrays(imported, calib, what)


def is_grid_model(imported: ImportedModel) -> bool:
    """Several inputs whose leading (batch) dimensions are distinct or unnamed: a separable network, whose
    outputs live on the grid formed by its inputs (size Π N_a), not on N shared rows."""
    leading = [shape[0] if len(shape) >= 2 else 1 for shape in imported.input_shapes.values()]
    named = [d for d in leading if isinstance(d, str)]
    return len(leading) > 1 and len(set(named)) == len(named) and all(not isinstance(d, int) for d in leading)


def validation_inputs(imported: ImportedModel, box: Domain, count: int, rng: np.random.Generator):
    """``count`` domain points; for a grid model ⌈count^(1/d)⌉ per axis, so the grid has about ``count``."""
    if is_grid_model(imported):
        count = max(2, int(np.ceil(count ** (1.0 / len(imported.input_shapes)) - 1e-9)))
    return sample_domain(box, imported.input_shapes, count, rng, imported.dtype)


def load_arrays(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """A .npy (single input) or .npz (keyed by input name) file."""
    if not path.is_file():
        raise DomainError(f"{path}: no such file")
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
    try:
        f = open(path, "rb")     # our handle: numpy leaves its own open when an .npz is corrupt
    except OSError as e:
        raise DomainError(f"{path}: cannot be opened ({e.strerror or type(e).__name__})") from None
    with f:
        try:
            loaded = np.load(f, allow_pickle=False)
        except unreadable as e:
            raise DomainError(f"{path}: not a readable .npy/.npz file ({first_line(e)})") from None
        if isinstance(loaded, np.ndarray):
            if len(names) != 1:
                raise DomainError(f"{path}: the model has inputs {names}; give an .npz keyed by input name")
            return {names[0]: loaded}
        with loaded:
            arrays = {}
            for key in loaded.files:
                try:
                    arrays[key] = loaded[key]
                except unreadable as e:
                    raise DomainError(f"{path}: array '{key}' is not readable ({first_line(e)})") from None
            return arrays




def check_arrays(imported: ImportedModel, arrays: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    names = list(imported.input_shapes)
    unknown = [k for k in arrays if k not in names]
    missing = [n for n in names if n not in arrays]
    if unknown or missing:
        raise DomainError(f"{what}: inputs do not match the model (unknown {unknown}, missing {missing}); "
                          f"the model takes {names}")
    out = {}
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype.kind not in "fiu":
            raise DomainError(f"{what} for input '{name}': dtype {array.dtype} is not real numbers")
        if not np.all(np.isfinite(array)):
            raise DomainError(f"{what} for input '{name}' contains NaN or Inf")
        limit = magnitude_limit(imported.dtype)
        largest = float(np.max(np.abs(array.astype(np.float64)))) if array.size else 0.0
        if largest > limit:
            raise DomainError(f"{what} for input '{name}': values up to {largest:.3g}, beyond {limit:.3g}, the "
                              f"largest magnitude the model's {imported.dtype} inputs can be calibrated with")
        array = array.astype(imported.dtype)
        shape = imported.input_shapes[name]
        if name in imported.batched_inputs and array.ndim == 1:
            array = array[:, None] if (_features(imported, name) == 1) else array[None]
        features = _features(imported, name)
        if (array.ndim != len(shape) or array.size == 0
                or (features is not None and array.shape[-1] != features)):
            raise DomainError(f"{what} for input '{name}': shape {list(array.shape)} does not match the "
                              f"model's {['?' if not isinstance(d, int) else d for d in shape]}")
        out[name] = array
    return out
