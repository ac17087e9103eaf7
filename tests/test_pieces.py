"""``--pieces auto``: the error budget (calibration/budget.py) and its measured further passes."""

import numpy as np

import onnx2snn
from conftest import FIXTURES
from onnx2snn.calibration.budget import budget_pieces
from onnx2snn.calibration.options import ConversionOptions

TANH = FIXTURES / "torch_tanh_gemm.onnx"


def test_budget_spends_pieces_on_sensitive_curved_units_and_respects_a_floor():
    lo, hi = np.full(4, -3.0), np.full(4, 3.0)
    spread = np.full(4, 2.0)
    sensitivity = np.array([0.0, 0.1, 1.0, 10.0])
    pieces, predicted = budget_pieces(np.tanh, lo, hi, spread, sensitivity, 32, 5e-2, 32)
    assert pieces[0] == 1 and np.all(np.diff(pieces) > 0) and pieces[3] < 32      # interior: λ > 0
    assert predicted <= 5e-2
    capped, predicted_capped = budget_pieces(np.tanh, lo, hi, spread, sensitivity, 32, 1e-4, 32)
    assert np.all(capped[1:] == 32) and predicted_capped > 1e-4                     # the cap binds: said so
    floored, _ = budget_pieces(np.tanh, lo, hi, spread, sensitivity, 32, 5e-2, 32, least=np.full(4, 8))
    assert np.all(floored >= 8) and np.all(floored >= pieces)


def test_a_missed_budget_allocates_again_beyond_the_first_cap():
    """With a budget the first pass (≤ 32 pieces) cannot meet, each measured pass doubles the cap (32, 64,
    128) and the SNN gets closer to the ANN than the fixed 32-piece expansion."""
    options = dict(timesteps=16, samples=1024, validation_points=1024)
    auto = onnx2snn.convert(TANH, pieces="auto", tolerance=1e-4, **options)
    fixed = onnx2snn.convert(TANH, pieces=32, **options)
    assert max(int(p.max()) for p in auto.calibration.pieces) > 64
    assert auto.report["validation"]["rel_l2_snn_vs_ann"] < fixed.report["validation"]["rel_l2_snn_vs_ann"]


def test_default_tolerance_falls_with_timesteps():
    assert ConversionOptions(timesteps=32).tolerance == 4e-3
    assert np.isclose(ConversionOptions(timesteps=128).tolerance, 2e-3)
    assert ConversionOptions(timesteps=128, tolerance=1e-2).tolerance == 1e-2
