"""The Poisson operator data set: exact solver against closed forms, the data set, the random field's statistics."""

import numpy as np
import pytest

from onnx2snn.training.poisson_operator import _kl_modes, poisson_operator_data, solve_poisson

CLOSED_FORMS = [  # (f, u) with -u'' = f, u(±1) = 0
    (lambda x: np.pi ** 2 * np.sin(np.pi * x), lambda x: np.sin(np.pi * x)),
    (lambda x: 2.0 + 0.0 * x, lambda x: 1.0 - x ** 2),
    (lambda x: np.pi ** 2 / 4 * np.cos(np.pi * x / 2), lambda x: np.cos(np.pi * x / 2)),
]


def test_solve_poisson_matches_closed_forms():
    """Measured on 1025 nodes (relative max error, at nodes and between them): 6.4e-11, 2.2e-16, 4.0e-12."""
    grid = np.linspace(-1, 1, 1025)
    x = np.concatenate([np.linspace(-1, 1, 101), np.random.default_rng(0).uniform(-1, 1, 200)])
    f = np.stack([[f(grid) for f, _ in CLOSED_FORMS]] * 2)                      # batch [2, 3, G]
    u = solve_poisson(f, grid, x)
    assert u.shape == (2, 3, x.size)
    for k, (_, exact) in enumerate(CLOSED_FORMS):
        ref = exact(x)
        assert np.abs(u[:, k] - ref).max() / np.abs(ref).max() < 1e-9
    np.testing.assert_array_equal(u[..., [0, 100]], 0.0)                       # x = ±1 exactly


def test_solve_poisson_is_fourth_order():
    """Halving the grid multiplies the error by 2⁴ = 16 (measured 15.8 from 513 to 1025 nodes)."""
    x = np.linspace(-1, 1, 101)
    f, u = CLOSED_FORMS[0]
    err = [np.abs(solve_poisson(f(g), g, x) - u(x)).max() for g in (np.linspace(-1, 1, 513), np.linspace(-1, 1, 1025))]
    assert 14 < err[0] / err[1] < 18


def test_data_set_shapes_and_determinism():
    data = poisson_operator_data(8, seed=1)
    assert data.sensors.shape == (51,) and data.f.shape == (8, 51)
    assert data.points.shape == (101,) and data.u.shape == (8, 101)
    np.testing.assert_array_equal(data.sensors, np.linspace(-1, 1, 51))
    np.testing.assert_array_equal(data.points, np.linspace(-1, 1, 101))
    again = poisson_operator_data(8, seed=1)
    np.testing.assert_array_equal(data.f, again.f)
    np.testing.assert_array_equal(data.u, again.u)
    other = poisson_operator_data(8, seed=2)
    assert np.abs(data.f - other.f).max() > 0.5
    assert np.abs(data.u[:, [0, -1]]).max() < 1e-12


def test_data_satisfies_the_equation():
    """-u'' by central differences at interior points equals f up to the FD truncation h²/12 · max|f''|.

    Measured (20 functions, 401 points, h = 0.005): max|FD - f| = 2.73e-4 (1.0e-4 of max|f|), and the bound
    h²/12 · max|Δ²f/h²| = 2.73e-4 (they agree to 0.02 %): the error is the leading truncation term; the
    solver's own error (≈ 2e-10 relative, even amplified by 4/h² = 1.6e5) is at most ~1e-5.
    """
    data = poisson_operator_data(20, n_sensors=401, n_points=401, seed=3)
    np.testing.assert_array_equal(data.sensors, data.points)
    h = data.points[1] - data.points[0]
    minus_u2 = -(data.u[:, :-2] - 2 * data.u[:, 1:-1] + data.u[:, 2:]) / h ** 2
    f2 = (data.f[:, :-2] - 2 * data.f[:, 1:-1] + data.f[:, 2:]) / h ** 2
    err = np.abs(minus_u2 - data.f[:, 1:-1]).max()
    assert err <= 1.1 * h ** 2 / 12 * np.abs(f2).max()
    assert err < 1e-3 * np.abs(data.f).max()


def test_karhunen_loeve_reproduces_the_covariance():
    """The kept modes give k(x, x') = exp(-(x - x')²/(2ℓ²)) on the grid to 6e-12 (29 modes for ℓ = 0.2)."""
    grid = np.linspace(-1, 1, 1051)
    modes = _kl_modes(1051, 0.2, 1.0)
    cov = np.exp(-((grid[:, None] - grid[None, :]) ** 2) / (2 * 0.2 ** 2))
    assert np.abs(modes @ modes.T - cov).max() < 1e-9


def test_field_sample_statistics():
    """Over 2000 functions (seed 0): per-sensor variance 0.888 .. 1.046, mean 0.983; correlation at lag 0.2
    (5 sensors) 0.577 .. 0.619, mean 0.600 against exp(-0.5) = 0.607.  A single sensor's variance estimate has
    standard deviation sqrt(2/2000) = 0.032 and neighbouring sensors move together, so the per-sensor band is
    ±0.15 (≈ 4.7σ) and the ±0.1 band is on the mean over sensors."""
    f = poisson_operator_data(2000, seed=0).f
    variance = f.var(axis=0)
    assert abs(variance.mean() - 1) < 0.1
    assert np.abs(variance - 1).max() < 0.15
    lag = 5                                                                       # 5 × 0.04 = 0.2 = ℓ
    corr = np.array([np.corrcoef(f[:, i], f[:, i + lag])[0, 1] for i in range(f.shape[1] - lag)])
    assert abs(corr.mean() - np.exp(-0.5)) < 0.05
    assert np.abs(corr - np.exp(-0.5)).max() < 0.05


def test_bad_grid_is_refused():
    with pytest.raises(ValueError):
        solve_poisson(np.zeros(5), np.array([-1, -0.5, 0.1, 0.5, 1.0]), np.zeros(1))
    with pytest.raises(ValueError):
        solve_poisson(np.zeros(5), np.linspace(-1, 1, 5), np.array([1.5]))
