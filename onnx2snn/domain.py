"""Input domains: boxes ``{input name: [(lo, hi) per feature]}``, their text form, and sampling.

Text form (CLI ``--domain`` and metadata key ``onnx2snn.domain``): ``NAME=LO:HI[,LO:HI...]`` per input,
inputs separated by ``;``, e.g. ``x=-1:1,0:1`` or ``x=-1:1;t=0:1``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.stats import qmc

from .errors import DomainError

Domain = dict[str, list[tuple[float, float]]]
DOMAIN_SLACK = 1e-6        # of the interval's width: inputs rounded to float32 at a bound are inside


def parse_domain(text: str) -> Domain:
    """Parse the text form; raises ``DomainError`` on bad syntax or lo >= hi."""
    domain: Domain = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, boxes = part.partition("=")
        name = name.strip()
        if not sep or not name or not boxes.strip():
            raise DomainError(f"domain '{part}': expected NAME=LO:HI[,LO:HI...], e.g. x=-1:1,0:1 (the name of the "
                              f"input may be left out only for a model with one input)")
        if name in domain:
            raise DomainError(f"domain gives input '{name}' twice; give one NAME=LO:HI[,LO:HI...] per input")
        domain[name] = [_parse_interval(name, b) for b in boxes.split(",")]
    if not domain:
        raise DomainError(f"domain '{text}': expected NAME=LO:HI[,LO:HI...]")
    return domain


def _parse_interval(name: str, text: str) -> tuple[float, float]:
    lo_text, sep, hi_text = text.strip().partition(":")
    try:
        lo, hi = float(lo_text), float(hi_text)
    except ValueError:
        lo = hi = math.nan
    if not sep or not (math.isfinite(lo) and math.isfinite(hi)):
        raise DomainError(f"domain of input '{name}': '{text.strip()}' is not LO:HI with finite numbers")
    if lo >= hi:
        raise DomainError(f"domain of input '{name}': lower bound {lo:g} is not below upper bound {hi:g}")
    return lo, hi


def count_outside(domain: Domain, inputs: dict[str, np.ndarray]) -> tuple[int, int]:
    """(points outside ``domain``, points) of run inputs.  A point is a row of an input [..., features]
    (every axis but the last; a rank-1 input is one point) and lies outside when a feature is below lo or
    above hi by more than ``DOMAIN_SLACK``·(hi - lo) (rounding to the input's dtype).  Inputs that share
    their rows (a plain network's) form one point per row, outside when any of them is; inputs with rows
    of their own (a separable network's axes) count theirs separately.  Inputs the domain does not name,
    or whose features it does not match, are not judged."""
    masks = []
    for name, boxes in domain.items():
        array = np.asarray(inputs.get(name, np.empty((0, 0))))
        if name not in inputs or array.shape[-1:] != (len(boxes),):
            continue
        lo, hi = np.array(boxes, dtype=np.float64).T
        slack = DOMAIN_SLACK * (hi - lo)
        rows = array.reshape(-1, len(boxes)).astype(np.float64)
        masks.append(np.any((rows < lo - slack) | (rows > hi + slack), axis=1))
    if masks and len({m.size for m in masks}) == 1:
        return int(np.count_nonzero(np.any(masks, axis=0))), masks[0].size
    return sum(int(np.count_nonzero(m)) for m in masks), sum(m.size for m in masks)


def format_domain(domain: Domain) -> str:
    return ";".join(f"{name}=" + ",".join(f"{lo:g}:{hi:g}" for lo, hi in boxes)
                    for name, boxes in domain.items())


def normalise_domain(domain: Domain | str) -> Domain:
    """Accept the text form or a dict of intervals; validate every interval."""
    if isinstance(domain, str):
        return parse_domain(domain)
    if not isinstance(domain, dict):
        raise DomainError(f"domain: expected NAME=LO:HI[,LO:HI...] or {{name: [(lo, hi), ...]}}, got "
                          f"{type(domain).__name__}")
    out: Domain = {}
    for name, boxes in domain.items():
        if isinstance(boxes, tuple) and len(boxes) == 2 and not isinstance(boxes[0], (tuple, list)):
            boxes = [boxes]
        try:
            pairs = [(float(lo), float(hi)) for lo, hi in boxes]
        except (TypeError, ValueError):
            raise DomainError(f"domain of input '{name}': expected a list of (lo, hi) pairs of numbers, got "
                              f"{boxes!r}"[:200]) from None
        if not pairs:
            raise DomainError(f"domain of input '{name}': no interval")
        out[name] = [_parse_interval(name, f"{lo!r}:{hi!r}") for lo, hi in pairs]
    return out


def sample_domain(domain: Domain, shapes: dict[str, list[int | None]], count: int,
                  rng: np.random.Generator, dtype: np.dtype, design: str = "random") -> dict[str, np.ndarray]:
    """Samples of every input, uniform on the box.  A declared shape ``[batch, ..., features]`` gets
    ``count`` rows (middle dims of size 1); a rank-1 shape ``[features]`` gets a single point per call (so
    only ``count = 1`` makes sense and the caller loops).

    ``design``: "random" draws independent uniform points; "sobol" a scrambled Sobol sequence over all
    the inputs' coordinates together (``scipy.stats.qmc``), which fills the box evenly: every region gets
    its share of points up to O(log(N)^d / N) instead of O(N^-½), so thin features of the solution (a
    shock layer) are not missed by an unlucky draw."""
    if design not in ("random", "sobol"):
        raise ValueError(f"unknown sampling design {design!r}")
    if design == "sobol":
        with warnings.catch_warnings():           # Sobol's balance warning for counts that are not 2^m
            warnings.simplefilter("ignore", UserWarning)
            unit = qmc.Sobol(sum(len(b) for b in domain.values()), scramble=True, seed=rng).random(count)
    samples, start = {}, 0
    for name, boxes in domain.items():
        lo = np.array([b[0] for b in boxes])
        hi = np.array([b[1] for b in boxes])
        shape = shapes[name]
        if design == "sobol":
            fraction, start = unit[:, start: start + len(boxes)], start + len(boxes)
        else:
            fraction = rng.random((count, len(boxes)))
        points = lo + (hi - lo) * fraction
        if len(shape) == 1:
            points = points[0]
        elif len(shape) > 2:
            points = points.reshape((count,) + (1,) * (len(shape) - 2) + (len(boxes),))
        samples[name] = points.astype(dtype)
    return samples
