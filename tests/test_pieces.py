"""``--pieces auto``: the error budget (calibration/budget.py) and its measured further passes."""

from types import SimpleNamespace

import numpy as np
import onnx
import pytest

import onnx2snn
from conftest import FIXTURES
from onnx2snn.ann import run_ann
from onnx2snn.calibration.budget import budget_pieces
from onnx2snn.calibration.grid_error import grid_error
from onnx2snn.calibration.options import DEFAULT_MAX_PIECES, ConversionOptions
from onnx2snn.expansion import fitted_interpolation_error
from onnx2snn.knots import KnotRule
from onnx2snn.structure import analyse

TANH = FIXTURES / "torch_tanh_gemm.onnx"


def test_budget_spends_pieces_on_sensitive_curved_units_and_respects_a_floor():
    lo, hi = np.full(4, -3.0), np.full(4, 3.0)
    sensitivity = np.array([0.0, 0.3, 1.0, 10.0])
    currents = np.random.default_rng(0).uniform(-3.0, 3.0, (1000, 4))
    pieces, predicted = budget_pieces(np.tanh, lo, hi, currents, sensitivity, KnotRule(), 5e-2, 32)
    assert pieces[0] == 1 and np.all(np.diff(pieces) > 0) and pieces[3] < 32      # interior: λ > 0
    assert predicted <= 5e-2
    capped, predicted_capped = budget_pieces(np.tanh, lo, hi, currents, sensitivity, KnotRule(), 1e-4, 32)
    assert np.all(capped[1:] == 32) and predicted_capped > 1e-4                     # the cap binds: said so
    floored, predicted_floored = budget_pieces(np.tanh, lo, hi, currents, sensitivity, KnotRule(), 5e-2, 32,
                                               least=np.full(4, 8))
    assert np.all(floored >= 8) and predicted_floored <= 5e-2


def test_a_doubled_rounding_weight_doubles_the_pieces_of_rounding_limited_units():
    """Identity activation: no interpolation error, so e_j(K) = w·s_j·r_j/(K·T·√12) and meeting the same
    tolerance takes w times the pieces (up to rounding K to an integer)."""
    lo, hi = np.full(3, -1.0), np.full(3, 1.0)
    sensitivity = np.array([0.5, 1.0, 2.0])
    currents = np.random.default_rng(0).uniform(-1.0, 1.0, (500, 3))
    identity = lambda z: z
    once, predicted_once = budget_pieces(identity, lo, hi, currents, sensitivity, KnotRule(), 2e-3, 128)
    twice, predicted_twice = budget_pieces(identity, lo, hi, currents, sensitivity, KnotRule(rounding_weight=2.0),
                                           2e-3, 128)
    assert np.all(np.abs(twice - 2 * once) <= 2) and twice.sum() > 1.8 * once.sum()
    assert predicted_once <= 2e-3 and predicted_twice <= 2e-3


def test_fitted_interpolation_error_is_the_least_squares_pwl_residual():
    """One piece: the residual of the best line (numpy.polyfit) to h at the samples; two pieces with a knot
    at 0 fit |z| exactly; for a parabola the error falls as 1/K² with uniform knots."""
    z = np.random.default_rng(0).uniform(-1.0, 1.0, (4000, 1))
    line = np.polyfit(z[:, 0], np.exp(z[:, 0]), 1)
    expected = np.sqrt(np.mean((np.polyval(line, z[:, 0]) - np.exp(z[:, 0])) ** 2))
    assert np.isclose(fitted_interpolation_error(np.exp, np.array([[-1.0], [1.0]]), z)[0], expected, rtol=1e-6)
    assert fitted_interpolation_error(np.abs, np.array([[-1.0], [0.0], [1.0]]), z)[0] < 1e-6
    knots = lambda k: np.linspace(-1.0, 1.0, k + 1)[:, None]
    errors = [fitted_interpolation_error(np.square, knots(k), z)[0] for k in (4, 8)]
    assert np.isclose(errors[0] / errors[1], 4.0, rtol=0.05)


def test_a_missed_budget_allocates_again_beyond_the_first_cap():
    """With a budget the first pass (≤ DEFAULT_MAX_PIECES pieces) cannot meet, each measured pass doubles
    the cap and the SNN gets closer to the ANN than the fixed 32-piece expansion."""
    options = dict(timesteps=16, samples=1024, validation_points=1024)
    auto = onnx2snn.convert(TANH, pieces="auto", tolerance=1e-4, **options)
    fixed = onnx2snn.convert(TANH, pieces=32, **options)
    assert max(int(p.max()) for p in auto.calibration.pieces) > DEFAULT_MAX_PIECES
    assert auto.report["validation"]["rel_l2_snn_vs_ann"] < fixed.report["validation"]["rel_l2_snn_vs_ann"]


def test_default_tolerance_is_the_promised_error_with_a_margin():
    assert np.isclose(ConversionOptions(timesteps=32).tolerance, 0.8 * 5e-3)
    assert np.isclose(ConversionOptions(timesteps=128).tolerance, 0.8 * 2e-3)
    assert 0.8 * 5e-3 < ConversionOptions(timesteps=16).tolerance < 0.8 * 5e-3 * 2
    assert ConversionOptions(timesteps=128, tolerance=1e-2).tolerance == 1e-2


def test_separable_features_count_relative_to_all_columns_of_their_readout():
    """Readouts contracted by an Einsum (the per-axis features of a separable network) share one scale
    across their columns; other multi-column readouts (here sliced into two graph outputs) keep one scale
    per column."""
    separable = analyse(onnx.load(FIXTURES / "torch_separable.onnx"))
    multi = analyse(onnx.load(FIXTURES / "torch_multi_io.onnx"))
    assert separable.contracted == {a.name for a in separable.readouts} and len(separable.readouts) == 2
    assert multi.contracted == set()
    y = np.array([[3.0, 0.0], [-3.0, 0.4], [3.0, -0.4], [-3.0, 0.0]])
    per_column = multi.relative_scale(multi.readouts[0], y)
    assert np.allclose(per_column, [3.0, np.sqrt(0.08)], rtol=1e-9)
    shared = separable.relative_scale(separable.readouts[0], y)
    assert np.allclose(shared, np.sqrt((9.0 + 0.08) / 2), rtol=1e-9)


def test_grid_error_runs_the_einsum_of_a_separable_network():
    """The output error of u[i, j] = Σ_r F[i, r]·G[j, r] (+ the model's own tail) from perturbed features,
    against numpy's product of the same features on the same grid."""
    model = onnx.load(FIXTURES / "torch_separable.onnx")
    structure = analyse(model)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.uniform(-1, 1, (90, 1)).astype(np.float32), "t": rng.uniform(0, 1, (70, 1)).astype(np.float32)}
    names = [a.output for a in structure.readouts]
    ann = run_ann(model, feeds, names, graph_outputs=False)
    grid = grid_error(model, structure, ann, feeds)
    assert grid.rows == 70 and grid.output_error([ann[n] for n in grid.boundary]) == 0.0
    moved = [ann[n] + rng.normal(0, 0.01, ann[n].shape).astype(np.float32) for n in grid.boundary]
    F, G = (ann[n][:70].astype(np.float64) for n in grid.boundary)
    F1, G1 = (m[:70].astype(np.float64) for m in moved)
    expected = np.linalg.norm(F1 @ G1.T - F @ G.T) / np.linalg.norm(F @ G.T)
    assert np.isclose(grid.output_error(moved), expected, rtol=1e-5)


def test_separable_budget_holds_the_output_error_not_the_feature_error():
    """With the budget measured on the features, this separable fixture's output missed τ on fresh points
    (4.3e-3 > τ = 4e-3 at T=32, 318 neurons); measured through its Einsum it meets it."""
    result = onnx2snn.convert(FIXTURES / "torch_separable.onnx", timesteps=32, samples=1024, validation_points=1024)
    assert result.report["validation"]["rel_l2_snn_vs_ann"] <= result.options.tolerance


@pytest.mark.parametrize("errors, kept", [
    ([1e-3, 3e-3], 1),             # far below τ = 4e-3: a pass with fewer pieces, kept (within τ, fewer neurons)
    ([1e-3, 5e-3, 4.5e-3], 0),     # ... which misses τ, as does the pass after: the first is kept
    ([6e-3, 3e-3], 1),             # above τ: a pass with more pieces, kept (the only one within τ)
    ([6e-3, 5e-3, 7e-3], 1),       # none within τ: the lowest error
    ([3e-3], 0),                   # within [τ/2, τ]: one pass
])
def test_auto_passes_move_towards_the_tolerance_from_both_sides(monkeypatch, errors, kept):
    from onnx2snn.calibration import pipeline
    calls, neurons = [], [40, 12, 60] if errors[0] < 2e-3 else [40, 60, 80]

    def calibrate_layers(structure, ann, options, sensitivity, cap, least=None):
        calls.append((float(sensitivity[0][0]), cap, least))
        live = np.ones((1, neurons[len(calls) - 1]), bool)
        return [SimpleNamespace(neurons=SimpleNamespace(live=live, shape=live.shape))], [None], 4e-3

    monkeypatch.setattr(pipeline, "output_sensitivities", lambda structure, ann: [np.ones(1)])
    monkeypatch.setattr(pipeline, "_calibrate_layers", calibrate_layers)
    monkeypatch.setattr(pipeline, "_output_error", lambda *args: errors[len(calls) - 1])
    result = pipeline.calibrate(SimpleNamespace(readouts=[]), {}, ConversionOptions(timesteps=32))
    assert len(calls) == len(errors)
    for (scale, cap, least), (previous_scale, previous_cap, _), error in zip(calls[1:], calls, errors):
        assert np.isclose(scale, previous_scale * error / 4e-3)
        more = error > 4e-3
        assert cap == previous_cap * (2 if more else 1) and (least is not None) == more
    assert int(result.pieces[0].sum()) == neurons[kept]
