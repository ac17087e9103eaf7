"""Sampling the input domain: the calibration design (scrambled Sobol) against independent draws."""

import numpy as np
import pytest

from onnx2snn.domain import parse_domain, sample_domain

SHAPES = {"x": ["N", 2], "t": ["N", 1]}
BOX = parse_domain("x=-1:1,0:2;t=0:0.5")


def _strip_counts(values: np.ndarray, lo: float, hi: float, strips: int) -> np.ndarray:
    return np.bincount(np.minimum(((values - lo) / (hi - lo) * strips).astype(int), strips - 1), minlength=strips)


def test_sobol_points_fill_every_coordinate_evenly():
    """4096 = 2^12 scrambled Sobol points put exactly 64 in each of the 64 equal strips of every coordinate
    (each coordinate is a (0, 12, 1)-net); independent draws miss by about √64 = 8."""
    rng = np.random.default_rng(0)
    sobol = sample_domain(BOX, SHAPES, 4096, rng, np.float64, design="sobol")
    random = sample_domain(BOX, SHAPES, 4096, np.random.default_rng(0), np.float64)
    for points, worst in ((sobol, 1), (random, None)):
        columns = [(points["x"][:, 0], -1, 1), (points["x"][:, 1], 0, 2), (points["t"][:, 0], 0, 0.5)]
        deviation = max(np.abs(_strip_counts(v, lo, hi, 64) - 64).max() for v, lo, hi in columns)
        if worst is not None:
            assert deviation <= worst
        else:
            assert deviation >= 10
    assert sobol["x"].shape == (4096, 2) and sobol["t"].shape == (4096, 1)
    assert (sobol["x"][:, 0] >= -1).all() and (sobol["x"][:, 0] <= 1).all() and (sobol["t"] <= 0.5).all()


def test_sobol_design_is_seeded_and_takes_any_count():
    a = sample_domain(BOX, SHAPES, 1000, np.random.default_rng(3), np.float32, design="sobol")
    b = sample_domain(BOX, SHAPES, 1000, np.random.default_rng(3), np.float32, design="sobol")
    c = sample_domain(BOX, SHAPES, 1000, np.random.default_rng(4), np.float32, design="sobol")
    assert np.array_equal(a["x"], b["x"]) and not np.array_equal(a["x"], c["x"])
    assert a["x"].dtype == np.float32 and a["x"].shape == (1000, 2)


def test_unknown_design_is_refused():
    with pytest.raises(ValueError, match="unknown sampling design"):
        sample_domain(BOX, SHAPES, 8, np.random.default_rng(0), np.float64, design="grid")
